"""qkhyper: run a handful of ASGI apps, supervised, behind one gateway."""

# `qkhyper.api.gateway` and `qkhyper.api.static` are not re-exported: the names
# belong to the `qkhyper.gateway` and `qkhyper.static` subpackages.
from .api import check, serve
from .asgi.host import HostApp
from .config import AppSpec, Settings, load_settings
from .errors import AppLoadError, AppStartupError, ConfigError, QkhyperError, UsageError
from .supervisor.plan import Selection

__version__ = "0.1.0"

__all__ = [
    "AppLoadError",
    "AppSpec",
    "AppStartupError",
    "ConfigError",
    "HostApp",
    "QkhyperError",
    "Selection",
    "Settings",
    "UsageError",
    "check",
    "load_settings",
    "serve",
]
