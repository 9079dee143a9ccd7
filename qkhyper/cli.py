"""The `qkhyper` command line: parse, build settings, call `qkhyper.api`.

Nothing else happens here. Errors become one line on stderr and an exit code
(2 for usage and config mistakes, 1 for run-time failures); `--debug` adds the
traceback.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import __version__, api
from . import export as exporter
from .config import Settings, load_settings
from .config.hypercorn_values import LOG_LEVELS
from .config.import_target import import_target, target_settings
from .config.model import ACCESS_LOG_FORMATS, BACKENDS, LOG_FORMATS, WORKER_CLASSES
from .config.workers import web_concurrency
from .control import commands
from .errors import QkhyperError, UsageError
from .export import DEFAULT_IMAGE
from .jsonlog import dumps, plain_fields
from .logs import SUPERVISOR_LABEL
from .supervisor.plan import Selection

EPILOG = "Config lookup: --config, then $QKHYPER_CONFIG, then ./hypercorn.toml, then the bundled demo."


def port_number(text: str) -> int:
    """`--port`: 0 (a free port) to 65535; getaddrinfo wraps 70000 round to 4464 without a word."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a port number 0-65535, got {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number 0-65535, got {port}")
    return port


def seconds(text: str) -> float:
    """`--graceful-timeout`: a finite number of seconds, 0 or more."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more seconds, got {text}")
    return value


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", metavar="PATH", help="config file (default: see lookup order below)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors (default: off)")


def _runtime(parser: argparse.ArgumentParser) -> None:
    """Where and on what every server command runs, plus the common options."""
    parser.add_argument("--host", help="address to bind (default: [qkhyper] host, 127.0.0.1)")
    parser.add_argument("--backend", choices=BACKENDS, help="server (default: [qkhyper] backend, hypercorn)")
    parser.add_argument(
        "--worker-class", choices=WORKER_CLASSES, help="event loop (default: [qkhyper] worker_class, uvloop)"
    )
    parser.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        help="text lines, or one JSON object a line (default: [qkhyper] log_format, text)",
    )
    parser.add_argument(
        "--log-level",
        type=str.lower,
        choices=list(LOG_LEVELS),
        help="of qkhyper, its workers and their servers (default: the top-level loglevel key, info)",
    )
    parser.add_argument(
        "--graceful-timeout",
        type=seconds,
        metavar="S",
        help="seconds in-flight requests get on shutdown, both backends (default: the top-level "
        "graceful_timeout key, 3)",
    )
    _common(parser)


WORKERS_HELP = "(default: {}, else $WEB_CONCURRENCY, else 1)"


def _add_serve(sub: Any, name: str, aliases: list[str], aio: bool, help_text: str, port: int | None) -> None:
    parser = sub.add_parser(name, aliases=aliases, help=help_text, description=help_text, epilog=EPILOG)
    parser.add_argument(
        "apps",
        nargs="*",
        metavar="APP",
        help="apps to serve (default, or `all`: every app in the config); or one module:app to serve "
        "without a config, as uvicorn does",
    )
    parser.add_argument(
        "--aio",
        action="store_true",
        default=aio,
        help=f"all selected apps in one process under /PREFIX (default: {'on' if aio else 'off'})",
    )
    parser.add_argument(
        "--exclude", nargs="+", action="extend", default=[], metavar="NAME", help="apps to leave out (repeatable)"
    )
    where = "8000" if port is None else str(port)
    parser.add_argument(
        "--port",
        type=port_number,
        default=port,
        help=f"port for the one app, or for --aio (default: the app's port; module:app and --aio: {where})",
    )
    parser.add_argument(
        "-w", "--workers", type=int, metavar="N", help="workers per app " + WORKERS_HELP.format("the app's workers")
    )
    parser.add_argument(
        "--reload", action="store_true", help="roll an app's workers when its code or the config changes (default: off)"
    )
    parser.add_argument(
        "--reload-dir",
        action="append",
        default=[],
        metavar="DIR",
        help="also watch DIR; a change there rolls every app (repeatable; implies --reload)",
    )
    _runtime(parser)
    parser.set_defaults(command="serve")


def _server_options(parser: argparse.ArgumentParser, table: str, port: int) -> None:
    """Options of qkhyper's own servers (static, gateway)."""
    parser.add_argument("--port", type=port_number, help=f"port (default: [qkhyper.{table}] port, {port})")
    parser.add_argument("-w", "--workers", type=int, metavar="N", help="worker processes " + WORKERS_HELP.format("1"))
    _runtime(parser)


