"""What a browser sees from `qkhyper static`: index, SPA fallback, MIME, caching, 304/206/416, encodings."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import get
from tests.static.conftest import APP_JS, BR_BODY, GZ_BODY, INDEX, VITE_JS, Site, raw_request

HTML = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
NOT_FOUND = {"error": "not found"}


def request(site: Site, method: str, path: str, **headers: str) -> httpx.Response:
    return httpx.request(method, site.url + path, headers=headers, timeout=30)


@pytest.mark.parametrize(
    ("path", "body"),
    [("/", INDEX), ("/index.html", INDEX), ("/sub/", b"<p>SUB</p>\n"), ("/sub/index.html", b"<p>SUB</p>\n")],
)
def test_index_for_directories(site: Site, path: str, body: bytes) -> None:
    response = get(site.url + path)
    assert (response.status_code, response.content) == (200, body)
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize(("target", "location"), [(b"/sub", "./sub/"), (b"/sub?tab=2", "./sub/?tab=2")])
def test_directory_without_slash_redirects_relatively(site: Site, target: bytes, location: str) -> None:
    response = raw_request(site.port, target)
    assert (response.status, response.headers["location"]) == (301, location)


def test_folder_without_index_is_not_a_page(site: Site) -> None:
    json = {"Accept": "application/json"}  # not a navigation: */* (httpx's default) would get the SPA page
    assert get(site.url + "/no-index", headers=json).status_code == 404
    assert get(site.url + "/no-index/", headers=json).status_code == 404
    assert get(site.url + "/no-index", headers={"Accept": HTML}).content == INDEX  # an SPA route


SPA = [
    ("GET", "/users/42", HTML, 200),
    ("GET", "/users/42/", HTML, 200),
    ("GET", "/missing.html", HTML, 200),
    ("GET", "/no-index/deeper", HTML, 200),
    ("HEAD", "/users/42", HTML, 200),
    ("GET", "/users/42", "application/json", 404),
    ("GET", "/users/42", "*/*", 200),
    ("GET", "/users/jane.doe", HTML, 200),
    ("GET", "/users/jane.doe", "*/*", 404),
    ("GET", "/assets/index-Old12345.js", HTML, 404),  # a stale chunk must not become HTML
    ("GET", "/app.css", HTML, 404),
    ("GET", "/favicon.png", "image/avif,image/webp,*/*", 404),
]


@pytest.mark.parametrize(("method", "path", "accept", "status"), SPA)
def test_spa_fallback(site: Site, method: str, path: str, accept: str, status: int) -> None:
    response = request(site, method, path, accept=accept)
    assert response.status_code == status
    if status == 200:
        assert response.headers["content-type"] == "text/html; charset=utf-8"
        assert response.headers["cache-control"] == "no-cache"
        assert response.content == (INDEX if method == "GET" else b"")
    else:
        assert response.json() == NOT_FOUND


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_other_methods_are_405(site: Site, method: str) -> None:
    response = request(site, method, "/index.html")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD"


MIME = [
    ("/app.js", "text/javascript; charset=utf-8"),
    ("/module.mjs", "text/javascript; charset=utf-8"),
    ("/prog.wasm", "application/wasm"),
    ("/logo.svg", "image/svg+xml"),
    ("/site.webmanifest", "application/manifest+json"),
    ("/data.json", "application/json"),
    ("/style.css", "text/css; charset=utf-8"),
    ("/robots.txt", "text/plain; charset=utf-8"),
    ("/index.html", "text/html; charset=utf-8"),
]


@pytest.mark.parametrize(("path", "ctype"), MIME)
def test_mime_types(site: Site, path: str, ctype: str) -> None:
    assert get(site.url + path).headers["content-type"] == ctype


CACHE = [
    ("/", "no-cache"),
    ("/page.html", "no-cache"),
    ("/assets/index-Q7mK2pXe.js", "public, max-age=31536000, immutable"),
    ("/assets/main.3f2a1b9c.css", "public, max-age=31536000, immutable"),
    ("/app.js", "no-cache"),
    ("/robots.txt", "no-cache"),
]


@pytest.mark.parametrize(("path", "cache"), CACHE)
def test_cache_control(site: Site, path: str, cache: str) -> None:
    assert get(site.url + path, headers={"Accept-Encoding": "identity"}).headers["cache-control"] == cache


def test_head_has_the_headers_of_get(site: Site) -> None:
    full, head = get(site.url + "/app.js"), request(site, "HEAD", "/app.js")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(APP_JS))
    skip = {"date"}
    assert {k: v for k, v in head.headers.items() if k not in skip} == {
        k: v for k, v in full.headers.items() if k not in skip
    }


def validators(site: Site) -> tuple[str, str]:
    headers = get(site.url + "/app.js").headers
    return headers["etag"], headers["last-modified"]


def test_not_modified(site: Site) -> None:
    etag, last_modified = validators(site)
    for value in (etag, "W/" + etag, f'"nope", {etag}', "*"):
        response = request(site, "GET", "/app.js", **{"if-none-match": value})
        assert (response.status_code, response.content) == (304, b""), value
        assert response.headers["etag"] == etag
        assert response.headers["cache-control"] == "no-cache"
        assert "content-length" not in response.headers
    assert request(site, "HEAD", "/app.js", **{"if-none-match": etag}).status_code == 304
    assert request(site, "GET", "/app.js", **{"if-modified-since": last_modified}).status_code == 304
    old = "Mon, 01 Jan 2001 00:00:00 GMT"
    assert request(site, "GET", "/app.js", **{"if-modified-since": old}).status_code == 200
    both = {"if-none-match": '"other"', "if-modified-since": last_modified}
    assert request(site, "GET", "/app.js", **both).status_code == 200  # If-None-Match decides


def test_not_modified_on_spa_fallback(site: Site) -> None:
    etag = get(site.url + "/").headers["etag"]
    response = request(site, "GET", "/users/1", accept=HTML, **{"if-none-match": etag})
    assert response.status_code == 304


SIZE = len(APP_JS)
RANGES = [
    (b"bytes=0-6", 206, APP_JS[0:7], f"bytes 0-6/{SIZE}"),
    (b"bytes=8-", 206, APP_JS[8:], f"bytes 8-{SIZE - 1}/{SIZE}"),
    (b"bytes=-3", 206, APP_JS[-3:], f"bytes {SIZE - 3}-{SIZE - 1}/{SIZE}"),
    (b"bytes=0-100000", 206, APP_JS, f"bytes 0-{SIZE - 1}/{SIZE}"),
    (b"bytes=-0", 416, None, f"bytes */{SIZE}"),
    (b"bytes=1000-", 416, None, f"bytes */{SIZE}"),
    (b"bytes=1_0-20", 200, APP_JS, None),
    ("bytes=١-٢".encode(), 200, APP_JS, None),
    (b"bytes=0-1,4-5", 200, APP_JS, None),
    (b"bytes=5-1", 200, APP_JS, None),
    (b"pages=0-1", 200, APP_JS, None),
]


@pytest.mark.parametrize(("header", "status", "body", "content_range"), RANGES)
def test_range(site: Site, header: bytes, status: int, body: bytes | None, content_range: str | None) -> None:
    response = raw_request(site.port, b"/app.js", headers=[(b"Range", header)])
    assert response.status == status
    assert response.headers.get("content-range") == content_range
    if body is not None:
        assert response.body == body
        assert response.headers["content-length"] == str(len(body))


def test_if_range(site: Site) -> None:
    etag, last_modified = validators(site)
    cases = [
        (etag, 206),
        (last_modified, 206),
        ('"stale"', 200),
        ("W/" + etag, 200),
        ("Mon, 01 Jan 2001 00:00:00 GMT", 200),
    ]
    for value, status in cases:
        response = request(site, "GET", "/app.js", range="bytes=0-3", **{"if-range": value})
        assert response.status_code == status, value
        assert response.content == (APP_JS[:4] if status == 206 else APP_JS)


def test_head_ignores_range(site: Site) -> None:
    response = request(site, "HEAD", "/app.js", range="bytes=0-3")
    assert (response.status_code, response.headers["content-length"]) == (200, str(SIZE))


VITE = "/assets/index-Q7mK2pXe.js"
ENCODINGS = [
    ("gzip, deflate, br, zstd", "br", BR_BODY),
    ("gzip", "gzip", GZ_BODY),
    ("br;q=0, gzip", "gzip", GZ_BODY),
    ("gzip;q=0.5, br;q=0.4", "gzip", GZ_BODY),
    ("identity", None, VITE_JS),
    ("br;q=0, gzip;q=0", None, VITE_JS),
]


@pytest.mark.parametrize(("accept_encoding", "encoding", "body"), ENCODINGS)
def test_precompressed_siblings(site: Site, accept_encoding: str, encoding: str | None, body: bytes) -> None:
    response = raw_request(site.port, VITE.encode(), headers=[(b"Accept-Encoding", accept_encoding.encode())])
    assert response.status == 200
    assert response.body == body
    assert response.headers.get("content-encoding") == encoding
    assert response.headers["content-type"] == "text/javascript; charset=utf-8"
    assert response.headers["vary"] == "Accept-Encoding"
    assert response.headers["cache-control"] == "public, max-age=31536000, immutable"


def test_each_encoding_has_its_own_etag(site: Site) -> None:
    etags = set()
    for accept_encoding in ("br", "gzip", "identity"):
        response = raw_request(site.port, VITE.encode(), headers=[(b"Accept-Encoding", accept_encoding.encode())])
        etags.add(response.headers["etag"])
        again = raw_request(
            site.port,
            VITE.encode(),
            headers=[
                (b"Accept-Encoding", accept_encoding.encode()),
                (b"If-None-Match", response.headers["etag"].encode()),
            ],
        )
        assert again.status == 304 and again.headers["vary"] == "Accept-Encoding"
    assert len(etags) == 3


def test_plain_file_has_no_vary(site: Site) -> None:
    assert "vary" not in get(site.url + "/app.js", headers={"Accept-Encoding": "br, gzip"}).headers


@pytest.mark.parametrize("path", ["/api", "/api/users/", "/api/orders/1?x=1"])
def test_api_prefix_goes_to_the_proxy(site: Site, path: str) -> None:
    for method in ("GET", "POST"):
        response = request(site, method, path)
        assert response.status_code == 502
        assert response.json() == {
            "error": "bad gateway",
            "route": "/api",
            "reason": "upstream refused the connection",
            "request_id": response.headers["x-request-id"],
        }


def test_api_prefix_matches_whole_segments(site: Site) -> None:
    assert get(site.url + "/apix", headers={"Accept": "application/json"}).status_code == 404  # not proxied
    assert get(site.url + "/apix", headers={"Accept": HTML}).content == INDEX
    assert request(site, "POST", "/api-docs").status_code == 405


def test_websocket_outside_the_api_is_refused(site: Site) -> None:
    upgrade = [
        (b"Upgrade", b"websocket"),
        (b"Connection", b"Upgrade"),
        (b"Sec-WebSocket-Key", b"dGhlIHNhbXBsZSBub25jZQ=="),
        (b"Sec-WebSocket-Version", b"13"),
    ]
    response = raw_request(site.port, b"/socket", headers=upgrade)
    assert response.status == 403  # the server's answer to a close before accept
