"""Serve one gateway worker in this process, without a supervisor, so valgrind can run it.

    python scripts/bench/one_gateway.py CONFIG PORT

The worker is built exactly as `qkhyper gateway` builds it (the same plan and
ChildSpec); only the socket, the readiness pipe and the lifeline are made here.
"""

from __future__ import annotations

import os
import socket
import sys

from qkhyper.config.load import load_settings
from qkhyper.supervisor.child import run
from qkhyper.supervisor.plan import builtin_plan

try:
    from qkhyper.gateway.routes import gateway_options
except ImportError:  # checkouts before the gateway options became frozen settings (2026-11-27)
    from qkhyper.api import gateway_options  # type: ignore[attr-defined,no-redef]


def main(config: str, port: int) -> int:
    settings = load_settings(config)
    options = gateway_options(settings)
    plan = builtin_plan(settings, "gateway", "qkhyper.gateway.app:create", options, port=port, workers=1)
    sock = socket.create_server(("127.0.0.1", port))
    sock.set_inheritable(True)
    _, ready = os.pipe()
    lifeline, _keep = os.pipe()  # the write end stays open in this process: the worker lives
    return run(plan.units[0].child, sock.fileno(), ready, lifeline)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2])))
