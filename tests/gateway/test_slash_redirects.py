"""Which upstream redirects the gateway follows itself (`follow_fastapi_redirect`): trailing-slash ones only, either way."""

from __future__ import annotations

import h11
import pytest
import trio

from qkhyper.gateway.app import follow_fastapi_redirect
from tests.proxy.harness import make_core, route


def redirect(status: int, location: str | None) -> h11.Response:
    headers = [] if location is None else [(b"location", location.encode())]
    return h11.Response(status_code=status, headers=headers)


@pytest.mark.parametrize(
    ("path", "status", "location", "followed"),
    [
        (b"/items", 307, "/items/", b"/items/"),  # FastAPI: the route has the slash
        (b"/items", 308, "http://gw.example/up/items/", b"/items/"),  # absolute, under the prefix
        (b"/events/", 307, "/events", b"/events"),  # the route has none: what --add-slashes runs into
        (b"/events/", 307, "http://gw.example/up/events", b"/events"),
        (b"/", 307, "", None),  # never to an empty path
        (b"/items", 302, "/items/", None),  # only 307/308 keep method and body
        (b"/items", 307, "/other/", None),  # somewhere else: the client decides
        (b"/items", 307, "/items//", None),
        (b"/items/", 307, "/item", None),
        (b"/items", 307, None, None),
    ],
)
def test_only_trailing_slash_redirects_are_followed(
    path: bytes, status: int, location: str | None, followed: bytes | None
) -> None:
    async def main() -> bytes | None:
        core, _ = make_core([])
        return follow_fastapi_redirect(route(core), path, redirect(status, location))

    assert trio.run(main) == followed
