"""`scripts/bench --chart`: the SVG drawn from a report, checked as XML; no benchmark row is run.

The bench is a script folder, not a package, so its modules are loaded from their paths.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "scripts" / "bench"
SVG = "{http://www.w3.org/2000/svg}"


def load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


chart = load("qkhyper_bench_chart", BENCH / "chart.py")


def row(name: str, ratio: float | None, target: float | None = 1.0, **extra: Any) -> dict[str, Any]:
    """A report row as `python scripts/bench` writes it."""
    base = {"name": name, "target": target, "metric": "rps", "qkhyper_rps": None, "reference_rps": None}
    base |= {"qkhyper_mbps": None, "reference_mbps": None, "ratio": ratio, "error": None}
    base |= {"passed": None if ratio is None or target is None else ratio >= target}
    base |= {"qkhyper_p99_ms": 2.0 if ratio else None, "reference_p99_ms": 20.0 if ratio else None}
    return base | extra


MACHINE = {"cpu_count": 2, "python": "3.11.7", "platform": "Linux-6.1-x86_64", "date": "2025-01-02T03:04:05+00:00"}
SETTINGS = {"duration": 10, "connections": 64, "threads": 2}
ROWS = [
    row("serve-hypercorn", 1.02, 0.95),
    row("serve-uvicorn", 0.81, 0.95),
    row("static-1k-uvicorn", 4.4, 4.0),
    row("gateway-nginx", None, 0.6, error="nginx is not installed and apt-get could not install it\nmore"),
    row("scale-idle", None, None, passed=True, notes="10000 held, 9 KB each", curve=[1, 2]),  # another kind of row
]
REPORT = {"machine": MACHINE, "settings": SETTINGS, "rows": ROWS}


def parse(report: dict[str, Any]) -> ET.Element:
    return ET.fromstring(chart.render(report))


def by_class(root: ET.Element, cls: str) -> list[ET.Element]:
    return [el for el in root.iter() if el.get("class") == cls]


def label(group: ET.Element) -> str:
    [text] = by_class(group, "label")
    return text.text or ""


def rows_by_name(root: ET.Element) -> dict[str, ET.Element]:
    return {g.get("data-row", ""): g for g in by_class(root, "row")}


def test_one_group_per_row_and_one_bar_per_measured_row() -> None:
    root = parse(REPORT)
    assert root.tag == f"{SVG}svg"
    assert list(rows_by_name(root)) == [r["name"] for r in ROWS]
    bars = {g.get("data-row"): [float(b.get("data-ratio", "")) for b in by_class(g, "ratio")] for g in by_class(root, "row")}  # fmt: skip
    assert bars == {"serve-hypercorn": [1.02], "serve-uvicorn": [0.81], "static-1k-uvicorn": [4.4], "gateway-nginx": [], "scale-idle": []}  # fmt: skip
    assert len(by_class(root, "p99-row")) == len(ROWS)


def test_target_ticks_sit_where_the_ratios_say() -> None:
    """On one linear scale from 0, a tick at target t on a bar of ratio r is at x0 + width * t / r."""
    groups = rows_by_name(parse(REPORT))
    per_unit = set()
    for r in ROWS[:3]:
        [bar], [tick] = by_class(groups[r["name"]], "ratio"), by_class(groups[r["name"]], "target")
        x0, width = float(bar.get("x", "")), float(bar.get("width", ""))
        assert float(tick.get("x1", "")) == pytest.approx(x0 + width * r["target"] / r["ratio"], abs=0.3)
        assert tick.get("x1") == tick.get("x2")
        per_unit.add(round(width / r["ratio"]))
    assert len(per_unit) == 1  # one scale for every row
    assert by_class(groups["gateway-nginx"], "target")  # the target shows even when nothing was measured
    assert not by_class(groups["scale-idle"], "target")


def test_pass_and_fail_are_written_not_only_coloured() -> None:
    groups = rows_by_name(parse(REPORT))
    assert label(groups["serve-hypercorn"]) == "1.02 pass (target 0.95)"
    assert label(groups["serve-uvicorn"]) == "0.81 FAIL (target 0.95)"
    [good], [bad] = by_class(groups["serve-hypercorn"], "ratio"), by_class(groups["serve-uvicorn"], "ratio")
    assert good.get("fill") != bad.get("fill")


def test_errored_and_unmeasured_rows_are_labelled() -> None:
    root = parse(REPORT)
    groups = rows_by_name(root)
    assert label(groups["gateway-nginx"]) == "ERROR: nginx is not installed and apt…"
    assert label(groups["scale-idle"]) == "pass, no ratio: 10000 held, 9 KB each"
    p99 = {g.get("data-row"): [t.text for t in g.iter(f"{SVG}text")] for g in by_class(root, "p99-row")}
    assert p99["gateway-nginx"][1:] == ["qkhyper: not measured", "reference: not measured"]
    assert p99["serve-hypercorn"][1:] == ["qkhyper 2.00 ms", "reference 20.0 ms"]


def test_p99_bars_are_on_a_log_scale() -> None:
    rows = [row("a", 1.0, qkhyper_p99_ms=2.0, reference_p99_ms=20.0), row("b", 1.0, qkhyper_p99_ms=200.0)]
    widths = {float(b.get("data-p99", "")): float(b.get("width", "")) for b in by_class(parse({"rows": rows}), "p99")}
    assert set(widths) == {2.0, 20.0, 200.0}
    assert widths[20.0] - widths[2.0] == pytest.approx(widths[200.0] - widths[20.0], abs=0.2)
    assert widths[2.0] / widths[20.0] == pytest.approx(math.log10(2) / math.log10(20), abs=0.01)


def test_title_names_the_date_and_the_machine() -> None:
    texts = [t.text or "" for t in parse(REPORT).iter(f"{SVG}text")]
    assert texts[0] == "qkhyper bench, 2025-01-02T03:04:05+00:00"
    assert texts[1] == "2 CPUs, Python 3.11.7, Linux-6.1-x86_64; wrk 10 s, 64 connections, 2 threads"


def test_text_is_escaped() -> None:
    name = 'a<&b"'
    report = {"machine": {**MACHINE, "platform": "<&>"}, "rows": [row(name, 1.1, error="<boom> & more")]}
    svg = chart.render(report)
    assert "a&lt;&amp;b" in svg and "<boom>" not in svg
    root = ET.fromstring(svg)
    [group] = by_class(root, "row")
    assert group.get("data-row") == name
    assert [t.text for t in group.iter(f"{SVG}text")] == [name, "ERROR: <boom> & more"]
    assert "<&>" in "".join(t.text or "" for t in root.iter(f"{SVG}text"))


def test_a_partial_report_still_draws() -> None:
    root = parse({"rows": [{"name": "x", "ratio": "n/a", "target": None}, "not a row"]})
    assert [label(g) for g in by_class(root, "row")] == ["not measured"]
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert texts[:2] == ["qkhyper bench, date unknown", "? CPUs, Python ?, ?; wrk ? s, ? connections, ? threads"]


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """scripts/bench/__main__.py, importing `chart` from its own folder as `python scripts/bench` does.

    No row runs: wrk's check and the rows fail the test if reached (a real row takes minutes).
    """
    monkeypatch.syspath_prepend(str(BENCH))
    monkeypatch.delitem(sys.modules, "chart", raising=False)
    module = load("qkhyper_bench_main", BENCH / "__main__.py")
    monkeypatch.setattr(module, "ensure_wrk", lambda: pytest.fail("ensure_wrk called"))
    monkeypatch.setattr(module, "run_row", lambda *args: pytest.fail("a row was run"))
    yield module
    for name in ("chart", "qkhyper_bench_main"):
        sys.modules.pop(name, None)


def test_chart_from_writes_both_files(bench: ModuleType, tmp_path: Path) -> None:
    """The command line the README gives: nothing is run, the chart is drawn from the file."""
    (tmp_path / "in.json").write_text(json.dumps(REPORT))
    out = tmp_path / "docs"
    assert bench.main(["--chart-from", str(tmp_path / "in.json"), "--chart-dir", str(out)]) == 0
    assert json.loads((out / "bench-results.json").read_text()) == REPORT
    assert (out / "bench.svg").read_text() == chart.render(REPORT)


def test_chart_after_a_run(bench: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--chart writes the same report as --output, and its chart (the rows are stubbed)."""
    monkeypatch.setattr(bench, "ensure_wrk", lambda: None)
    monkeypatch.setattr(bench, "run_row", lambda r, workdir, args: bench.Result(r.name, r.target, ratio=0.5))
    output, docs = tmp_path / "r.json", tmp_path / "docs"
    assert bench.main(["--only", "serve-h", "--output", str(output), "--chart", "--chart-dir", str(docs)]) == 0
    assert (docs / "bench-results.json").read_text() == output.read_text()
    [bar] = by_class(ET.fromstring((docs / "bench.svg").read_text()), "ratio")
    assert bar.get("data-ratio") == "0.5"


def test_the_chart_goes_to_docs_by_default(bench: ModuleType) -> None:
    assert bench.parse_args(["--chart"]).chart_dir == BENCH.parent.parent / "docs"
