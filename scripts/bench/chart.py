"""`python scripts/bench --chart`: one report as one picture, docs/bench.svg, for the README.

The SVG is written by hand (SVG 1.1, no scripts, no external fonts), not with a
plotting library: two bar panels take fewer lines than a dependency costs, and the
bench needs nothing new. Any row is drawn: one without a numeric ratio (it errored,
or it measures something else) gets a text label instead of a bar, and keys the
chart does not know are ignored. Every bar carries its number as text too, and
pass/fail is written out, so nothing depends on telling the colours apart.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

WIDTH, BAR_X, BAR_W = 800, 170, 340  # names left of BAR_X, labels right of the bars
TEXT_X = BAR_X + BAR_W + 10
ROW_H, P99_ROW_H = 22, 28
INK, GRID, PASS, FAIL, NEUTRAL, QK, REF = "#222", "#ddd", "#2e7d32", "#c62828", "#888", "#1f5fa8", "#e08a1e"


def _attr(value: object) -> str:
    return escape(str(value), {'"': "&quot;"})


def _num(value: object) -> float | None:
    """A finite number from the report, else None (missing, null, text, a bool, nan)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _text(x: float, y: float, content: str, fill: str = INK, extra: str = "") -> str:
    return f'<text x="{x:.1f}" y="{y:.1f}" fill="{fill}"{extra}>{escape(content)}</text>'


def _line(x1: float, y1: float, x2: float, y2: float, stroke: str, extra: str = "") -> str:
    return f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{stroke}"{extra}/>'


def _rect(x: float, y: float, w: float, h: float, fill: str, extra: str = "") -> str:
    return f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" fill="{fill}"{extra}/>'


def _clip(text: str, width: int = 38) -> str:
    """What fits right of the bars (about 38 characters of 12 px sans-serif)."""
    return text if len(text) <= width else text[: width - 1] + "…"


def _name(row: dict[str, Any]) -> str:
    metric = row.get("metric")
    return f"{row.get('name', '?')}" + (f" ({metric})" if metric not in (None, "rps") else "")


def _title(report: dict[str, Any]) -> list[str]:
    """Which run this is: the date, the machine and wrk's settings (numbers compare only on one machine)."""
    m, s = report.get("machine") or {}, report.get("settings") or {}
    box = f"{m.get('cpu_count', '?')} CPUs, Python {m.get('python', '?')}, {m.get('platform', '?')}"
    wrk = f"wrk {s.get('duration', '?')} s, {s.get('connections', '?')} connections, {s.get('threads', '?')} threads"
    return [
        _text(10, 22, f"qkhyper bench, {m.get('date', 'date unknown')}", extra=' font-size="15" font-weight="bold"'),
        _text(10, 40, f"{box}; {wrk}", fill="#555"),
    ]


def _ratio_panel(rows: list[dict[str, Any]], top: float) -> tuple[list[str], float]:
    """Ratio bars (qkhyper over reference) on one linear scale from 0, each row's target a black tick."""
    marks = [v for r in rows for v in (_num(r.get("ratio")), _num(r.get("target"))) if v is not None]
    highest = max([1.0, *marks]) * 1.05
    step = 0.25 if highest <= 1.5 else 0.5 if highest <= 3 else 1.0
    scale = math.ceil(highest / step) * step

    def x(v: float) -> float:
        return BAR_X + BAR_W * max(v, 0.0) / scale

    out = [_text(10, top, "qkhyper / reference per row (bar), against the row's target (black tick)")]
    top += 10
    bottom = top + ROW_H * len(rows)
    for i in range(round(scale / step) + 1):
        v = i * step
        out += [_line(x(v), top, x(v), bottom, GRID), _text(x(v), bottom + 14, f"{v:g}", extra=' text-anchor="middle"')]
    out += [_line(x(1.0), top, x(1.0), bottom + 2, "#555", ' stroke-dasharray="4 3"')]
    out += [_text(BAR_X, bottom + 30, "ratio (dashed: 1.0, as fast as the reference)", fill="#555")]
    for i, row in enumerate(rows):
        y = top + i * ROW_H
        ratio, target, error = _num(row.get("ratio")), _num(row.get("target")), row.get("error")
        passed = row.get("passed") if isinstance(row.get("passed"), bool) else None
        if passed is None and ratio is not None and target is not None:
            passed = ratio >= target
        colour = NEUTRAL if passed is None else PASS if passed else FAIL
        parts = [_text(10, y + 15, _name(row))]
        if ratio is not None:
            data = f' class="ratio" data-ratio="{ratio:g}"'
            parts.append(_rect(BAR_X, y + 4, x(ratio) - BAR_X, ROW_H - 8, colour, data))
        if target is not None:
            tick = f' stroke-width="2.5" class="target" data-target="{target:g}"'
            parts.append(_line(x(target), y + 1, x(target), y + ROW_H - 1, "#000", tick))
        verdict = "" if passed is None else "pass" if passed else "FAIL"
        if error:
            label, fill = _clip("ERROR: " + (str(error).strip().splitlines() or ["?"])[0]), FAIL
        elif ratio is None:  # never measured, or a row of another kind (scale rows pass on absolute limits)
            notes = f": {row['notes']}" if row.get("notes") else ""
            label, fill = _clip((f"{verdict}, no ratio" if verdict else "not measured") + notes), colour
        else:
            label, fill = f"{ratio:.2f} {verdict}".strip() + ("" if target is None else f" (target {target:g})"), colour
        parts.append(_text(TEXT_X, y + 15, label, fill=fill, extra=' class="label"'))
        out.append(f'<g class="row" data-row="{_attr(row.get("name", "?"))}">{"".join(parts)}</g>')
    return out, bottom + 40


