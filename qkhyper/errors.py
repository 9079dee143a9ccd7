"""The errors qkhyper reports to its users.

Every error a user can cause carries the exit code the CLI should return, so
the CLI maps them to one line without a table of cases::

    QkhyperError            exit 1: something failed at run time
    ├── UsageError          exit 2: bad flag, bad value, missing file
    │   └── ConfigError     exit 2: unknown key, wrong type, duplicate, port in use
    ├── AppLoadError        exit 1: an app failed to import
    ├── AppStartupError     exit 1: an app's lifespan startup failed or it never got ready
    ├── NotRunning          exit 1: no supervisor answers on the control socket (`qkhyper status`, ...)
    └── ControlFailed       exit 1: a supervisor refused a control request, or did not answer in time
"""

from __future__ import annotations


class QkhyperError(Exception):
    """Base of every error qkhyper reports as one line."""

    exit_code = 1


class UsageError(QkhyperError):
    exit_code = 2


class ConfigError(UsageError):
    pass


class AppLoadError(QkhyperError):
    def __init__(self, app: str, detail: str) -> None:
        super().__init__(f"app {app!r}: {detail}")
        self.app = app


class AppStartupError(QkhyperError):
    def __init__(self, app: str, detail: str) -> None:
        # A child's report already names the app (in --aio, the mounted one): keep it.
        super().__init__(detail if detail.startswith("app '") else f"app {app!r}: {detail}")
        self.app = app


class NotRunning(QkhyperError):
    pass


class ControlFailed(QkhyperError):
    pass