def _access_log_options(parser: argparse.ArgumentParser, table: str) -> None:
    """The proxy's access line: `access_log` and `access_log_format` of `[qkhyper.<table>]`."""
    where = "each request to the API prefix" if table == "static" else "each proxied request"
    parser.add_argument(
        "--access-log",
        action=argparse.BooleanOptionalAction,
        help=f"log {where}: route, status, bytes, upstream, time, request ID (default: off)",
    )
    parser.add_argument(
        "--access-log-format",
        choices=ACCESS_LOG_FORMATS,
        help=f"Apache's combined line plus the proxy's fields, or JSON (default: [qkhyper.{table}] "
        "access_log_format, combined)",
    )


def _add_static(sub: Any) -> None:
    text = "serve a built single-page app, with the API prefix proxied"
    parser = sub.add_parser("static", aliases=["serve_static"], help=text, description=text, epilog=EPILOG)
    parser.add_argument("--root", help="folder of the built frontend (default: [qkhyper.static] root, ./static)")
    parser.add_argument("--api-prefix", help="path prefix proxied to --api-target (default: /api)")
    parser.add_argument(
        "--api-target", help="where API requests go: http(s)://HOST[:PORT][/base] (default: http://127.0.0.1:8000)"
    )
    _access_log_options(parser, "static")
    _server_options(parser, "static", 8080)
    parser.set_defaults(command="static")


def _add_gateway(sub: Any) -> None:
    text = "reverse proxy in front of the apps: one port, routed by prefix"
    parser = sub.add_parser("gateway", help=text, description=text, epilog=EPILOG)
    parser.add_argument(
        "--upstream",
        action="append",
        default=[],
        metavar="PREFIX=TARGET",
        help="move a prefix to TARGET (HOST[:PORT] or http(s)://HOST[:PORT][/base]), or add one; repeatable",
    )
    parser.add_argument("--default-upstream", metavar="HOST", help="host of the apps' routes (default: 127.0.0.1)")
    parser.add_argument("--fallback", metavar="HOST:PORT", help="where unmatched paths go (default: 404 JSON)")
    flag = argparse.BooleanOptionalAction
    parser.add_argument("--add-slashes", action=flag, help="redirect /prefix to /prefix/ (default: off)")
    parser.add_argument(
        "--fastapi-redirect",
        "--redirect",  # the older framework's other name for it
        action=flag,
        help="follow an upstream's 307/308 internally, with the same method and body (default: off)",
    )
    parser.add_argument(
        "--redirect-cache", action=flag, help="remember where --fastapi-redirect led, LRU (default: on)"
    )
    parser.add_argument("--cors-origin", action="append", metavar="ORIGIN", help="allow CORS from ORIGIN (repeatable)")
    parser.add_argument(
        "--max-body-size", type=int, metavar="BYTES", help="larger request bodies get 413 (default: none)"
    )
    parser.add_argument("--connect-timeout", type=float, metavar="S", help="upstream connect timeout (default: 5)")
    parser.add_argument("--read-timeout", type=float, metavar="S", help="wait for response headers (default: 60)")
    _access_log_options(parser, "gateway")
    _server_options(parser, "gateway", 8000)
    parser.set_defaults(command="gateway")


def _add_export(sub: Any) -> None:
    text = "write deployment files for kubernetes, compose or systemd, generated from the config"
    parser = sub.add_parser("export", help=text, description=text, epilog=EPILOG)
    parser.add_argument("target", metavar="TARGET", help="kubernetes, compose or systemd")
    parser.add_argument("--out", metavar="DIR", help="folder to write to (default: deploy/TARGET)")
    parser.add_argument("--image", default=DEFAULT_IMAGE, help=f"container image to run (default: {DEFAULT_IMAGE})")
    parser.add_argument(
        "--replicas",
        nargs="+",
        action="extend",
        default=[],
        metavar="APP=N",
        help="copies of an app (or gateway, static) to run (default: 2 each)",
    )
    parser.add_argument("--ingress", metavar="CLASS", help="kubernetes: also write Ingresses for CLASS (nginx)")
    _common(parser)
    parser.set_defaults(command="export")


