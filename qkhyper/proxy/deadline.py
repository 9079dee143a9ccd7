"""`send_timeout` for a run of sends, on one cancel scope instead of one per send.

A cancel scope per send (`anyio.fail_after`, `move_on_after`) was a fifth of
a gateway worker's time relaying 5,000 WebSockets, and a quarter relaying
2,000 SSE streams (py-spy, the bench's `scale-ws` and `scale-sse` rows): anyio
looks up the running library and the current task for each one. Here the task
that sends enters one scope for as long as it relays; each send arms the
deadline and disarms it after (a timer, no lookups), so the silence between
sends is never bounded, only a send under way. A send that outlives its
deadline cancels the whole relay; `expired` then says so, and `peer` whom the
send was for.
"""

from __future__ import annotations

import math

import anyio


class SendDeadline:
    __slots__ = ("peer", "scope", "timeout")

    def __init__(self, timeout: float) -> None:
        """`timeout` seconds per send; 0 or inf: none (the scope is still there, never armed)."""
        self.timeout = timeout or math.inf
        self.scope = anyio.CancelScope()
        self.peer = ""  # who the send under way (or the one that expired) was for

    def arm(self, peer: str = "") -> None:
        self.peer = peer
        if self.timeout != math.inf:
            self.scope.deadline = anyio.current_time() + self.timeout

    def disarm(self) -> None:
        if self.timeout != math.inf:
            self.scope.deadline = math.inf

    @property
    def expired(self) -> bool:
        """The relay ended because a send outlived its deadline (after the scope's block)."""
        return self.scope.cancelled_caught
