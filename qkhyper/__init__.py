"""qkhyper: run a handful of ASGI apps, supervised, behind one gateway."""

from .api import check, serve
from .asgi.host import HostApp
from .config import AppSpec, Settings, load_settings
from .errors import AppLoadError, AppStartupError, ConfigError, QkhyperError, UsageError

__version__ = "0.1.0"

__all__ = [
    "AppLoadError",
    "AppSpec",
    "AppStartupError",
    "ConfigError",
    "HostApp",
    "QkhyperError",
    "Settings",
    "UsageError",
    "check",
    "load_settings",
    "serve",
]
