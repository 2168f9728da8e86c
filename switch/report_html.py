"""The HTML face of ``switch report``: one self-contained page, charts as inline SVG.

No scripts, no web fonts, no external files: the page opens from a mail
attachment or an air-gapped host. Charts are drawn here from the
:class:`~switch.report.Report` values — transactions over time (stacked by
outcome), a latency histogram with the percentiles marked, and the
response-code breakdown as a donut. Every piece of text from the journal goes
through :func:`html.escape`; the journal holds masked PANs only, and no PAN
appears in a report at all.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from html import escape

from switch.messages import response_code_meaning
from switch.report import Group, Report, format_amount

__all__ = ["render_html"]

_GREEN, _AMBER, _RED, _GREY, _BLUE = "#2e9e6b", "#e0a526", "#d2504a", "#9aa4b2", "#3b6fd8"
_CODE_COLOURS = ("#3b6fd8", "#e0a526", "#d2504a", "#8e5cc4", "#e07b39", "#1aa5a5", "#c44f8e")

_CSS = """
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2433;
background:#f3f5f9}
header{background:#1d2433;color:#fff;padding:22px 32px}
header h1{margin:0;font-size:20px;font-weight:600}
header p{margin:4px 0 0;color:#b9c2d3}
main{max-width:1180px;margin:0 auto;padding:24px 32px 48px}
.kpis{display:grid;grid-template-columns:repeat(auto-fit,minmax(170px,1fr));gap:14px;margin-bottom:22px}
.kpi{background:#fff;border-radius:10px;padding:14px 18px;box-shadow:0 1px 3px #0000001a}
.kpi b{display:block;font-size:26px;font-weight:650;letter-spacing:-.5px}
.kpi span{color:#5b6577;font-size:12px;text-transform:uppercase;letter-spacing:.6px}
.grid{display:grid;grid-template-columns:1fr 1fr;gap:18px}
.card{background:#fff;border-radius:10px;padding:18px 20px;box-shadow:0 1px 3px #0000001a;
margin-bottom:18px;overflow-x:auto}
.card.wide{grid-column:1/-1}
.card h2{margin:0 0 12px;font-size:15px;font-weight:600}
table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums}
th,td{text-align:left;padding:6px 10px;border-bottom:1px solid #e7eaf0;white-space:nowrap}
th{font-size:12px;color:#5b6577;font-weight:600;text-transform:uppercase;letter-spacing:.4px}
td.n,th.n{text-align:right}
.bar{display:inline-block;height:8px;border-radius:4px;background:#2e9e6b;vertical-align:middle}
.legend{display:flex;flex-wrap:wrap;gap:14px;font-size:12px;color:#5b6577;margin-top:6px}
.legend i{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:5px}
svg text{font:11px system-ui,sans-serif;fill:#5b6577}
footer{color:#8a93a3;font-size:12px;text-align:center;margin-top:10px}
@media (max-width:820px){.grid{grid-template-columns:1fr}}
"""


def _fmt_ms(value: float | None) -> str:
    if value is None:
        return "\u2013"
    return f"{value:.0f} ms" if value >= 100 else f"{value:.1f} ms"


def _pct(value: float | None) -> str:
    return "\u2013" if value is None else f"{value * 100:.1f}%"


def _when(us: int | None, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    if us is None:
        return "\u2013"
    return dt.datetime.fromtimestamp(us / 1e6).astimezone().strftime(fmt)


def _nice_max(value: int) -> int:
    """The top of a y axis with four gridlines at whole, round numbers."""
    step = 1
    for magnitude in (1, 10, 100, 1000, 10_000, 100_000, 1_000_000):
        for base in (1, 1.5, 2, 2.5, 3, 4, 5, 6, 7.5, 8):
            if base * magnitude != int(base * magnitude):
                continue
            step = int(base * magnitude)
            if step * 4 >= value:
                return step * 4
    return step * 4


def _ms_label(value: float) -> str:
    return f"{value / 1000:g}s" if value >= 1000 else f"{value:g}"


# -- charts -----------------------------------------------------------------------


def _timeline_svg(report: Report) -> str:
    buckets = report.timeline
    width, height, left, bottom, top = 1060, 230, 44, 34, 12
    if not buckets:
        return _empty(width, height)
    plot_w, plot_h = width - left - 12, height - bottom - top
    peak = _nice_max(max(b["approved"] + b["declined"] + b["other"] for b in buckets))
    slot = plot_w / len(buckets)
    bar = max(1.0, slot * 0.78)
    parts = [
        f'<svg viewBox="0 0 {width} {height}" width="100%" role="img" '
        'aria-label="Transactions over time">'
    ]
    for i in range(5):
        value = peak * i / 4
        y = top + plot_h - plot_h * i / 4
        parts.append(
            f'<line x1="{left}" x2="{width - 12}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e7eaf0"/>'
        )
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{value:.0f}</text>')
    fmt = "%H:%M:%S" if report.timeline_step_s < 60 else "%H:%M"
    if report.timeline_step_s >= 86400:
        fmt = "%m-%d"
    label_every = max(1, math.ceil(len(buckets) / 10))
    for i, b in enumerate(buckets):
        x = left + i * slot + (slot - bar) / 2
        y = top + plot_h
        total = b["approved"] + b["declined"] + b["other"]
        for key, colour in (("approved", _GREEN), ("declined", _AMBER), ("other", _RED)):
            h = plot_h * b[key] / peak
            if h <= 0:
                continue
            y -= h
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                f'fill="{colour}" rx="1.5"><title>{_when(b["start_us"])}: '
                f"{b[key]} {key} of {total}</title></rect>"
            )
        if i % label_every == 0:
            parts.append(
                f'<text x="{x + bar / 2:.1f}" y="{height - bottom + 16}" '
                f'text-anchor="middle">{escape(_when(b["start_us"], fmt))}</text>'
            )
    parts.append("</svg>")
    step = report.timeline_step_s
    unit = (
        f"{step // 60} min"
        if step >= 60 and step < 3600
        else (f"{step // 3600} h" if step >= 3600 else f"{step} s")
    )
    parts.append(
        _legend(
            [("approved", _GREEN), ("declined", _AMBER), ("rejected / timed out", _RED)],
            f"one bar = {unit}",
        )
    )
    return "".join(parts)


def _histogram_svg(report: Report) -> str:
    buckets = report.latency_histogram
    width, height, left, bottom, top = 520, 230, 40, 40, 12
    if not any(int(b["count"]) for b in buckets):
        return _empty(width, height)
    # Trim empty buckets at both ends so the shape fills the chart.
    counts = [int(b["count"]) for b in buckets]
    first = next(i for i, c in enumerate(counts) if c)
    last = len(counts) - next(i for i, c in enumerate(reversed(counts)) if c)
    shown = buckets[first:last]
    plot_w, plot_h = width - left - 10, height - bottom - top
    peak = _nice_max(max(int(b["count"]) for b in shown))
    slot = plot_w / len(shown)
    parts = [
        f'<svg viewBox="0 0 {width} {height}" width="100%" role="img" '
        'aria-label="Latency histogram">'
    ]
    for i in range(5):
        y = top + plot_h - plot_h * i / 4
        parts.append(
            f'<line x1="{left}" x2="{width - 10}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e7eaf0"/>'
        )
        parts.append(
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{peak * i / 4:.0f}</text>'
        )
    marks = {k: v for k, v in report.latency_ms.items() if k in ("p50", "p95", "p99") and v}
    for i, b in enumerate(shown):
        count = int(b["count"])
        h = plot_h * count / peak
        x = left + i * slot + slot * 0.08
        hi = b["to_ms"]
        lo_label = _ms_label(float(b["from_ms"]))
        label = f">{lo_label}" if math.isinf(float(hi)) else f"≤{_ms_label(float(hi))}"
        in_bucket = [k for k, v in marks.items() if float(b["from_ms"]) <= float(v) < float(hi)]
        colour = _RED if float(b["from_ms"]) >= 1000 else _BLUE
        parts.append(
            f'<rect x="{x:.1f}" y="{top + plot_h - h:.1f}" width="{slot * 0.84:.1f}" '
            f'height="{h:.1f}" fill="{colour}" rx="2"><title>{label} ms: {count}'
            f"</title></rect>"
        )
        parts.append(
            f'<text x="{x + slot * 0.42:.1f}" y="{height - bottom + 16}" '
            f'text-anchor="middle">{escape(label)}</text>'
        )
        if in_bucket:
            parts.append(
                f'<text x="{x + slot * 0.42:.1f}" y="{top + plot_h - h - 5:.1f}" '
                f'text-anchor="middle" style="fill:#1d2433;font-weight:600">'
                f"{'/'.join(in_bucket)}</text>"
            )
    parts.append(
        f'<text x="{left + plot_w / 2:.1f}" y="{height - 6}" text-anchor="middle">'
        "ms (s = seconds), acquirer in → acquirer out</text></svg>"
    )
    return "".join(parts)


def _donut_svg(groups: Sequence[Group]) -> str:
    total = sum(g.count for g in groups)
    size, radius, stroke = 200, 70, 34
    if not total:
        return _empty(size, size)
    parts = [
        f'<svg viewBox="0 0 {size} {size}" width="200" height="200" role="img" '
        'aria-label="Response codes">'
    ]
    angle = -math.pi / 2
    cx = cy = size / 2
    legend = []
    for i, g in enumerate(groups):
        colour = _GREEN if g.name == "00" else _CODE_COLOURS[i % len(_CODE_COLOURS)]
        share = g.count / total
        legend.append(
            (f"{g.name} {response_code_meaning(g.name)} — {g.count} ({share * 100:.0f}%)", colour)
        )
        if share >= 0.9999:
            parts.append(
                f'<circle cx="{cx}" cy="{cy}" r="{radius}" fill="none" '
                f'stroke="{colour}" stroke-width="{stroke}"/>'
            )
            continue
        end = angle + share * 2 * math.pi
        x1, y1 = cx + radius * math.cos(angle), cy + radius * math.sin(angle)
        x2, y2 = cx + radius * math.cos(end), cy + radius * math.sin(end)
        large = 1 if share > 0.5 else 0
        parts.append(
            f'<path d="M{x1:.2f},{y1:.2f} A{radius},{radius} 0 {large} 1 '
            f'{x2:.2f},{y2:.2f}" fill="none" stroke="{colour}" '
            f'stroke-width="{stroke}"><title>{escape(legend[-1][0])}</title></path>'
        )
        angle = end
    approved = next((g.count for g in groups if g.name == "00"), 0)
    parts.append(
        f'<text x="{cx}" y="{cy - 2}" text-anchor="middle" '
        f'style="font-size:24px;font-weight:650;fill:#1d2433">'
        f"{approved / total * 100:.0f}%</text>"
    )
    parts.append(f'<text x="{cx}" y="{cy + 16}" text-anchor="middle">approved</text></svg>')
    items = "".join(f'<div><i style="background:{c}"></i>{escape(t)}</div>' for t, c in legend)
    return (
        f'<div style="display:flex;gap:22px;align-items:center;flex-wrap:wrap">'
        f'{"".join(parts)}<div class="legend" style="flex-direction:column;gap:6px">'
        f"{items}</div></div>"
    )


def _legend(items: Sequence[tuple[str, str]], note: str = "") -> str:
    body = "".join(f'<span><i style="background:{c}"></i>{escape(t)}</span>' for t, c in items)
    if note:
        body += f"<span>{escape(note)}</span>"
    return f'<div class="legend">{body}</div>'


def _empty(width: int, height: int) -> str:
    return (
        f'<svg viewBox="0 0 {width} {height}" width="100%"><text x="{width / 2}" '
        f'y="{height / 2}" text-anchor="middle">no transactions in this period</text></svg>'
    )


# -- tables -----------------------------------------------------------------------


def _group_table(title: str, groups: Sequence[Group], *, codes: bool = False) -> str:
    rows = []
    for g in groups:
        name = escape(g.name)
        if codes:
            name = f"<b>{name}</b> {escape(response_code_meaning(g.name))}"
        amounts = "<br>".join(
            f"{m.count}\u00d7 {escape(format_amount(m.amount, cur))}"
            for cur, m in sorted(g.by_currency.items())
        )
        approved_amounts = "<br>".join(
            escape(format_amount(m.approved_amount, cur))
            for cur, m in sorted(g.by_currency.items())
        )
        rate = g.approval_rate or 0.0
        rows.append(
            f"<tr><td>{name}</td><td class=n>{g.count}</td><td class=n>{g.approved}</td>"
            f"<td class=n>{g.declined}</td><td class=n>{g.rejected + g.timed_out}</td>"
            f'<td><span class="bar" style="width:{rate * 80:.0f}px"></span> {_pct(g.approval_rate)}'
            f"</td><td class=n>{amounts}</td><td class=n>{approved_amounts}</td></tr>"
        )
    return (
        f'<div class="card wide"><h2>{escape(title)}</h2><table><tr><th></th>'
        "<th class=n>requests</th><th class=n>approved</th><th class=n>declined</th>"
        "<th class=n>rejected / timed out</th><th>approval rate</th><th class=n>amount</th>"
        f"<th class=n>approved amount</th></tr>{''.join(rows)}</table></div>"
    )


def render_html(report: Report, *, title: str = "Switch traffic report") -> str:
    lat = report.latency_ms
    kpis = [
        (str(report.requests), "requests"),
        (_pct(report.approval_rate), "approval rate"),
        (_fmt_ms(lat["p50"]), "latency p50"),
        (_fmt_ms(lat["p95"]), "latency p95"),
        (_fmt_ms(lat["p99"]), "latency p99"),
        (f"{report.reversals_done}/{report.reversals}", "reversals done"),
    ]
    period = (
        f"{_when(report.since_us or report.first_us)} → {_when(report.until_us or report.last_us)}"
    )
    generated = dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
    return "".join(
        [
            "<!doctype html><html lang=en><head><meta charset=utf-8>",
            '<meta name=viewport content="width=device-width,initial-scale=1">',
            f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>",
            f"<header><h1>{escape(title)}</h1><p>{escape(period)}</p></header><main>",
            '<div class="kpis">',
            *(
                f'<div class="kpi"><b>{escape(v)}</b><span>{escape(k)}</span></div>'
                for v, k in kpis
            ),
            "</div>",
            '<div class="card"><h2>Transactions over time</h2>',
            _timeline_svg(report),
            "</div>",
            '<div class="grid">',
            '<div class="card"><h2>Latency</h2>',
            _histogram_svg(report),
            "</div>",
            '<div class="card"><h2>Response codes</h2>',
            _donut_svg(report.by_response_code),
            "</div></div>",
            _group_table("By network", report.by_network),
            _group_table("By merchant (F42)", report.by_merchant),
            _group_table("By response code", report.by_response_code, codes=True),
            f"<footer>iso8583-switch · generated {escape(generated)} · amounts in each "
            "currency's own units · no card numbers in this report</footer>",
            "</main></body></html>\n",
        ]
    )
