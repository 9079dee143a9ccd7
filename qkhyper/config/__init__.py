"""Configuration: the settings model, the loader and the port map."""

from .load import load_settings, normalize_prefix
from .model import AppSpec, GatewaySettings, QkhyperSettings, Settings, StaticSettings
from .portmap import read_port_map, write_port_map

__all__ = [
    "AppSpec",
    "GatewaySettings",
    "QkhyperSettings",
    "Settings",
    "StaticSettings",
    "load_settings",
    "normalize_prefix",
    "read_port_map",
    "write_port_map",
]
