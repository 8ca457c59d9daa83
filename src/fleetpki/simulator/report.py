"""What a simulation run shows: a summary table and charts, as JSON, SVG and one HTML page.

The charts are drawn as plain SVG here rather than with a plotting library: three line
charts do not justify a dependency of tens of megabytes in a PKI server, and SVG renders in
any browser and on the project's documentation pages.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import html
import json
from collections.abc import Sequence
from pathlib import Path

from fleetpki.simulator.engine import RunResult

_COLOURS = ("#1f6feb", "#d1242f", "#1a7f37", "#9a6700")
_WIDTH, _HEIGHT = 820, 300
_LEFT, _RIGHT, _TOP, _BOTTOM = 64, 16, 36, 42


def summary_rows(results: Sequence[RunResult]) -> list[tuple[str, list[str]]]:
    """(what, one value per run), in the order a reader wants them."""
    def row(label: str, value: object) -> tuple[str, list[str]]:
        return label, [str(value(r)) if callable(value) else str(value) for r in results]

    return [
        row("devices dark at the end (need re-provisioning)", lambda r: r.dark),
        row("devices ever dark", lambda r: r.ever_dark),
        row("devices that spent time without a valid certificate",
            lambda r: r.devices_with_gaps),
        row("device-days without a valid certificate", lambda r: f"{r.gap_device_days:,.0f}"),
        row("longest span without a valid certificate (days)",
            lambda r: f"{r.longest_gap_days:.0f}"),
        row("renewals", lambda r: f"{r.outcomes.get('renewed', 0):,}"),
        row("first enrollments (roll-out / after the start)",
            lambda r: f"{r.rollout_enrollments:,} / "
                      f"{r.outcomes.get('enrolled', 0) - r.fallback_enrollments:,}"),
        row("re-enrollments with the factory identity (fallback)",
            lambda r: f"{r.fallback_enrollments:,}"),
        row("failed sessions (retried)", lambda r: f"{r.outcomes.get('failed', 0):,}"),
        row("enrollments answered other than 200",
            lambda r: f"{r.load.refused_or_failed:,}"),
        row("mean enrollments per minute", lambda r: f"{r.load.mean_per_minute:.3f}"),
        row("peak hour, per minute (ratio to mean)",
            lambda r: f"{r.load.peak_hour_per_minute:.3f} ({r.load.hour_ratio:.2f}x)"),
        row("busiest single minute (ratio to mean)",
            lambda r: f"{r.load.peak_minute} ({r.load.minute_ratio:.1f}x)"),
        row("busiest day (enrollments)", lambda r: r.load.peak_day),
        row("devices with a long offline stretch", lambda r: r.offline_devices),
        row("certificates revoked by the operator", lambda r: r.revoked),
        row("agent sessions / requests", lambda r: f"{r.sessions:,} / {r.requests:,}"),
        row("seconds: wall clock / CPU (processes)",
            lambda r: f"{r.seconds:.0f} / {r.cpu_seconds:.0f} ({r.processes})"),
    ]


def to_json(results: Sequence[RunResult]) -> str:
    def encode(value: object) -> object:
        if isinstance(value, dt.datetime):
            return value.isoformat()
        if isinstance(value, dt.timedelta):
            return value.total_seconds()
        raise TypeError(type(value).__name__)

    documents = []
    for result in results:
        document = dataclasses.asdict(result)
        document["load"]["minute_ratio"] = result.load.minute_ratio
        document["load"]["hour_ratio"] = result.load.hour_ratio
        documents.append(document)
    return json.dumps(documents, default=encode, indent=1)


def line_chart(title: str, series: dict[str, Sequence[float]], y_label: str,
               x_label: str = "simulated day") -> str:
    """An SVG line chart of equally spaced points, one line per series."""
    longest = max((len(v) for v in series.values()), default=0)
    top = max((max(v, default=0) for v in series.values()), default=0) or 1
    top = _nice(top)
    plot_w, plot_h = _WIDTH - _LEFT - _RIGHT, _HEIGHT - _TOP - _BOTTOM

    def x(i: int) -> float:
        return _LEFT + plot_w * i / max(1, longest - 1)

    def y(v: float) -> float:
        return _TOP + plot_h * (1 - v / top)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_WIDTH} {_HEIGHT}" '
             f'width="{_WIDTH}" height="{_HEIGHT}" font-family="sans-serif" font-size="12">',
             f'<rect width="{_WIDTH}" height="{_HEIGHT}" fill="white"/>',
             f'<text x="{_LEFT}" y="20" font-size="14" font-weight="bold">'
             f'{html.escape(title)}</text>']
    for k in range(5):
        value = top * k / 4
        parts.append(f'<line x1="{_LEFT}" x2="{_WIDTH - _RIGHT}" y1="{y(value):.1f}" '
                     f'y2="{y(value):.1f}" stroke="#ddd"/>')
        parts.append(f'<text x="{_LEFT - 6}" y="{y(value) + 4:.1f}" text-anchor="end">'
                     f'{_label(value)}</text>')
    for k in range(0, longest, max(1, longest // 8 // 30 * 30 or 30)):
        parts.append(f'<text x="{x(k):.1f}" y="{_HEIGHT - _BOTTOM + 16}" '
                     f'text-anchor="middle">{k}</text>')
    parts.append(f'<text x="{_LEFT + plot_w / 2}" y="{_HEIGHT - 6}" text-anchor="middle">'
                 f'{html.escape(x_label)}</text>')
    parts.append(f'<text transform="translate(14,{_TOP + plot_h / 2}) rotate(-90)" '
                 f'text-anchor="middle">{html.escape(y_label)}</text>')
    for n, (name, values) in enumerate(series.items()):
        colour = _COLOURS[n % len(_COLOURS)]
        points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(values))
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" '
                     f'points="{points}"/>')
        parts.append(f'<rect x="{_WIDTH - _RIGHT - 150}" y="{_TOP + 4 + 16 * n}" width="12" '
                     f'height="3" fill="{colour}"/>')
        parts.append(f'<text x="{_WIDTH - _RIGHT - 132}" y="{_TOP + 9 + 16 * n}">'
                     f'{html.escape(name)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def charts(results: Sequence[RunResult]) -> dict[str, str]:
    """File name -> SVG."""
    return {
        "enrollments-per-day.svg": line_chart(
            "Server load: certificates issued per day",
            {r.policy: r.enrollments_per_day for r in results}, "enrollments per day"),
        "devices-without-certificate.svg": line_chart(
            "Devices without a valid certificate",
            {r.policy: r.without_certificate_per_day for r in results}, "devices"),
    }


def write_report(directory: Path, results: Sequence[RunResult]) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    drawings = charts(results)
    for name, svg in drawings.items():
        path = directory / name
        path.write_text(svg, encoding="utf-8")
        written.append(path)
    data = directory / "summary.json"
    data.write_text(to_json(results), encoding="utf-8")
    written.append(data)
    page = directory / "report.html"
    page.write_text(_page(results, drawings), encoding="utf-8")
    written.append(page)
    return written


def _page(results: Sequence[RunResult], drawings: dict[str, str]) -> str:
    scenario = results[0].scenario
    head = "".join(f"<th>{html.escape(r.policy)}</th>" for r in results)
    rows = "".join(f"<tr><td>{html.escape(label)}</td>"
                   + "".join(f"<td>{html.escape(v)}</td>" for v in values) + "</tr>"
                   for label, values in summary_rows(results))
    outages = ", ".join(f"day {o.start.days} for {o.length.days} days"
                        for o in scenario.outages) or "none"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>fleetpki fleet simulation</title>
<style>body{{font-family:sans-serif;max-width:880px;margin:2em auto}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}
td:first-child{{text-align:left}}</style></head><body>
<h1>Fleet simulation</h1>
<p>{scenario.devices:,} devices, {scenario.duration.days} simulated days,
{scenario.lifetime.days}-day certificates, one {scenario.window.seconds}-second window a day,
{scenario.missed_windows:.0%} of windows missed, {scenario.offline_share:.0%} of devices offline
once for {scenario.offline_days[0]}-{scenario.offline_days[1]} days, CA outages: {outages},
renewal grace {scenario.grace_after_expiry.days} days, seed {scenario.seed}.</p>
<table><tr><th></th>{head}</tr>{rows}</table>
{"".join(drawings.values())}
</body></html>
"""


def _nice(value: float) -> float:
    """A round axis maximum at or above `value`."""
    magnitude = 10.0 ** (len(str(int(value))) - 1)
    for step in (1.0, 2.0, 2.5, 5.0, 10.0):
        if value <= step * magnitude:
            return step * magnitude
    return value


def _label(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 or value == int(value) else f"{value:.1f}"
