"""The bench's reference static server: aiohttp `web.FileResponse`, as the original used.

`python aiohttp_static.py --port P --root DIR` serves `DIR/NAME` at `/NAME`
(one level, enough for the bench files). `FileResponse` uses `sendfile`,
ETag and Range, so the comparison is against aiohttp at its best for files.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from aiohttp import web


def make_app(root: Path) -> web.Application:
    async def serve(request: web.Request) -> web.StreamResponse:
        path = root / request.match_info["name"]
        if not path.is_file():
            raise web.HTTPNotFound()
        return web.FileResponse(path)

    app = web.Application()
    app.router.add_get("/{name}", serve)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--root", type=Path, required=True)
    args = parser.parse_args()
    web.run_app(make_app(args.root.resolve()), host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
