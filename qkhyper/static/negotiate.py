"""Pure Accept-Encoding negotiation for precompressed `.br` / `.gz` siblings.

Only the siblings found on disk are candidates; nothing is compressed on the
fly. Each candidate's weight is its own q-value, else that of `*`, else 0
(not acceptable); `q=0` means refused (RFC 9110 §12.5.3). The best weight
above 0 wins, brotli on a tie (it is smaller). Otherwise the file itself is
sent, even if the client wrote `identity;q=0`: a 406 for a static asset
helps nobody, and the RFC allows the unencoded representation.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

IDENTITY = "identity"
# Preference on a tie, and the suffix of each sibling on disk.
SIBLINGS: tuple[tuple[str, str], ...] = (("br", ".br"), ("gzip", ".gz"))
_ALIASES = {"x-gzip": "gzip"}
_QVALUE = re.compile(r"q=(0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?)", re.IGNORECASE)


def parse_accept_encoding(header: bytes) -> dict[str, float]:
    """Coding → q-value; entries with a malformed q-value are dropped."""
    weights: dict[str, float] = {}
    for item in header.decode("latin-1").split(","):
        coding, _, params = item.partition(";")
        coding = coding.strip().lower()
        if not coding:
            continue
        weight = _weight(params)
        if weight is not None:
            weights[_ALIASES.get(coding, coding)] = weight
    return weights


def _weight(params: str) -> float | None:
    params = params.strip()
    if not params:
        return 1.0
    match = _QVALUE.fullmatch(params.replace(" ", ""))
    return float(match.group(1)) if match else None


def choose(header: bytes | None, available: Iterable[str]) -> str:
    """The encoding to send: one of `available` (e.g. `("br", "gzip")`) or `identity`."""
    if not header:
        return IDENTITY
    weights = parse_accept_encoding(header)
    star = weights.get("*", 0.0)
    best, best_weight = IDENTITY, 0.0
    for coding in available:
        weight = weights.get(coding, star)
        if weight > best_weight:
            best, best_weight = coding, weight
    return best
