"""Configuration: the settings model, the loader and the port map."""

from .load import load_settings, normalize_prefix
from .model import AppSpec, GatewaySettings, QkhyperSettings, Settings, StaticSettings
from .portmap import PortMap, read_port_map, recorded_ports

__all__ = [
    "AppSpec",
    "GatewaySettings",
    "PortMap",
    "QkhyperSettings",
    "Settings",
    "StaticSettings",
    "load_settings",
    "normalize_prefix",
    "read_port_map",
    "recorded_ports",
]
