import signal

import pytest

from qkhyper.supervisor.policy import Backoff
from qkhyper.supervisor.signals import Command, command_for


def test_backoff_doubles_to_the_cap() -> None:
    backoff = Backoff()
    delays = [backoff.delay(started_at=t, now=t + 1) for t in range(10)]
    assert delays == [0.5, 1, 2, 4, 8, 16, 30, 30, 30, 30]


def test_backoff_resets_after_a_minute_up() -> None:
    backoff = Backoff()
    for t in range(5):
        backoff.delay(started_at=t, now=t + 1)
    assert backoff.delay(started_at=100, now=160) == 0.5
    assert backoff.delay(started_at=160, now=161) == 1


@pytest.mark.parametrize(
    ("signum", "draining", "command"),
    [
        (signal.SIGINT, False, Command.DRAIN),
        (signal.SIGTERM, False, Command.DRAIN),
        (signal.SIGINT, True, Command.KILL),
        (signal.SIGTERM, True, Command.KEEP_DRAINING),
        (signal.SIGQUIT, True, Command.QUIT),
        (signal.SIGQUIT, False, Command.QUIT),
        (signal.SIGHUP, False, Command.ROLL),
        (signal.SIGTTIN, False, Command.SCALE_UP),
        (signal.SIGTTOU, False, Command.SCALE_DOWN),
        (signal.SIGUSR1, False, Command.IGNORE),
        (signal.SIGUSR2, False, Command.IGNORE),
        (signal.SIGWINCH, False, Command.IGNORE),
    ],
)
def test_signal_table(signum: int, draining: bool, command: Command) -> None:
    assert command_for(signum, draining) is command
