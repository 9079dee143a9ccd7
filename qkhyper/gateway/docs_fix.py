"""FastAPI docs of upstreams that ignore X-Forwarded-Prefix (a plain uvicorn app).

Such an app serves `/docs` with `url: '/openapi.json'`, which the browser
fetches from the gateway's root, and an `openapi.json` without the prefix in
`servers`. These two edits, and nothing else, make its docs work under the
gateway's prefix. Upstreams served by qkhyper already get this right.
"""

from __future__ import annotations

import json

DOCS_PAGES = frozenset({b"/docs", b"/redoc"})
OPENAPI = b"/openapi.json"


def wants_fix(path: bytes) -> bool:
    bare = path.partition(b"?")[0]
    return bare in DOCS_PAGES or bare == OPENAPI


def fix_docs_page(body: bytes, prefix: str) -> bytes:
    """Prefix the openapi URL of a docs page, unless the page already has it."""
    if prefix.encode() + OPENAPI in body:
        return body
    for quote in (b"'", b'"'):
        body = body.replace(quote + OPENAPI + quote, quote + prefix.encode() + OPENAPI + quote)
    return body


def fix_openapi(body: bytes, prefix: str) -> bytes:
    """Add the prefix to `servers`, so "Try it out" requests go through the gateway.

    An upstream's body is untrusted: anything that is not a JSON object with a
    list (or no) `servers` passes through untouched, including nesting too deep
    for the parser (RecursionError) and text that is not UTF-8.
    """
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return body
    if not isinstance(document, dict):
        return body
    servers = document.get("servers")
    if servers is None:
        servers = []
    if not isinstance(servers, list):
        return body
    if any(isinstance(s, dict) and str(s.get("url", "")).rstrip("/").endswith(prefix) for s in servers):
        return body
    document["servers"] = [{"url": prefix}]
    try:
        return json.dumps(document).encode()
    except (ValueError, RecursionError):
        return body


def fix_body(path: bytes, body: bytes, prefix: str) -> bytes:
    return fix_openapi(body, prefix) if path.partition(b"?")[0] == OPENAPI else fix_docs_page(body, prefix)
