"""systemd's notification protocol (sd_notify(3)) as pure decisions: what to send, and when to ping.

Under `Type=notify` systemd passes a datagram socket in `NOTIFY_SOCKET` and
waits for `READY=1` before it starts the units ordered after ours; under
`Type=notify-reload` it sends SIGHUP for `systemctl reload` and waits for
`RELOADING=1` (carrying `MONOTONIC_USEC=`, the CLOCK_MONOTONIC time the
reload began: systemd ≥ 253 ignores a RELOADING=1 older than its request)
and then `READY=1`. With `WatchdogSec=` it sets `WATCHDOG_USEC` (and
`WATCHDOG_PID`, the process meant) and restarts the service when no
`WATCHDOG=1` arrived for that long; sd_watchdog_enabled(3) advises a ping
every half interval.

The watchdog is the supervisor's own health, not just its liveness: it
pings only while every slot is healthy (`problems` is empty). A slot is
unhealthy while it has no serving worker (crashed, backing off, a
replacement starting), while its worker was judged hung, and while it is
crash-looping: `CRASH_LOOP` bad exits in a row, until a worker has served
`SETTLED` seconds. The ping waits for health to return rather than being
skipped, so one crash and a quick restart only delay one ping by the
restart's length; a slot that stays down (or keeps crashing) starves the
watchdog and systemd restarts the whole service.

Nothing here touches a socket or a clock: `notifier.py` sends, and
`systemd.py` runs the loop on trio's clock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .policy import Backoff

# Bad exits in a row (crashes, hung kills, failed restarts) that make a slot crash-looping:
# back-off has then reached 2 s, past what one unlucky crash or a deploy glitch explains.
CRASH_LOOP = 3
# A worker that served this long ends a crash loop, as it resets the back-off.
SETTLED = Backoff.reset_after

READY = "READY=1"
STOPPING = "STOPPING=1"
WATCHDOG = "WATCHDOG=1"


def notify_address(env: Mapping[str, str]) -> tuple[str | None, str | None]:
    """Where to send notifications, from `NOTIFY_SOCKET`: (address, None) or (None, why not).

    A leading `@` is a socket in the abstract namespace (a leading NUL byte on
    the wire). Only unix sockets are spoken here: an `AF_VSOCK` address
    (`vsock:CID:PORT`, systemd ≥ 254 for virtual machines) is declined with a
    reason, so the operator sees why no READY=1 arrives.
    """
    value = env.get("NOTIFY_SOCKET", "")
    if not value:
        return None, None
    if value.startswith("@"):
        return "\0" + value[1:], None
    if value.startswith("/"):
        return value, None
    return None, f"NOTIFY_SOCKET={value!r} is not a unix socket path or @name; systemd will not hear from qkhyper"


def watchdog_period(env: Mapping[str, str], pid: int) -> float | None:
    """Seconds between watchdog pings (half of `WATCHDOG_USEC`), or None when no watchdog is asked of us.

    As sd_watchdog_enabled(3): a `WATCHDOG_PID` naming another process means
    the variables were meant for it, and a value that is not a positive
    integer means no watchdog.
    """
    if env.get("WATCHDOG_PID", str(pid)) != str(pid):
        return None
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec / 2_000_000 if usec > 0 else None


@dataclass(frozen=True, slots=True)
class SlotHealth:
    """What the watchdog needs to know of one slot."""

    label: str
    serving_since: float | None  # when its current worker began serving; None: none is
    streak: int  # bad exits in a row (a crash, a hung kill, a failed restart)
    hung: bool = False  # its worker was judged hung and is being replaced


def problems(slots: Sequence[SlotHealth], now: float) -> list[str]:
    """Why the watchdog must not be pinged at `now`, one short phrase per unhealthy slot; [] when all are well."""
    found = []
    for slot in slots:
        if slot.hung:
            found.append(f"{slot.label} worker hung")
        elif slot.serving_since is None:
            found.append(f"{slot.label} has no worker")
        elif slot.streak >= CRASH_LOOP and now - slot.serving_since < SETTLED:
            found.append(f"{slot.label} crash-looping ({slot.streak} failures in a row)")
    return list(dict.fromkeys(found))  # two slots of one app in one state: said once


def settles_at(slots: Sequence[SlotHealth], now: float) -> float | None:
    """The earliest time after `now` at which a crash-looping slot that is serving becomes healthy by itself.

    Times already past are left out: those slots are healthy, and waking for
    them again would spin.
    """
    times = [
        slot.serving_since + SETTLED
        for slot in slots
        if slot.serving_since is not None and slot.streak >= CRASH_LOOP and not slot.hung
    ]
    return min((t for t in times if t > now), default=None)


def _one_line(text: str) -> str:
    """A STATUS= value: the protocol is newline-separated assignments, so the text must be one line."""
    return " ".join(text.split())


def status(text: str) -> str:
    return f"STATUS={_one_line(text)}"


def ready(text: str) -> str:
    return f"{READY}\n{status(text)}"


def reloading(monotonic_usec: int, text: str) -> str:
    """Sent as a roll begins; READY=1 follows when it is done, successful or not (the old workers kept)."""
    return f"RELOADING=1\nMONOTONIC_USEC={monotonic_usec}\n{status(text)}"


def stopping(text: str) -> str:
    return f"{STOPPING}\n{status(text)}"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _what(labels: Sequence[str], apps: int, workers: int) -> str:
    if apps == 1 and len(labels) == 1:
        return f"{labels[0]}: {_count(workers, 'worker')}"
    return f"{_count(apps, 'app')}, {_count(workers, 'worker')}"


def ready_status(labels: Sequence[str], apps: int, workers: int) -> str:
    """Like "3 apps, 5 workers ready"; with one app, its name: "users: 2 workers ready", "gateway: 1 worker ready"."""
    return f"{_what(labels, apps, workers)} ready"


def starting_status(labels: Sequence[str], apps: int, workers: int) -> str:
    return f"starting {_what(labels, apps, workers)}"


@dataclass(frozen=True, slots=True)
class View:
    """The supervisor's state, as much as its STATUS= line says."""

    labels: Sequence[str]
    apps: int
    workers: int
    rolling: str | None = None  # the app being rolled (SIGHUP)
    draining: bool = False
    problems: Sequence[str] = ()


def status_line(view: View) -> str:
    """One short line for `systemctl status`: what is wrong first, then what is going on, else ready."""
    if view.draining:
        return f"stopping: draining {_count(view.workers, 'worker')}"
    if view.problems:
        return "; ".join(view.problems)
    if view.rolling is not None:
        return f"rolling {view.rolling}"
    return ready_status(view.labels, view.apps, view.workers)
