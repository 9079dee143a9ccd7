"""A worker's environment: what the supervisor inherited, minus systemd's protocol, plus its app's variables.

`LISTEN_FDS`, `LISTEN_PID` and `LISTEN_FDNAMES` describe the sockets systemd
passed to the supervisor (supervisor/activation.py); `NOTIFY_SOCKET`,
`WATCHDOG_USEC` and `WATCHDOG_PID` are how the supervisor reports to systemd
(supervisor/notify.py). They are dropped, as `sd_listen_fds(1)` and
`sd_notify(1)` drop them, so nothing in a worker mistakes the sockets for its
own or speaks to systemd in the supervisor's name (an app that sent
`READY=1` or `STOPPING=1` would mislead systemd about the whole service). The
app's variables (config/environ.py) win over what was inherited.
"""

from __future__ import annotations

from collections.abc import Mapping

SYSTEMD_VARS = ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


def worker_environ(inherited: Mapping[str, str], app_env: Mapping[str, str]) -> dict[str, str]:
    env = {name: value for name, value in inherited.items() if name not in SYSTEMD_VARS}
    env.update(app_env)
    env["PYTHONUNBUFFERED"] = "1"  # each line reaches the supervisor as it is written
    return env