def export(args: argparse.Namespace, settings: Settings) -> int:
    """`qkhyper export`: build the files, write them, list them."""
    files = exporter.build(settings, args.target, image=args.image, replicas=args.replicas, ingress=args.ingress or "")
    folder = Path(args.out or f"deploy/{args.target}")
    for path in exporter.write_files(folder, files):
        print(path)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qkhyper", description="Run a handful of ASGI apps, supervised, behind one gateway.", epilog=EPILOG
    )
    parser.add_argument("--version", action="version", version=f"qkhyper {__version__}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    _add_serve(sub, "serve", ["runserver"], False, "serve apps, each in its own supervised processes", None)
    # The older framework's runserver-aio listened on 8080; `serve --aio` takes the gateway's 8000.
    _add_serve(sub, "runserver-aio", [], True, "serve all apps in one process (same as: serve --aio --port 8080)", 8080)
    _add_gateway(sub)
    _add_static(sub)
    check = sub.add_parser("check", help="validate the config, import every app, print the plan", epilog=EPILOG)
    _common(check)
    check.set_defaults(command="check")
    text = "write a commented starter hypercorn.toml in the current folder"
    init = sub.add_parser("init", help=text, description=text)
    init.add_argument("--force", action="store_true", help="replace an existing hypercorn.toml (default: refuse)")
    init.add_argument("--debug", action="store_true", help="show tracebacks of errors (default: off)")
    init.set_defaults(command="init")
    _add_control(sub)
    _add_export(sub)
    for parser_ in sub.choices.values():  # so an unknown flag is reported with that command's usage
        parser_.set_defaults(parser=parser_)
    return parser


def _add_control(sub: Any) -> None:
    """The operator's commands, sent to running supervisors over their control sockets."""
    texts = {
        "status": "show every running supervisor of the config: apps, workers, restarts, memory",
        "restart": "rolling restart of the named apps only; waits until done",
        "scale": "run N workers of an app",
        "reload": "re-read the config and roll every app, as --reload does on a config change",
        "stop": "stop every running supervisor of the config (drain first, unless --now)",
    }
    for name, text in texts.items():
        parser = sub.add_parser(name, help=text, description=text, epilog=EPILOG)
        if name == "status":
            parser.add_argument("--json", action="store_true", help="one JSON object (default: tables)")
        elif name == "restart":
            parser.add_argument("apps", nargs="+", metavar="APP", help="apps to restart")
        elif name == "scale":
            parser.add_argument("app", metavar="APP", help="the app")
            parser.add_argument("workers", type=int, metavar="N", help="workers it should have (1 or more)")
        elif name == "stop":
            parser.add_argument("--now", action="store_true", help="kill the workers, no drain (default: drain)")
        if name in ("restart", "scale", "reload"):
            parser.add_argument(
                "--timeout",
                type=float,
                default=300.0,
                metavar="S",
                help="wait at most S seconds (default: 300)",
            )
        parser.add_argument(
            "--socket", metavar="PATH", help="talk to this control socket only (default: the config's control_socket)"
        )
        _common(parser)
        parser.set_defaults(command=name)


# CLI flags that override a settings key: flag attribute -> path in the settings.
_OVERRIDES: dict[str, dict[str, tuple[str, ...]]] = {
    "*": {
        "host": ("host",),
        "backend": ("backend",),
        "worker_class": ("worker_class",),
        "log_format": ("log_format",),
    },
    "gateway": {
        "port": ("gateway", "port"),
        "default_upstream": ("gateway", "default_upstream"),
        "fallback": ("gateway", "fallback"),
        "add_slashes": ("gateway", "add_slashes"),
        "fastapi_redirect": ("gateway", "fastapi_redirect"),
        "redirect_cache": ("gateway", "redirect_cache"),
        "cors_origin": ("gateway", "cors_origins"),
        "max_body_size": ("gateway", "max_body_size"),
        "connect_timeout": ("gateway", "connect_timeout"),
        "read_timeout": ("gateway", "read_timeout"),
        "access_log": ("gateway", "access_log"),
        "access_log_format": ("gateway", "access_log_format"),
    },
    "static": {
        "port": ("static", "port"),
        "root": ("static", "root"),  # absolute by now: see _cli_paths
        "api_prefix": ("static", "api_prefix"),
        "api_target": ("static", "api_target"),
        "access_log": ("static", "access_log"),
        "access_log_format": ("static", "access_log_format"),
    },
}


# Flags that name a path: relative to the current folder, unlike paths in the config file (relative to it).
_PATH_FLAGS = ("root", "reload_dir")


def _cli_paths(args: argparse.Namespace) -> None:
    """Make the path flags absolute against the current folder before they become settings."""
    for attr in _PATH_FLAGS:
        value = getattr(args, attr, None)
        if isinstance(value, str):
            setattr(args, attr, os.path.abspath(value))
        elif isinstance(value, list):
            setattr(args, attr, [os.path.abspath(item) for item in value])


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    found: dict[str, Any] = {}
    flags = {**_OVERRIDES["*"], **_OVERRIDES.get(args.command, {})}
    for attr, path in flags.items():
        value = getattr(args, attr, None)
        if value is None:
            continue
        target = found
        for part in path[:-1]:
            target = target.setdefault(part, {})
        target[path[-1]] = value
    return found


def _top_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """CLI flags that override a top-level (Hypercorn) key: `--log-level` is `loglevel`, one setting."""
    top: dict[str, Any] = {}
    if getattr(args, "log_level", None) is not None:
        top["loglevel"] = args.log_level
    if getattr(args, "graceful_timeout", None) is not None:
        top["graceful_timeout"] = args.graceful_timeout
    return top


def load(args: argparse.Namespace) -> Settings:
    """The settings with the command line's overrides (again on each `--reload` of the config).

    `serve module:app` replaces the config's apps with that one (config/import_target.py).
    """
    settings = load_settings(args.config, overrides=_overrides(args), top=_top_overrides(args))
    target = import_target(args.apps) if args.command == "serve" else None
    if target is None:
        return settings
    return target_settings(settings, target, web_concurrency(os.environ), Path.cwd())


def workers(args: argparse.Namespace) -> int | None:
    """Workers of gateway, static and `serve --aio`: the flag, else $WEB_CONCURRENCY (apps: config/load.py)."""
    if args.workers is not None:
        return int(args.workers)
    if args.command == "serve" and not args.aio:
        return None  # each app's `workers` key, already defaulted from $WEB_CONCURRENCY
    return web_concurrency(os.environ)


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "check":
        return api.check(settings)
    if args.command in CONTROL_COMMANDS:
        return control(args, settings)
    if args.command == "export":
        return export(args, settings)
    reread = lambda: load(args)  # noqa: E731 - how `qkhyper reload` re-reads, with this command line's overrides
    count = workers(args)
    if args.command == "gateway":
        return api.gateway(
            settings, upstreams=args.upstream, workers=count or 1, debug=args.debug, reload_settings=reread
        )
    if args.command == "static":
        return api.static(settings, workers=count or 1, debug=args.debug, reload_settings=reread)
    target = import_target(args.apps)
    if target is not None and args.aio:
        raise UsageError(f"serve {target} serves one app at the root: leave out --aio")
    selection = Selection([] if target else args.apps, args.exclude, args.aio, args.port, count)
    return api.serve(
        settings,
        selection,
        reload=args.reload,
        reload_dirs=args.reload_dir,
        reload_settings=reread,
        debug=args.debug,
        notes=[] if target else api.demo_notes(settings),
    )


CONTROL_COMMANDS = ("status", "restart", "scale", "reload", "stop")


def control(args: argparse.Namespace, settings: Settings) -> int:
    out, where = sys.stdout, args.socket
    if args.command == "status":
        return commands.status(settings, out, as_json=args.json, socket=where)
    if args.command == "restart":
        return commands.restart(settings, args.apps, out, timeout=args.timeout, socket=where)
    if args.command == "scale":
        return commands.scale(settings, args.app, args.workers, out, timeout=args.timeout, socket=where)
    if args.command == "reload":
        return commands.reload(settings, out, timeout=args.timeout, socket=where)
    return commands.stop(settings, out, now=args.now, socket=where)


def error_line(exc: QkhyperError, log_format: str) -> str:
    """The one line a failure ends with: a JSON object too once the settings said `log_format = "json"`."""
    if log_format == "json":
        return dumps(plain_fields(f"error: {exc}", SUPERVISOR_LABEL, os.getpid(), time.time(), "error"))
    return f"qkhyper: error: {exc}"


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse the command line; unknown flags are reported with the subcommand's usage, not the top-level one.

    `parse_args` on the top parser reports a subcommand's unknown arguments
    with the top-level usage (cpython gh-53580), which names no option of the
    subcommand; so they are collected here and the subcommand's parser reports them.

    Raises:
        SystemExit: argparse printed its usage line (2), or --help / --version (0).
    """
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        getattr(args, "parser", parser).error(f"unrecognized arguments: {' '.join(unknown)}")
    _cli_paths(args)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; a closed stdout (`qkhyper check | head -1`) ends it quietly.

    On a broken pipe, stdout is pointed at /dev/null so the interpreter's final
    flush does not print a second error, as the Python docs recommend
    (https://docs.python.org/3/library/signal.html#note-on-sigpipe).
    """
    try:
        code = _main(argv)
        sys.stdout.flush()  # here, not at exit, so a closed pipe is caught below
        return code
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1  # what Python itself exits with on EPIPE


def _main(argv: Sequence[str] | None) -> int:
    try:
        args = parse(argv)
    except SystemExit as exc:  # argparse has printed its usage line
        return int(exc.code or 0)
    log_format = "text"  # until the settings are read: a config that does not load says so in text
    try:
        if args.command == "init":
            path = api.init(Path.cwd(), force=args.force)
            print(f"wrote {path}; `qkhyper check` validates it, `qkhyper serve` runs it")
            return 0
        settings = load(args)
        if args.command not in ("check", *CONTROL_COMMANDS):  # these print a report, not a log
            log_format = settings.qkhyper.log_format
        return run(args, settings)
    except QkhyperError as exc:
        if args.debug:
            traceback.print_exc()
        print(error_line(exc, log_format), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 1