def _ms(v: float) -> str:
    return f"{v:.2f} ms" if v < 10 else f"{v:.1f} ms" if v < 100 else f"{v:.0f} ms"


def _p99_panel(rows: list[dict[str, Any]], top: float) -> tuple[list[str], float]:
    """p99 latency, qkhyper and reference side by side per row, on a log scale.

    Log, not linear and clipped: the rows' p99s span orders of magnitude (a 1 KB hello
    takes about a millisecond, a 50 MB body hundreds), so a linear axis would flatten the
    small rows to nothing; on a log axis every bar shows and equal ratios look equal.
    The value is written beside each bar as well, so the axis need not be read.
    """
    keys = ("qkhyper", QK, 0.0), ("reference", REF, 11.0)
    values = [v for r in rows for k, _, _ in keys if (v := _num(r.get(f"{k}_p99_ms"))) is not None and v > 0]
    lo = math.floor(math.log10(min(values))) if values else 0
    hi = max(lo + 1, math.ceil(math.log10(max(values)))) if values else 1

    def x(v: float) -> float:
        return BAR_X + BAR_W * (math.log10(v) - lo) / (hi - lo)

    out = [_text(10, top, "p99 latency, ms (log scale)")]
    for i, (side, colour, _) in enumerate(keys):
        out += [_rect(TEXT_X + 100 * i, top - 9, 10, 10, colour), _text(TEXT_X + 14 + 100 * i, top, side)]
    top += 10
    bottom = top + P99_ROW_H * len(rows)
    for e in range(lo, hi + 1):
        out += [_line(x(10.0**e), top, x(10.0**e), bottom, GRID)]
        out += [_text(x(10.0**e), bottom + 14, f"{10.0**e:g}", extra=' text-anchor="middle"')]
    for i, row in enumerate(rows):
        y = top + i * P99_ROW_H
        parts = [_text(10, y + 16, _name(row))]
        for side, colour, dy in keys:
            v = _num(row.get(f"{side}_p99_ms"))
            if v is not None and v > 0:
                data = f' class="p99" data-side="{side}" data-p99="{v:g}"'
                parts.append(_rect(BAR_X, y + 3 + dy, max(x(v) - BAR_X, 1.0), 9, colour, data))
            label = f"{side} {_ms(v)}" if v is not None and v > 0 else f"{side}: not measured"
            parts.append(_text(TEXT_X, y + 11 + dy, label, fill=INK if v else NEUTRAL, extra=' font-size="10"'))
        out.append(f'<g class="p99-row" data-row="{_attr(row.get("name", "?"))}">{"".join(parts)}</g>')
    return out, bottom + 24


def render(report: dict[str, Any]) -> str:
    """The SVG text for a report as `python scripts/bench` writes it (machine, settings, rows)."""
    rows = [r for r in report.get("rows") or [] if isinstance(r, dict)]
    ratio, below = _ratio_panel(rows, 70)
    p99, height = _p99_panel(rows, below + 20)
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="{WIDTH}" height="{height:.0f}"'
        f' viewBox="0 0 {WIDTH} {height:.0f}" font-family="sans-serif" font-size="12">'
    )
    # A white ground: GitHub's dark theme would otherwise put the dark text on black.
    body = [_rect(0, 0, WIDTH, height, "#fff"), *_title(report), *ratio, *p99]
    return "\n".join([head, *body, "</svg>"]) + "\n"


def write_chart(report: dict[str, Any], svg_path: Path, json_path: Path) -> None:
    """The chart and the report it was drawn from, side by side (the README links both)."""
    svg_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    svg_path.write_text(render(report), encoding="utf-8")
    json_path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
