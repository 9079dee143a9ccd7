"""A worker's environment: what the supervisor inherited, minus socket activation, plus its app's variables.

`LISTEN_FDS`, `LISTEN_PID` and `LISTEN_FDNAMES` describe the sockets systemd
passed to the supervisor (supervisor/activation.py); they are dropped, as
`sd_listen_fds(1)` drops them, so nothing in a worker mistakes them for its
own. The app's variables (config/environ.py) win over what was inherited.
"""

from __future__ import annotations

from collections.abc import Mapping

LISTEN_VARS = ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES")


def worker_environ(inherited: Mapping[str, str], app_env: Mapping[str, str]) -> dict[str, str]:
    env = {name: value for name, value in inherited.items() if name not in LISTEN_VARS}
    env.update(app_env)
    env["PYTHONUNBUFFERED"] = "1"  # each line reaches the supervisor as it is written
    return env
