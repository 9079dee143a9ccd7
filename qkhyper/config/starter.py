"""The commented starter config `qkhyper init` writes.

It must load and pass `qkhyper check` as written (tests/test_cli_habits.py),
so its apps are the bundled demo's, which import wherever qkhyper does.
"""

from __future__ import annotations

STARTER = """\
# hypercorn.toml: written by `qkhyper init`. `qkhyper check` validates it and imports every app.
# Paths here resolve from this file's folder; paths given on the command line, from the current one.

# Top-level keys are Hypercorn settings, applied to every app server (both backends).
graceful_timeout = 10          # seconds in-flight requests get on shutdown (--graceful-timeout)
accesslog = "-"                # access log to stderr; remove for none

[qkhyper]
host = "127.0.0.1"             # --host; "0.0.0.0" listens beyond this machine
backend = "hypercorn"          # hypercorn | uvicorn (pip install 'qkhyper[uvicorn]')
worker_class = "asyncio"       # asyncio | uvloop | trio

# One table per app. Replace the demo apps with yours: app = "package.module:app".
[[qkhyper.apps]]
name = "users"                 # label in logs; `qkhyper serve users` serves only it
app = "qkhyper.demo.users:app" # module:attribute, or "module:factory()"
prefix = "users"               # the gateway's /users (default: the name)
port = 8001                    # 0: pick a free port and record it for the gateway
workers = 1                    # --workers / -w beats it; $WEB_CONCURRENCY applies where it is absent

[[qkhyper.apps]]
name = "orders"
app = "qkhyper.demo.orders:app"
port = 8002

[qkhyper.gateway]              # qkhyper gateway: one port for every app, routed by prefix
port = 8000

[qkhyper.static]               # qkhyper static: a built single-page app, /api proxied to the gateway
port = 8080
root = "./static"
api_prefix = "/api"
api_target = "http://127.0.0.1:8000"
"""
