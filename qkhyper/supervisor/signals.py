"""What each signal asks of the supervisor, as a pure lookup.

Signals arrive as a stream (`trio.open_signal_receiver`) and are turned into
commands here; no handler does work or exits the process.
"""

from __future__ import annotations

import enum
import signal


class Command(enum.Enum):
    DRAIN = "graceful shutdown"
    KEEP_DRAINING = "graceful shutdown continues"
    KILL = "immediate shutdown"
    QUIT = "immediate shutdown, no drain"
    ROLL = "rolling restart"
    SCALE_UP = "one worker more per app"
    SCALE_DOWN = "one worker fewer per app"
    IGNORE = "ignored"


HANDLED = (
    signal.SIGINT,
    signal.SIGTERM,
    signal.SIGQUIT,
    signal.SIGHUP,
    signal.SIGTTIN,
    signal.SIGTTOU,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGWINCH,
)

# Once a drain runs, only a person pressing Ctrl-C again means "now": process
# managers, `timeout(1)` and `kill -TERM -PGID` (which reaches the supervisor
# twice when it shares a group with its launcher) deliver SIGTERM twice as a
# matter of course, and killing then would lose the requests in flight.
_WHILE_DRAINING = {
    signal.SIGINT: Command.KILL,
    signal.SIGTERM: Command.KEEP_DRAINING,
}

_TABLE = {
    signal.SIGQUIT: Command.QUIT,
    signal.SIGHUP: Command.ROLL,
    signal.SIGTTIN: Command.SCALE_UP,
    signal.SIGTTOU: Command.SCALE_DOWN,
}


def command_for(signum: int, draining: bool) -> Command:
    """INT/TERM drain the first time; again, INT kills and TERM keeps draining; the rest per the table."""
    if signum in (signal.SIGINT, signal.SIGTERM):
        return _WHILE_DRAINING[signal.Signals(signum)] if draining else Command.DRAIN
    return _TABLE.get(signal.Signals(signum), Command.IGNORE)
