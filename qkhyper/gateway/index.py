"""What the gateway answers at `/` when no route claims it: its routes, for a person finding their way.

JSON by default (`{"prefixes": [...]}`, the same list the 404 body gives), a
small HTML page with a link per prefix for a browser (`Accept` with
`text/html`, as navigations send). Only the prefixes are shown, never the
targets behind them: internal addresses stay internal. Every prefix is
escaped in the page (`html.escape`, quotes included, since it lands in an
attribute too), though a prefix has passed the config's segment check.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence

JSON = b"application/json"
HTML = b"text/html; charset=utf-8"


def wants_html(accept: bytes | None) -> bool:
    """A browser's navigation: its Accept names `text/html` (a bare `*/*` gets JSON, like curl)."""
    return accept is not None and b"text/html" in accept.lower()


def index(prefixes: Sequence[str], accept: bytes | None) -> tuple[bytes, bytes]:
    """The content type and body listing `prefixes`."""
    if not wants_html(accept):
        return JSON, json.dumps({"prefixes": list(prefixes)}).encode()
    items = "".join(f'<li><a href="{html.escape(p)}/">{html.escape(p)}</a></li>' for p in prefixes)
    page = (
        '<!doctype html><html lang="en"><meta charset="utf-8"><title>qkhyper gateway</title>'
        f"<h1>qkhyper gateway</h1><p>Routes:</p><ul>{items}</ul></html>\n"
    )
    return HTML, page.encode()
