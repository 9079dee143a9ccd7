"""The bench's nginx reference: `python nginx_static.py --port P --root DIR`.

Writes a throwaway config (one worker, `sendfile on`, no access log) into a
folder under the current directory, then replaces itself with nginx in the
foreground, so the bench's process-group stop ends master and worker alike.
Started as root, nginx runs its worker as another user: the bench makes the
root world-readable first (NOTES.md).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

CONFIG = """\
worker_processes 1;
error_log stderr warn;
pid {state}/nginx.pid;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    client_body_temp_path {state}/body;
    proxy_temp_path {state}/proxy;
    fastcgi_temp_path {state}/fastcgi;
    uwsgi_temp_path {state}/uwsgi;
    scgi_temp_path {state}/scgi;
    types {{ text/plain txt; application/octet-stream bin; }}
    server {{
        listen 127.0.0.1:{port};
        root {root};
    }}
}}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--root", type=Path, required=True)
    args = parser.parse_args()
    nginx = shutil.which("nginx")
    if nginx is None:
        sys.exit("nginx_static: nginx is not installed")
    state = Path.cwd() / f"nginx-{args.port}"
    state.mkdir(exist_ok=True)
    config = state / "nginx.conf"
    config.write_text(CONFIG.format(state=state, port=args.port, root=args.root.resolve()))
    os.execv(nginx, [nginx, "-e", "stderr", "-p", str(state), "-c", str(config), "-g", "daemon off;"])


if __name__ == "__main__":
    main()
