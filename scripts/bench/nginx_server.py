"""The bench's nginx reference: `python nginx_server.py --port P (--root DIR | --upstream HOST:PORT)`.

Writes a throwaway config (one worker, `sendfile on`, no access log; with
`--upstream`, `proxy_pass` to a keep-alive upstream pool instead of files)
into a folder under the current directory, then replaces itself with nginx in
the foreground, so the bench's process-group stop ends master and worker alike.
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
{upstream_block}
    server {{
        listen 127.0.0.1:{port};
{location}
    }}
}}
"""
FILES = "        root {root};"
PROXY = """        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
        }}"""
UPSTREAM = """    upstream backend {{
        server {upstream};
        keepalive 64;
    }}"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--root", type=Path, help="serve the files of this folder")
    where.add_argument("--upstream", metavar="HOST:PORT", help="proxy everything to this upstream, keep-alive")
    args = parser.parse_args()
    nginx = shutil.which("nginx")
    if nginx is None:
        sys.exit("nginx_server: nginx is not installed")
    state = Path.cwd() / f"nginx-{args.port}"
    state.mkdir(exist_ok=True)
    config = state / "nginx.conf"
    if args.upstream:
        location, upstream_block = PROXY.format(), UPSTREAM.format(upstream=args.upstream)
    else:
        location, upstream_block = FILES.format(root=args.root.resolve()), ""
    config.write_text(CONFIG.format(state=state, port=args.port, location=location, upstream_block=upstream_block))
    os.execv(nginx, [nginx, "-e", "stderr", "-p", str(state), "-c", str(config), "-g", "daemon off;"])


if __name__ == "__main__":
    main()
