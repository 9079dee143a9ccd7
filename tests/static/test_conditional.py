"""`conditional.py`: 304 / 206 / 416 decisions from request validators (pure)."""

from __future__ import annotations

import pytest

from qkhyper.static.conditional import (
    FULL,
    NOT_MODIFIED,
    UNSATISFIABLE,
    Outcome,
    etag_matches,
    evaluate,
    http_date,
    if_range_allows,
    parse_date,
    parse_range,
)

ETAG = b'"abc123"'
MTIME = 1_700_000_000
LAST_MODIFIED = b"Tue, 14 Nov 2023 22:13:20 GMT"


def test_http_date_round_trip() -> None:
    assert http_date(MTIME) == LAST_MODIFIED
    assert parse_date(LAST_MODIFIED) == MTIME


@pytest.mark.parametrize("mtime", [0, 1, 315532800])
def test_reproducible_build_mtimes_get_no_date(mtime: int) -> None:
    assert http_date(mtime) is None


@pytest.mark.parametrize(
    "value",
    [b"Tuesday, 14-Nov-23 22:13:20 GMT", b"Tue Nov 14 22:13:20 2023"],
)
def test_obsolete_date_forms(value: bytes) -> None:
    assert parse_date(value) == MTIME


@pytest.mark.parametrize("value", [b"", b"yesterday", b"Tue, 99 Nov 2023 22:13:20 GMT", b"\xff\xfe"])
def test_bad_dates(value: bytes) -> None:
    assert parse_date(value) is None


INM = [
    (b'"abc123"', True),
    (b'W/"abc123"', True),
    (b'"x", "abc123"', True),
    (b'"x",W/"abc123" ', True),
    (b"*", True),
    (b'"abc"', False),
    (b'"abc1234"', False),
    (b"abc123", False),
    (b'" W/abc123"', False),
    (b"", False),
]


@pytest.mark.parametrize(("header", "expected"), INM)
def test_if_none_match(header: bytes, expected: bool) -> None:
    assert etag_matches(header, ETAG) is expected


SIZE = 100
RANGES = [
    (b"bytes=0-9", Outcome(206, 0, 9)),
    (b"bytes=10-", Outcome(206, 10, 99)),
    (b"bytes=-10", Outcome(206, 90, 99)),
    (b"bytes=-1000", Outcome(206, 0, 99)),
    (b"bytes=90-1000", Outcome(206, 90, 99)),
    (b"bytes=99-99", Outcome(206, 99, 99)),
    (b"BYTES=0-0", Outcome(206, 0, 0)),
    (b"bytes= 0-9 ", Outcome(206, 0, 9)),
    (b"bytes=0-99999999999999999999999999", Outcome(206, 0, 99)),
    (b"bytes=-0", UNSATISFIABLE),
    (b"bytes=100-", UNSATISFIABLE),
    (b"bytes=100-200", UNSATISFIABLE),
    (b"bytes=99999999999999999999999999-", UNSATISFIABLE),
    (b"bytes=1_0-20", None),  # int() would accept it
    (b"bytes=0-1_0", None),
    ("bytes=١-٢".encode(), None),  # Arabic-Indic digits, also int()-able
    (b"bytes=\xd9\xa1-\xd9\xa2", None),
    (b"bytes=+1-5", None),
    (b"bytes=0x1-5", None),
    (b"bytes=5-1", None),  # inverted
    (b"bytes=-", None),
    (b"bytes=", None),
    (b"bytes=0-1,3-4", None),  # several ranges: full body
    (b"bytes=0-1,", None),
    (b"items=0-1", None),
    (b"bytes 0-1", None),
    (b"", None),
]


@pytest.mark.parametrize(("header", "expected"), RANGES)
def test_parse_range(header: bytes, expected: Outcome | None) -> None:
    assert parse_range(header, SIZE) == expected


@pytest.mark.parametrize("header", [b"bytes=0-", b"bytes=0-0", b"bytes=-1"])
def test_empty_file_has_no_satisfiable_range(header: bytes) -> None:
    assert parse_range(header, 0) == UNSATISFIABLE


IF_RANGE = [
    (ETAG, ETAG, LAST_MODIFIED, True),
    (b'"other"', ETAG, LAST_MODIFIED, False),
    (b'W/"abc123"', ETAG, LAST_MODIFIED, False),  # a weak tag never satisfies If-Range
    (ETAG, b'W/"abc123"', LAST_MODIFIED, False),
    (LAST_MODIFIED, ETAG, LAST_MODIFIED, True),
    (b"Tue, 14 Nov 2023 22:13:21 GMT", ETAG, LAST_MODIFIED, False),
    (LAST_MODIFIED, ETAG, None, False),
    (b"garbage", ETAG, LAST_MODIFIED, False),
]


@pytest.mark.parametrize(("header", "etag", "last_modified", "expected"), IF_RANGE)
def test_if_range(header: bytes, etag: bytes, last_modified: bytes | None, expected: bool) -> None:
    assert if_range_allows(header, etag, last_modified) is expected


EARLIER = b"Tue, 14 Nov 2023 22:13:19 GMT"
LATER = b"Tue, 14 Nov 2023 23:00:00 GMT"
EVALUATE = [
    ({}, FULL),
    ({"if_none_match": ETAG}, NOT_MODIFIED),
    ({"if_none_match": ETAG, "head": True}, NOT_MODIFIED),
    ({"if_none_match": b'"nope"', "if_modified_since": LATER}, FULL),  # INM decides alone
    ({"if_modified_since": LAST_MODIFIED}, NOT_MODIFIED),
    ({"if_modified_since": LATER}, NOT_MODIFIED),
    ({"if_modified_since": EARLIER}, FULL),
    ({"if_modified_since": b"nonsense"}, FULL),
    ({"if_modified_since": LATER, "mtime": None}, FULL),  # no Last-Modified sent: no date test
    ({"range_": b"bytes=0-9"}, Outcome(206, 0, 9)),
    ({"range_": b"bytes=0-9", "head": True}, FULL),  # Range is for GET only
    ({"range_": b"bytes=0-9", "if_none_match": ETAG}, NOT_MODIFIED),
    ({"range_": b"bytes=0-9", "if_range": ETAG}, Outcome(206, 0, 9)),
    ({"range_": b"bytes=0-9", "if_range": b'"old"'}, FULL),
    ({"range_": b"bytes=500-"}, UNSATISFIABLE),
    ({"range_": b"bytes=500-", "if_range": b'"old"'}, FULL),
    ({"range_": b"bytes=1_0-20"}, FULL),
]


@pytest.mark.parametrize(("kwargs", "expected"), EVALUATE)
def test_evaluate(kwargs: dict[str, object], expected: Outcome) -> None:
    args: dict[str, object] = {
        "head": False,
        "size": SIZE,
        "etag": ETAG,
        "last_modified": LAST_MODIFIED,
        "mtime": MTIME,
        **kwargs,
    }
    assert evaluate(**args) == expected  # type: ignore[arg-type]
