"""The design qkhyper's gateway replaces: an aiohttp proxy opening a ClientSession per request.

`python scripts/bench/aiohttp_gateway.py --port P --upstream http://127.0.0.1:U`
forwards every request to the upstream with its path and query, as the older
framework's `manage.py gateway` did.
"""

from __future__ import annotations

import argparse

import aiohttp
from aiohttp import web


def make_app(upstream: str) -> web.Application:
    async def proxy(request: web.Request) -> web.StreamResponse:
        async with aiohttp.ClientSession() as session:  # a new session (and pool) per request
            async with session.request(
                request.method, upstream + request.rel_url.path_qs, headers=request.headers, data=await request.read()
            ) as upstream_response:
                body = await upstream_response.read()
                headers = {k: v for k, v in upstream_response.headers.items() if k.lower() in {"content-type"}}
                return web.Response(status=upstream_response.status, body=body, headers=headers)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", proxy)
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    args = parser.parse_args()
    web.run_app(make_app(args.upstream), host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
