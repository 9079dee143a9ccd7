"""Benchmark qkhyper against the servers it wraps (SPEC section 7): `python scripts/bench`.

Every row starts a qkhyper server and a reference server on this machine, one after
the other, and loads each with the same `wrk` run. The report is the req/s ratio
against a target; missed targets still exit 0 (it is a report), a row that could
not run exits 1. Only 127.0.0.1 and free ports are used.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
CONFIG = """\
[qkhyper]
host = "127.0.0.1"
worker_class = "uvloop"
port_map = "ports.json"

[[qkhyper.apps]]
name = "hello"
app = "hello:app"
port = 0
"""
QK = ("{py}", "-m", "qkhyper", "serve", "--config", "{config}", "--port", "{port}")
UVICORN_QUIET = ("--no-access-log", "--log-level", "warning")
READY_TIMEOUT, STOP_TIMEOUT, WARMUP_SECONDS = 30.0, 10.0, 2


@dataclass(frozen=True)
class Side:
    """One server: its argv ({py}, {port}, {config} are filled in) and the path wrk loads."""

    argv: tuple[str, ...]
    path: str = "/"


@dataclass(frozen=True)
class Row:
    """One comparison; adding a row means adding one of these to ROWS."""

    name: str
    qkhyper: Side
    reference: Side
    target: float
    config: str = CONFIG  # written as hypercorn.toml next to hello.py


HYPERCORN = ("{py}", "-m", "hypercorn", "--worker-class", "uvloop", "--bind", "127.0.0.1:{port}", "hello:app")
UVICORN = ("{py}", "-m", "uvicorn", "hello:app", "--host", "127.0.0.1", "--port", "{port}", *UVICORN_QUIET)
ROWS = [
    Row("serve-hypercorn", Side((*QK, "hello")), Side(HYPERCORN), 0.95),
    Row("serve-uvicorn", Side((*QK, "hello", "--backend", "uvicorn")), Side(UVICORN), 0.95),
    Row("serve-aio", Side((*QK, "--aio"), "/hello/"), Side((*QK, "hello")), 0.9),
]


@dataclass
class Measure:
    """What one wrk run said; non-2xx answers are counted because they would inflate req/s."""

    rps: float
    p99_ms: float
    non_2xx: int


@dataclass
class Result:
    """One report row; the numbers stay None when the row errored."""

    name: str
    target: float
    qkhyper_rps: float | None = None
    reference_rps: float | None = None
    ratio: float | None = None
    passed: bool | None = None
    qkhyper_p99_ms: float | None = None
    reference_p99_ms: float | None = None
    error: str | None = None


class BenchError(Exception):
    """A row could not be measured; the message goes into the report."""


def free_port() -> int:
    """Ask the kernel for a free port (a small race until the server binds it is acceptable)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ensure_wrk() -> None:
    """wrk is the load generator the spec names; install it via apt when it is missing."""
    if not shutil.which("wrk"):
        subprocess.run("apt-get update -qq && apt-get install -y -qq wrk", shell=True, check=False)
    if not shutil.which("wrk"):
        sys.exit("bench: wrk is not installed and apt-get could not install it")


def parse_wrk(output: str) -> Measure:
    """Read req/s and the 99% line of `wrk --latency` (units us, ms, s, m)."""
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    p99 = re.search(r"^\s*99%\s+([\d.]+)(us|ms|s|m)\s*$", output, re.MULTILINE)
    if not rps or not p99:
        raise BenchError(f"could not parse wrk output:\n{output}")
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[p99.group(2)]
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    return Measure(float(rps.group(1)), float(p99.group(1)) * scale, int(non_2xx.group(1)) if non_2xx else 0)


def run_wrk(url: str, seconds: int, args: argparse.Namespace) -> Measure:
    """One wrk run; the timeout keeps a wedged server from hanging the whole report."""
    cmd = ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{seconds}s", "--latency", url]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30)
    if proc.returncode != 0:
        raise BenchError(f"wrk failed ({proc.returncode}): {proc.stderr.strip()}")
    return parse_wrk(proc.stdout)


