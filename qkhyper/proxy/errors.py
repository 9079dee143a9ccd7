"""Why a proxied request failed: one class per failure, one table for what follows.

Each failure is raised where it is detected (the stream, the connection, the
pool, the watchdog, the body readers) and nowhere re-decided: `OUTCOMES` says,
for every class, the status the client gets, the words of the JSON body and the
label logs (and metrics) use::

    ProxyError
    ├── UpstreamError                 the upstream side
    │   ├── ConnectFailed             502  refused, unreachable, reset while connecting
    │   │   └── TlsFailed             502  TLS handshake failed: certificate, name, or no TLS (detail says which)
    │   ├── ConnectTimeout            504  no connection (TLS handshake included) within connect_timeout
    │   ├── ResponseHeadTimeout       504  no response head within read_timeout
    │   ├── UpstreamIdleTimeout       504  silent between body chunks for upstream_idle_timeout
    │   ├── UpstreamClosed            502  closed or reset before the response ended
    │   └── MalformedResponse         502  not HTTP/1.1 as h11 reads it, CL+TE, a bad WebSocket handshake
    └── ClientError                   the client side
        ├── BadRequest                400  cannot be forwarded as it is (the message says why)
        ├── BodyTooLarge              413  request body over max_body_size
        ├── ClientBodyTimeout         408  silent between request body chunks for client_body_timeout
        └── ClientGone                499  left before the answer (nginx's code; access log only)

Once the response has started, no status can be sent any more: the forwarder
then ends the response short, which closes the client's connection.
"""

from __future__ import annotations

from dataclasses import dataclass


class ProxyError(Exception):
    """Base of every failure of a proxied request; the message is for the log.

    `detail`, when set, goes to the client too (the JSON body's "detail").
    """

    detail = ""


class UpstreamError(ProxyError):
    pass


class ConnectFailed(UpstreamError):
    pass


class TlsFailed(ConnectFailed):
    """The TLS handshake failed. A ConnectFailed: nothing was sent, so another target may be tried.

    `detail` names the failure without the upstream's address, e.g.
    "upstream TLS: certificate verify failed: Hostname mismatch, ...".
    """

    def __init__(self, message: str, detail: str) -> None:
        super().__init__(message)
        self.detail = detail


class ConnectTimeout(UpstreamError):
    pass


class ResponseHeadTimeout(UpstreamError):
    pass


class UpstreamIdleTimeout(UpstreamError):
    pass


class UpstreamClosed(UpstreamError):
    """The upstream closed or reset the connection before the response ended.

    `before_response` is true when not one byte of the response had arrived:
    then the upstream cannot have acted on a request it never answered, if it
    closed a pooled connection it held idle (SPEC §4 decides the retry).
    """

    def __init__(self, message: str, *, before_response: bool = False) -> None:
        super().__init__(message)
        self.before_response = before_response


class MalformedResponse(UpstreamError):
    pass


class ClientError(ProxyError):
    pass


class BadRequest(ClientError):
    pass


class BodyTooLarge(ClientError):
    pass


class ClientBodyTimeout(ClientError):
    pass


class ClientGone(ClientError):
    pass


@dataclass(frozen=True, slots=True)
class Outcome:
    status: int
    error: str  # the JSON body's "error"
    reason: str  # its "reason"; "" leaves it out
    label: str  # the failure's name in logs and metrics


OUTCOMES: dict[type[ProxyError], Outcome] = {
    ConnectFailed: Outcome(502, "bad gateway", "upstream refused the connection", "connect_failed"),
    TlsFailed: Outcome(502, "bad gateway", "upstream TLS handshake failed", "tls_failed"),
    ConnectTimeout: Outcome(504, "gateway timeout", "upstream did not accept a connection in time", "connect_timeout"),
    ResponseHeadTimeout: Outcome(504, "gateway timeout", "upstream timed out", "head_timeout"),
    UpstreamIdleTimeout: Outcome(504, "gateway timeout", "upstream stopped sending", "idle_timeout"),
    UpstreamClosed: Outcome(502, "bad gateway", "upstream closed the connection", "upstream_closed"),
    MalformedResponse: Outcome(502, "bad gateway", "upstream sent a malformed response", "malformed_response"),
    BadRequest: Outcome(400, "bad request", "", "bad_request"),
    BodyTooLarge: Outcome(413, "request body too large", "", "body_too_large"),
    ClientBodyTimeout: Outcome(408, "request timeout", "client stopped sending the body", "client_body_timeout"),
    ClientGone: Outcome(499, "client closed request", "", "client_gone"),
}


def outcome(exc: ProxyError) -> Outcome:
    """What `exc` means for the client and the log (a subclass gets its base's row)."""
    for cls in type(exc).__mro__:
        found = OUTCOMES.get(cls)
        if found is not None:
            return found
    raise LookupError(f"no outcome for {type(exc).__name__}")  # a bug: every class has a row
