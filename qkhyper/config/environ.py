"""Per-app environment: what a worker's environment holds before its app is imported.

Layers, each winning over the ones before it (README "Per-app environment"):

1. what qkhyper itself inherited,
2. `[qkhyper] env_file`, for every app,
3. the app's own `env_file`,
4. the app's `env` table.

That is docker compose's order (`environment:` over `env_file:` over the
image's) and systemd's (a unit's `Environment=` over the manager's): what the
config says about an app is what the app gets, even when the shell that
started qkhyper exported the same name. python-dotenv's `load_dotenv()` does
the opposite (`override=False`) because it runs inside one app; here two apps
may need two values of one name, which inheriting first would collapse.

Files are dotenv as python-dotenv parses them, relative to the config's
folder. `${VAR}` expands from the file's earlier lines and the layers below,
except inside single quotes (docker compose's rule, and the one way to write
a literal `${`). A missing file, a line that is not `KEY=VALUE` or a key
without a value is a ConfigError naming the file and line number, never the
line itself, which may hold a secret.

Values reach the worker through its process environment, never its argv,
which every local user can read with `ps`.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from dotenv.parser import parse_stream
from dotenv.variables import parse_variables

from ..errors import ConfigError
from .model import AppSpec, Settings

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True, slots=True)
class AppEnvironment:
    """What one worker gets on top of what it inherits, and where each name came from."""

    values: dict[str, str] = field(default_factory=dict, repr=False)  # secrets: never in a repr
    sources: dict[str, str] = field(default_factory=dict)  # name -> "env", or the file as configured


def check_env_table(env: Mapping[str, str], where: str) -> None:
    """The `env` table of an app: portable names, values an environment can hold.

    Raises:
        ConfigError: naming the key.
    """
    for name, value in env.items():
        if not _NAME.match(name):
            raise ConfigError(f"{where}.env: {name!r} is not a variable name (letters, digits, '_'; not a digit first)")
        if "\0" in value:
            raise ConfigError(f"{where}.env.{name} holds a NUL character, which no environment can")


def read_env_file(path: Path, shown: str, below: Mapping[str, str]) -> dict[str, str]:
    """The variables of a dotenv file, `${VAR}` expanded from its earlier lines and `below`.

    Raises:
        ConfigError: naming `shown` (the path as configured), for a missing or
            unreadable file, or the number of a line that is not KEY=VALUE.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"env file not found: {shown} (resolved to {path})") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8"
        raise ConfigError(f"cannot read env file {shown}: {reason}") from None
    values: dict[str, str] = {}
    for binding in parse_stream(io.StringIO(text)):
        original = binding.original.string
        line = binding.original.line + original[: len(original) - len(original.lstrip())].count("\n")
        if binding.error or (binding.key is not None and not _NAME.match(binding.key)):
            raise ConfigError(f"env file {shown}, line {line}: not KEY=VALUE")
        if binding.key is None:
            continue  # a comment or a blank line
        if binding.value is None:
            raise ConfigError(
                f"env file {shown}, line {line}: {binding.key} has no value (write {binding.key}= for '')"
            )
        if _single_quoted(binding.original.string):
            values[binding.key] = binding.value
        else:
            scope = {**below, **values}
            values[binding.key] = "".join(atom.resolve(scope) for atom in parse_variables(binding.value))
    return values


def _single_quoted(original: str) -> bool:
    return original.partition("=")[2].lstrip().startswith("'")


def app_environment(settings: Settings, spec: AppSpec, inherited: Mapping[str, str]) -> AppEnvironment:
    """The layers for one app, read now (exit 2 naming a missing file before anything runs).

    Raises:
        ConfigError: a missing or malformed env file.
    """
    values: dict[str, str] = {}
    sources: dict[str, str] = {}
    for shown in (settings.qkhyper.env_file, spec.env_file):
        if shown:
            found = read_env_file(settings.base_dir / shown, shown, {**inherited, **values})
            values.update(found)
            sources.update(dict.fromkeys(found, shown))
    values.update(spec.env)
    sources.update(dict.fromkeys(spec.env, "env"))
    return AppEnvironment(values, sources)


def shared_environment(envs: Mapping[str, AppEnvironment]) -> AppEnvironment:
    """The one environment of `serve --aio`, where every app runs in one process.

    Raises:
        ConfigError: naming the variable and two apps that need different values of it.
    """
    values: dict[str, str] = {}
    sources: dict[str, str] = {}
    owner: dict[str, str] = {}
    for app, env in envs.items():
        for name, value in env.values.items():
            if name in values and values[name] != value:
                raise ConfigError(
                    f"--aio runs every app in one process, but apps {owner[name]!r} and {app!r} "
                    f"set {name} to different values"
                )
            values[name], sources[name], owner[name] = value, env.sources[name], app
    return AppEnvironment(values, sources)