def wait_ready(proc: subprocess.Popen[bytes], url: str) -> None:
    """Poll until 200: the port may be open before the app finished starting."""
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"server exited with code {proc.returncode} before it was ready")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        time.sleep(0.2)
    raise BenchError(f"server not ready at {url} after {READY_TIMEOUT:.0f} s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM for a graceful stop, then SIGKILL the whole session so no worker survives."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(STOP_TIMEOUT)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # start_new_session made pid the group id
    proc.wait()


def measure(side: Side, label: str, workdir: Path, args: argparse.Namespace) -> Measure:
    """Start one server, wait, warm up, measure, and always stop it."""
    port = free_port()
    argv = [part.format(py=sys.executable, port=port, config=workdir / "hypercorn.toml") for part in side.argv]
    log_path = workdir / f"{label}.log"
    url = f"http://127.0.0.1:{port}{side.path}"
    with log_path.open("wb") as log:
        # cwd: `python -m` and qkhyper's config both import hello.py from here; own session: see stop().
        proc = subprocess.Popen(argv, cwd=workdir, stdout=log, stderr=log, start_new_session=True)
        try:
            wait_ready(proc, url)
            run_wrk(url, WARMUP_SECONDS, args)
            result = run_wrk(url, args.duration, args)
        except (BenchError, subprocess.TimeoutExpired) as exc:
            tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-20:])
            raise BenchError(f"{label}: {exc}\n--- {' '.join(argv)}\n{tail}") from exc
        finally:
            stop(proc)
    if result.non_2xx:
        raise BenchError(f"{label}: {result.non_2xx} non-2xx responses from {url}")
    return result


def run_row(row: Row, workdir: Path, args: argparse.Namespace) -> Result:
    """Reference first, then qkhyper, back to back so both see the same machine."""
    res = Result(row.name, row.target)
    (workdir / "hypercorn.toml").write_text(row.config)
    try:
        ref = measure(row.reference, f"{row.name}-reference", workdir, args)
        qk = measure(row.qkhyper, f"{row.name}-qkhyper", workdir, args)
    except BenchError as exc:
        res.error = str(exc)
        print(f"bench: {row.name}: ERROR\n{exc}", file=sys.stderr)
        return res
    res.qkhyper_rps, res.reference_rps = qk.rps, ref.rps
    res.qkhyper_p99_ms, res.reference_p99_ms = qk.p99_ms, ref.p99_ms
    res.ratio = round(qk.rps / ref.rps, 3) if ref.rps else None
    res.passed = res.ratio is not None and res.ratio >= row.target
    return res


def machine() -> dict[str, Any]:
    """Numbers are only comparable on the same machine, so the report says which one."""
    return {
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def print_table(results: list[Result]) -> None:
    """Plain aligned columns: the output is read in CI logs, so no terminal tricks."""

    def num(value: float | None, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    head = ("row", "qkhyper r/s", "ref r/s", "ratio", "target", "result", "qk p99 ms", "ref p99 ms")
    lines = [head]
    for r in results:
        verdict = "ERROR" if r.error else ("pass" if r.passed else "FAIL")
        rates = (num(r.qkhyper_rps, ".0f"), num(r.reference_rps, ".0f"), num(r.ratio, ".3f"), f">= {r.target}")
        lines.append((r.name, *rates, verdict, num(r.qkhyper_p99_ms, ".2f"), num(r.reference_p99_ms, ".2f")))
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    for line in lines:
        print("  ".join([line[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(line[1:], widths[1:], strict=True)]))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python scripts/bench", description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, metavar="SECONDS", help="measured wrk run (default: 10)")
    parser.add_argument("--connections", type=int, default=64, metavar="N", help="wrk connections (default: 64)")
    parser.add_argument("--threads", type=int, default=2, metavar="N", help="wrk threads (default: 2)")
    parser.add_argument("--only", action="append", default=[], metavar="NAME", help="rows whose name contains NAME")
    parser.add_argument("--output", type=Path, default=Path("bench-results.json"), metavar="PATH", help="JSON report")
    args = parser.parse_args(argv)
    if args.duration < 1 or args.connections < args.threads or args.threads < 1:
        parser.error("need --duration >= 1 and 1 <= --threads <= --connections")
    args.rows = [row for row in ROWS if not args.only or any(s in row.name for s in args.only)]
    if not args.rows:
        parser.error(f"no row matches --only {args.only}; rows: {', '.join(r.name for r in ROWS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    ensure_wrk()
    with tempfile.TemporaryDirectory(prefix="qkhyper-bench-") as tmp:
        workdir = Path(tmp)
        shutil.copy(HERE / "hello.py", workdir / "hello.py")  # config modules resolve next to the config
        results = []
        for row in args.rows:
            print(f"bench: {row.name} ...", file=sys.stderr, flush=True)
            results.append(run_row(row, workdir, args))
    settings = {"duration": args.duration, "connections": args.connections, "threads": args.threads}
    report = {"machine": machine(), "settings": settings, "rows": [asdict(r) for r in results]}
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print_table(results)
    print(f"wrote {args.output}")
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
