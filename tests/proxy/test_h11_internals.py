"""The private APIs of h11 the proxy core relies on, checked so an upgrade fails here, by name.

`RequestHead.event` (the h11 codec) builds requests with h11's `_parsed=True`:
the headers were already parsed and validated by the ASGI server (or are the
proxy's own), and h11's per-header regex checks would only repeat that work on
the hot path; the httptools codec builds h11 `Headers` itself.
pyproject.toml pins h11 to the range this test passed on.
"""

from __future__ import annotations

import inspect

import h11
import pytest

WHO = f"h11 {h11.__version__}"


def test_h11_request_still_takes_parsed() -> None:
    if "_parsed" not in inspect.signature(h11.Request.__init__).parameters:
        pytest.fail(f"{WHO}: Request(..., _parsed=True) is gone; forward.py must build requests another way")


def test_parsed_requests_skip_validation_and_serialise_as_given() -> None:
    headers = [(b"host", b"gw.example"), (b"x-forwarded-for", b"192.0.2.1")]
    request = h11.Request(method=b"GET", target=b"/a%2Fb?q", headers=headers, _parsed=True)
    assert request.headers.raw_items() == headers, f"{WHO}: _parsed no longer keeps headers as given"
    wire = h11.Connection(h11.CLIENT).send(request)
    assert wire == b"GET /a%2Fb?q HTTP/1.1\r\nhost: gw.example\r\nx-forwarded-for: 192.0.2.1\r\n\r\n", WHO


def test_headers_built_from_triples_read_as_h11s_own() -> None:
    """proxy/codec.py hands llhttp's headers to h11 as `h11._headers.Headers([(raw, lower, value)])`."""
    try:
        from h11._headers import Headers
    except ImportError:
        pytest.fail(f"{WHO}: h11._headers.Headers is gone; codec.py must build response headers another way")
    headers = Headers([(b"Content-Type", b"content-type", b"text/plain")])
    response = h11.Response(status_code=200, headers=headers, reason=b"OK", _parsed=True)
    assert list(response.headers) == [(b"content-type", b"text/plain")], WHO
    assert response.headers.raw_items() == [(b"Content-Type", b"text/plain")], WHO
