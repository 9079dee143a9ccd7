"""What each signal asks of the supervisor, as a pure lookup.

Signals arrive as a stream (`trio.open_signal_receiver`) and are turned into
commands here; no handler does work or exits the process.
"""

from __future__ import annotations

import enum
import signal


class Command(enum.Enum):
    DRAIN = "graceful shutdown"
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

_TABLE = {
    signal.SIGQUIT: Command.QUIT,
    signal.SIGHUP: Command.ROLL,
    signal.SIGTTIN: Command.SCALE_UP,
    signal.SIGTTOU: Command.SCALE_DOWN,
}


def command_for(signum: int, draining: bool) -> Command:
    """INT/TERM drain the first time and kill the second; the rest per the table."""
    if signum in (signal.SIGINT, signal.SIGTERM):
        return Command.KILL if draining else Command.DRAIN
    return _TABLE.get(signal.Signals(signum), Command.IGNORE)
