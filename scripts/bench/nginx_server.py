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
import resource
import shutil
import sys
from pathlib import Path

CONFIG = """\
worker_processes 1;
{rlimit}error_log stderr warn;
pid {state}/nginx.pid;
events {{ worker_connections {connections}; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
{keepalive}{connection_map}    client_body_temp_path {state}/body;
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
            proxy_set_header Connection {connection};
            proxy_set_header Host $host;
{extra}        }}"""
# An upgrade request gets `Connection: upgrade` upstream; any other keeps the keep-alive pool ("").
CONNECTION_MAP = """    map $http_upgrade $connection_upgrade {
        default upgrade;
        "" "";
    }
"""
WEBSOCKET = "            proxy_set_header Upgrade $http_upgrade;\n"
NO_BUFFERING = "            proxy_buffering off;\n"
UPSTREAM = """    upstream backend {{
        server {upstream};
        keepalive 64;
    }}"""


def render(
    port: int,
    state: Path,
    *,
    root: Path | None = None,
    upstream: str | None = None,
    worker_connections: int = 4096,
    keepalive_timeout: float | None = None,
    websocket: bool = False,
    no_buffering: bool = False,
) -> str:
    """The nginx.conf text; the defaults give the config the throughput rows have always used."""
    if upstream:
        extra = (WEBSOCKET if websocket else "") + (NO_BUFFERING if no_buffering else "")
        connection = "$connection_upgrade" if websocket else '""'
        location, upstream_block = PROXY.format(connection=connection, extra=extra), UPSTREAM.format(upstream=upstream)
    else:
        location, upstream_block = FILES.format(root=Path(root or ".").resolve()), ""
    rlimit = ""
    if worker_connections != 4096:  # every connection is a descriptor, so the worker needs as many
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        rlimit = f"worker_rlimit_nofile {worker_connections + 256 if hard == resource.RLIM_INFINITY else hard};\n"
    return CONFIG.format(
        state=state,
        port=port,
        location=location,
        upstream_block=upstream_block,
        connections=worker_connections,
        rlimit=rlimit,
        keepalive="" if keepalive_timeout is None else f"    keepalive_timeout {keepalive_timeout:g}s;\n",
        connection_map=CONNECTION_MAP if websocket else "",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--root", type=Path, help="serve the files of this folder")
    where.add_argument("--upstream", metavar="HOST:PORT", help="proxy everything to this upstream, keep-alive")
    parser.add_argument("--worker-connections", type=int, default=4096, metavar="N", help="nginx worker_connections")
    parser.add_argument("--keepalive-timeout", type=float, metavar="S", help="client keep-alive (nginx: 75 s)")
    parser.add_argument("--websocket", action="store_true", help="pass WebSocket upgrades upstream")
    parser.add_argument("--no-buffering", action="store_true", help="proxy_buffering off (SSE)")
    args = parser.parse_args()
    nginx = shutil.which("nginx")
    if nginx is None:
        sys.exit("nginx_server: nginx is not installed")
    state = Path.cwd() / f"nginx-{args.port}"
    state.mkdir(exist_ok=True)
    config = state / "nginx.conf"
    text = render(
        args.port,
        state,
        root=args.root,
        upstream=args.upstream,
        worker_connections=args.worker_connections,
        keepalive_timeout=args.keepalive_timeout,
        websocket=args.websocket,
        no_buffering=args.no_buffering,
    )
    config.write_text(text)
    os.execv(nginx, [nginx, "-e", "stderr", "-p", str(state), "-c", str(config), "-g", "daemon off;"])


if __name__ == "__main__":
    main()
