"""Finding, reading and validating `hypercorn.toml`.

Precedence is CLI > environment (`QKHYPER_<KEY>`) > file > defaults. Every key
is checked: Hypercorn's own `Config.from_mapping` accepts a misspelled key
silently (it `setattr`s and swallows `AttributeError`), so the top-level keys
are checked against `hypercorn.config.Config` here instead.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import math
import os
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from ..errors import ConfigError, UsageError
from .cors import check_cors
from .environ import check_env_table
from .hypercorn_values import check_hypercorn_values
from .listeners import check_listener, check_trusted
from .model import (
    ACCESS_LOG_FORMATS,
    BACKENDS,
    DOCS_ASSETS,
    LOG_FORMATS,
    TLS_KEYS,
    UPSTREAM_PARSERS,
    WORKER_CLASSES,
    AppSpec,
    GatewaySettings,
    ProxySettings,
    QkhyperSettings,
    Settings,
    StaticSettings,
    TlsSettings,
    UpstreamSettings,
    tls_settings,
)
from .targets import parse_any, parse_target
from .workers import MANAGED_KEYS as MANAGED_WORKER_KEYS
from .workers import check_worker_limits, web_concurrency

CONFIG_ENV = "QKHYPER_CONFIG"
DEFAULT_NAME = "hypercorn.toml"
DEMO_CONFIG = Path(__file__).resolve().parent.parent / "demo" / "hypercorn.toml"

_TLS_POINTER = "set `{key}` in [qkhyper] (the apps), [qkhyper.gateway] or [qkhyper.static]"
_MUTUAL_TLS = "set `ca_certs` in [qkhyper], [qkhyper.gateway] or [qkhyper.static]: then clients need a certificate"

# Hypercorn keys qkhyper decides itself, with where the user should say it instead.
MANAGED_HYPERCORN_KEYS = {
    "bind": "set `port` in [[qkhyper.apps]] (or --port)",
    "insecure_bind": "set `port` in [[qkhyper.apps]] (or --port)",
    "quic_bind": "QUIC is not supported by qkhyper",
    "workers": "set `workers` in [[qkhyper.apps]] (or --workers)",
    "worker_class": "set `worker_class` in [qkhyper] (or --worker-class)",
    "use_reloader": "use `qkhyper serve --reload`",
    "daemon": "run qkhyper under a service manager instead",
    "pid_path": "qkhyper prints the pids in its ready table",
    "h11_max_incomplete_size": "set `max_header_size` in [qkhyper] (it applies to both backends)",
    # Hypercorn applies these to the unix sockets it binds itself; qkhyper binds them.
    "umask": "set `socket_mode` (with `bind`) in [[qkhyper.apps]]",
    "user": "set `socket_owner` (with `bind`) in [[qkhyper.apps]]",
    "group": "set `socket_group` (with `bind`) in [[qkhyper.apps]]",
    **MANAGED_WORKER_KEYS,
    # TLS is per server, so the gateway can end HTTPS in front of loopback apps (qkhyper/tls.py).
    **{key: _TLS_POINTER.format(key=key) for key in TLS_KEYS},
    "verify_mode": _MUTUAL_TLS,
    "cert_reqs": _MUTUAL_TLS,
    "verify_flags": "not supported: qkhyper's TLS keys are certfile, keyfile, keyfile_password and ca_certs",
}
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
_SEGMENT_RE = re.compile(r"^[A-Za-z0-9_~!$&'()*+,;=:@-][A-Za-z0-9_.~!$&'()*+,;=:@-]*$")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def find_config(explicit: str | None, env: Mapping[str, str]) -> tuple[Path, bool]:
    """Return the config file to read and whether it is the bundled demo."""
    chosen = explicit or env.get(CONFIG_ENV)
    if chosen:
        path = Path(chosen)
        if not path.is_file():
            origin = "--config" if explicit else f"${CONFIG_ENV}"
            raise UsageError(f"config file not found: {chosen} (from {origin})")
        return path.resolve(), False
    local = Path.cwd() / DEFAULT_NAME
    if local.is_file():
        return local.resolve(), False
    return DEMO_CONFIG, True


def load_settings(
    config: str | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    top: Mapping[str, Any] | None = None,
) -> Settings:
    """Read and validate the configuration.

    Args:
        config: the `--config` value, if any.
        env: the environment to read `QKHYPER_*` from (default: `os.environ`).
        overrides: CLI values for `[qkhyper]` keys; nested tables as dicts,
            e.g. `{"backend": "uvicorn", "gateway": {"port": 9000}}`.
        top: CLI values for top-level (Hypercorn) keys, e.g. `{"loglevel": "debug"}`
            from `--log-level`: the same key, checked the same way, so it keeps one meaning.

    Raises:
        ConfigError: for any unknown key, wrong type or inconsistent value.
        UsageError: when the named config file does not exist.
    """
    env = os.environ if env is None else env
    path, is_demo = find_config(config, env)
    data = _read_toml(path)
    table = data.pop("qkhyper", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: `qkhyper` must be a table")
    if is_demo:
        _demo_paths(table)
    merged = _deep_merge(_deep_merge(table, _env_layer(env)), dict(overrides or {}))
    merged = _default_workers(merged, web_concurrency(env))
    qk = _check_qkhyper(_build(QkhyperSettings, merged, "qkhyper"))
    base_dir = Path.cwd() if is_demo else path.parent
    source = "bundled demo" if is_demo else str(path)
    hypercorn = check_hypercorn_keys({**data, **(top or {})})
    check_hypercorn_values(hypercorn)
    return Settings(qkhyper=qk, hypercorn=hypercorn, base_dir=base_dir, source=source)


def _default_workers(table: dict[str, Any], workers: int | None) -> dict[str, Any]:
    """`$WEB_CONCURRENCY` for every app whose table does not say `workers` (config beats it, as in gunicorn)."""
    apps = table.get("apps")
    if workers is None or not isinstance(apps, list):
        return table
    filled = [{"workers": workers, **app} if isinstance(app, dict) else app for app in apps]
    return {**table, "apps": filled}


def _demo_paths(table: dict[str, Any]) -> None:
    """Make the bundled demo's own files absolute: they live in the package, wherever it is installed.

    Only what the demo ships (its frontend, `[qkhyper.static] root`) resolves in
    the demo's folder; what qkhyper writes (port map, control sockets) and any
    path given by flag or environment still resolve in the current folder.
    """
    static = table.get("static")
    if isinstance(static, dict) and isinstance(static.get("root"), str):
        static["root"] = str(DEMO_CONFIG.parent / static["root"])


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise UsageError(f"cannot read config {path}: {exc.strerror}") from None


def _deep_merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def did_you_mean(key: str, known: typing.Iterable[str]) -> str:
    match = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


def _unknown(key: str, where: str, known: typing.Iterable[str]) -> ConfigError:
    return ConfigError(f"unknown key {key!r} in [{where}]{did_you_mean(key, known)}")


def _hints(cls: Any) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _build(cls: type[Any], values: Mapping[str, Any], where: str) -> Any:
    """Make a settings dataclass from a TOML table, naming any bad key."""
    if not isinstance(values, Mapping):
        raise ConfigError(f"[{where}] must be a table, got {type(values).__name__}")
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in values.items():
        if key not in names:
            raise _unknown(key, where, names)
        kwargs[key] = _coerce(value, _hints(cls)[key], f"{where}.{key}")
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a required field is missing
        missing = str(exc).split("argument")[-1].strip(": ")
        raise ConfigError(f"[{where}] is missing required key {missing}") from None


_TABLES: dict[Any, type] = {
    GatewaySettings: GatewaySettings,
    StaticSettings: StaticSettings,
}


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if origin is types.UnionType:  # `float | None`: TOML has no null, so a value is the other type
        (tp,) = [arg for arg in typing.get_args(tp) if arg is not type(None)]
        origin = typing.get_origin(tp)
    if tp in _TABLES:
        return _build(tp, value, key)
    if tp is UpstreamSettings:
        if isinstance(value, (list, str)):  # the short form: just the targets
            return UpstreamSettings(targets=_coerce(value, list[str], f"{key}.targets"))
        return _build(UpstreamSettings, value, key)
    if origin is list and typing.get_args(tp) == (AppSpec,):
        if not isinstance(value, list):
            raise _wrong_type(key, "an array of tables ([[qkhyper.apps]])", value)
        return [_build(AppSpec, item, f"{key}[{i}]") for i, item in enumerate(value)]
    if origin is list:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise _wrong_type(key, "a list of strings", value)
        return list(value)
    if origin is dict:
        if not isinstance(value, dict):
            raise _wrong_type(key, "a table", value)
        return {k: _coerce(v, typing.get_args(tp)[1], f"{key}.{k}") for k, v in value.items()}
    return _scalar(value, tp, key)


def _scalar(value: Any, tp: Any, key: str) -> Any:
    if tp is bool and isinstance(value, bool):
        return value
    if tp is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp is str and isinstance(value, str):
        return value
    raise _wrong_type(key, describe_type(tp), value)


_TYPE_WORDS = {
    bool: "true or false",
    int: "an integer",
    float: "a number",
    str: "a string",
    list: "a list",
    dict: "a table",
}


def describe_type(tp: Any) -> str:
    return _TYPE_WORDS.get(tp, f"a {getattr(tp, '__name__', tp)}")


def _wrong_type(key: str, expected: str, value: Any) -> ConfigError:
    return ConfigError(f"{key} must be {expected}, got {value!r}")


def _env_names() -> dict[str, tuple[str, ...]]:
    """Map every `QKHYPER_*` variable to the settings path it sets."""
    names: dict[str, tuple[str, ...]] = {}
    for field in dataclasses.fields(QkhyperSettings):
        tp = _hints(QkhyperSettings)[field.name]
        if tp in _TABLES:
            for sub in dataclasses.fields(tp):
                names[f"QKHYPER_{field.name}_{sub.name}".upper()] = (field.name, sub.name)
        elif field.name != "apps":
            names[f"QKHYPER_{field.name}".upper()] = (field.name,)
    return names


def _env_layer(env: Mapping[str, str]) -> dict[str, Any]:
    names = _env_names()
    layer: dict[str, Any] = {}
    for var, text in env.items():
        if not var.startswith("QKHYPER_") or var == CONFIG_ENV:
            continue
        if var not in names:
            raise ConfigError(f"unknown environment variable {var}{did_you_mean(var, names)}")
        path = names[var]
        owner: type = QkhyperSettings if len(path) == 1 else _hints(QkhyperSettings)[path[0]]
        value = _from_text(text, _hints(owner)[path[-1]], var)
        target = layer
        for part in path[:-1]:
            target = target.setdefault(part, {})
        target[path[-1]] = value
    return layer


def _from_text(text: str, tp: Any, name: str) -> Any:
    """Parse an environment value by the type of the key it sets."""
    try:
        if tp is bool:
            if text.lower() in _TRUE | _FALSE:
                return text.lower() in _TRUE
            raise ValueError
        if tp in (int, float):
            return tp(text)
    except ValueError:
        raise ConfigError(f"{name} must be {describe_type(tp)}, got {text!r}") from None
    if typing.get_origin(tp) is list:
        return [part.strip() for part in text.split(",") if part.strip()]
    if typing.get_origin(tp) is dict:
        raise ConfigError(f"{name} cannot be set from the environment; use the config file")
    return text


def _check_qkhyper(qk: QkhyperSettings) -> QkhyperSettings:
    _one_of("qkhyper.backend", qk.backend, BACKENDS)
    _one_of("qkhyper.worker_class", qk.worker_class, WORKER_CLASSES)
    _one_of("qkhyper.docs_assets", qk.docs_assets, DOCS_ASSETS)
    _one_of("qkhyper.log_format", qk.log_format, LOG_FORMATS)
    _check_port("qkhyper.gateway.port", qk.gateway.port)
    _check_port("qkhyper.static.port", qk.static.port)
    for key, port in (
        ("qkhyper.metrics_port", qk.metrics_port),
        ("qkhyper.gateway.metrics_port", qk.gateway.metrics_port),
        ("qkhyper.static.metrics_port", qk.static.metrics_port),
    ):
        if port and not 1 <= port <= 65535:
            raise ConfigError(f"{key} must be a port number 1-65535 (0 or absent: metrics off), got {port}")
    _check_proxy("qkhyper.gateway", qk.gateway)
    _check_proxy("qkhyper.static", qk.static)
    _check_upstreams(qk.gateway)
    check_cors(qk.gateway.cors_origins, qk.gateway.cors_allow_credentials, "qkhyper.gateway")
    if qk.gateway.cors_max_age < 0:
        raise ConfigError(f"qkhyper.gateway.cors_max_age must be 0 or more, got {qk.gateway.cors_max_age}")
    for where, table in (("qkhyper", qk), ("qkhyper.gateway", qk.gateway), ("qkhyper.static", qk.static)):
        check_tls_keys(where, tls_settings(table))
    if qk.ready_timeout <= 0:
        raise ConfigError("qkhyper.ready_timeout must be positive")
    check_trusted(qk.forwarded_allow_ips)
    _check_edge_limits(qk)
    check_worker_limits(qk)
    return dataclasses.replace(qk, apps=_check_apps(qk.apps))


# Keys of ProxySettings that must be above zero; the other numbers may be 0 ("off" or "unlimited").
_POSITIVE = ("connect_timeout", "read_timeout", "client_body_timeout", "ws_max_message_size")


def _check_proxy(where: str, proxy: ProxySettings) -> None:
    _one_of(f"{where}.access_log_format", proxy.access_log_format, ACCESS_LOG_FORMATS)
    _one_of(f"{where}.upstream_parser", proxy.upstream_parser, UPSTREAM_PARSERS)
    if proxy.upstream_parser == "httptools" and importlib.util.find_spec("httptools") is None:
        raise ConfigError(f"{where}.upstream_parser = 'httptools' needs httptools: pip install 'qkhyper[uvicorn]'")
    for field in dataclasses.fields(ProxySettings):
        value = getattr(proxy, field.name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        floor = "positive" if field.name in _POSITIVE else "0 or more"
        if not math.isfinite(value) or value < 0 or (value == 0 and field.name in _POSITIVE):
            raise ConfigError(f"{where}.{field.name} must be {floor}, got {value}")


def check_tls_keys(where: str, tls: TlsSettings) -> None:
    """The keys that only make sense together, without touching a file (config load).

    Raises:
        ConfigError: one line naming the table and the key that is missing.
    """
    if tls.certfile and not tls.keyfile:
        raise ConfigError(f"{where}.certfile is set without {where}.keyfile: set both (PEM files)")
    if tls.keyfile and not tls.certfile:
        raise ConfigError(f"{where}.keyfile is set without {where}.certfile: set both (PEM files)")
    for key in ("keyfile_password", "ca_certs"):
        if getattr(tls, key) and not tls.certfile:
            raise ConfigError(f"{where}.{key} needs {where}.certfile and {where}.keyfile")


def _check_upstreams(gateway: GatewaySettings) -> None:
    for prefix, upstream in gateway.upstreams.items():
        where = f"qkhyper.gateway.upstreams {prefix!r}"
        normalize_prefix(prefix, where)
        for target in upstream.targets:
            parse_any(target, None, where)
        for name in ("upstream_idle_timeout", "sse_idle_timeout"):
            value = getattr(upstream, name)
            if value is not None and (not math.isfinite(value) or value < 0):
                raise ConfigError(f"{where}.{name} must be 0 or more, got {value}")
    if gateway.fallback:
        parse_target(gateway.fallback, None, "qkhyper.gateway.fallback")


def _check_edge_limits(qk: QkhyperSettings) -> None:
    for key in ("max_header_size", "max_headers", "header_timeout"):
        value = getattr(qk, key)
        if value <= 0:
            raise ConfigError(f"qkhyper.{key} must be positive, got {value}")
    if qk.h2c and qk.backend == "uvicorn":
        raise ConfigError('qkhyper.h2c = true needs backend = "hypercorn" (uvicorn does not serve h2c)')


def _one_of(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{key} must be one of {', '.join(allowed)}, got {value!r}")


def _check_port(key: str, port: int) -> None:
    if not 0 <= port <= 65535:
        raise ConfigError(f"{key} must be a port number 0-65535, got {port}")


def _check_apps(apps: list[AppSpec]) -> list[AppSpec]:
    """Check every app and return them with normalised prefixes."""
    seen: dict[str, dict[Any, str]] = {"name": {}, "prefix": {}, "port": {}, "bind": {}}
    checked = []
    for i, spec in enumerate(apps):
        where = f"qkhyper.apps[{i}]"
        if not _NAME_RE.match(spec.name):
            raise ConfigError(f"{where}.name {spec.name!r} may only use letters, digits, '_', '.', '-'")
        if ":" not in spec.app:
            raise ConfigError(f"{where}.app {spec.app!r} must look like 'module:attribute'")
        spec = dataclasses.replace(spec, prefix=normalize_prefix(spec.prefix or spec.name, f"{where}.prefix"))
        _check_port(f"{where}.port", spec.port)
        if spec.workers < 1:
            raise ConfigError(f"{where}.workers must be at least 1, got {spec.workers}")
        check_listener(spec, where)
        check_env_table(spec.env, where)
        for attr in ("name", "prefix", "port", "bind"):
            value = getattr(spec, attr)
            if not value and attr in ("port", "bind"):  # auto ports and TCP apps may repeat
                continue
            if value in seen[attr]:
                raise ConfigError(f"duplicate {attr} {value!r}: apps {seen[attr][value]!r} and {spec.name!r}")
            seen[attr][value] = spec.name
        checked.append(spec)
    return checked


def normalize_prefix(prefix: str, key: str) -> str:
    """Return a prefix without slashes around it, or raise naming the key."""
    stripped = prefix.strip("/")
    segments = stripped.split("/")
    if not stripped or not all(_SEGMENT_RE.match(s) for s in segments):
        raise ConfigError(f"{key} {prefix!r} must be one or more URL path segments like 'users' or 'api/v1'")
    return stripped


@cache
def _hypercorn_keys() -> dict[str, Any]:
    """The settable keys of `hypercorn.config.Config`, with their defaults."""
    from hypercorn.config import Config

    keys: dict[str, Any] = {}
    for name, value in vars(Config).items():
        if name.startswith("_"):
            continue
        if isinstance(value, property):
            if value.fset is not None:
                keys[name] = None
        elif not callable(value) and not isinstance(value, classmethod):
            keys[name] = value
    return keys


def check_hypercorn_keys(data: Mapping[str, Any]) -> dict[str, Any]:
    """Validate the top-level (Hypercorn) keys: known, not managed, right type."""
    known = _hypercorn_keys()
    for key, value in data.items():
        if key in MANAGED_HYPERCORN_KEYS:
            raise ConfigError(f"{key!r} is managed by qkhyper: {MANAGED_HYPERCORN_KEYS[key]}")
        if key not in known:
            hint = did_you_mean(key, [*known, "qkhyper"])
            raise ConfigError(f"unknown key {key!r} at the top level (not a Hypercorn setting){hint}")
        _check_hypercorn_type(key, value, known[key])
    return dict(data)


# Hypercorn settings whose default is None, with the type a value must have.
_OPTIONAL_TYPES: dict[str, type] = {
    "accesslog": str,
    "logconfig": str,
    "logconfig_dict": dict,
    "max_requests": int,
    "read_timeout": int,
    "statsd_host": str,
    "websocket_ping_interval": float,
    "root_path": str,
}


def _check_hypercorn_type(key: str, value: Any, default: Any) -> None:
    expected = _OPTIONAL_TYPES.get(key) if default is None else type(default)
    if expected is None:
        return
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected is bool:
        ok = isinstance(value, bool)
    elif expected in (int, float):
        ok = number and (expected is float or isinstance(value, int))
    else:
        ok = isinstance(value, expected) or (expected is list and isinstance(value, str))
    if not ok:
        raise _wrong_type(key, describe_type(expected), value)
