"""Traffic reports from the journal (``switch report``): what went through, and how fast.

:func:`gather` reads the ``transactions`` table for a period and returns a
:class:`Report` — plain values, no SQL or trio past that point. Requests
(authorizations, financial requests, refunds) are counted by network (the
``link`` column; ``(switch)`` for what the switch decided alone: Luhn, no
route, format errors), merchant (F42) and response code, with amounts per
currency; reversals are counted apart so they do not dilute the approval
rate. Latencies are the switch's own (acquirer-in to acquirer-out).

Renderers: :func:`render_table`, :func:`render_csv`, :func:`render_json`
here; the self-contained HTML page lives in ``switch.report_html``.
Amounts are minor units in the data and shown with the currency's exponent.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from switch.journal import Journal
from switch.messages import response_code_meaning

__all__ = [
    "Group",
    "Report",
    "format_amount",
    "gather",
    "parse_time",
    "percentile",
    "render_csv",
    "render_json",
    "render_table",
]

SWITCH_DECIDED = "(switch)"
# ISO 4217 numeric -> (alpha code, minor-unit exponent) for what we display.
CURRENCIES: Mapping[str, tuple[str, int]] = {
    "933": ("BYN", 2),
    "840": ("USD", 2),
    "978": ("EUR", 2),
    "643": ("RUB", 2),
    "826": ("GBP", 2),
    "985": ("PLN", 2),
    "156": ("CNY", 2),
    "392": ("JPY", 0),
    "410": ("KRW", 0),
    "048": ("BHD", 3),
    "414": ("KWD", 3),
}
_TIMELINE_STEPS = (1, 5, 10, 30, 60, 300, 900, 3600, 6 * 3600, 86400)
LATENCY_EDGES_MS = (0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)
_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


# -- values -----------------------------------------------------------------------


def parse_time(text: str, now: dt.datetime) -> int:
    """A point in time as epoch µs: ISO date/time (naive = local), ``15m``/``2h``/``7d``
    ago, ``today``, ``yesterday`` or ``now``. Raises ValueError with a hint."""
    value = text.strip().lower()
    local_now = now.astimezone()
    hint = (
        f"{text!r} is not a time: use ISO (2024-05-01 or 2024-05-01T10:00), "
        "15m / 2h / 7d ago, today, yesterday or now"
    )
    if value == "now":
        moment = local_now
    elif value in ("today", "yesterday"):
        midnight = local_now.replace(hour=0, minute=0, second=0, microsecond=0)
        moment = midnight - dt.timedelta(days=1 if value == "yesterday" else 0)
    elif m := _RELATIVE.match(value):
        try:
            moment = local_now - dt.timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2)])
        except OverflowError:  # further back than year 1
            raise ValueError(f"{hint} (at most 9,999 years ago)") from None
    else:
        try:
            moment = dt.datetime.fromisoformat(text.strip())
        except ValueError:
            raise ValueError(hint) from None
        if moment.tzinfo is None:
            moment = moment.astimezone()
    return int(moment.timestamp() * 1_000_000)


def percentile(values: Sequence[float], pct: float) -> float | None:
    """Nearest-rank percentile (``pct`` in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def currency_code(currency: str | None) -> str:
    if not currency:
        return "?"
    return CURRENCIES.get(currency, (currency, 2))[0]


def format_amount(minor: int, currency: str | None) -> str:
    """``123456`` in 933 -> ``1,234.56 BYN``."""
    code, exponent = CURRENCIES.get(currency or "", (currency or "?", 2))
    major = minor / 10**exponent
    return f"{major:,.{exponent}f} {code}"


# -- the report -------------------------------------------------------------------


@dataclass(slots=True)
class Money:
    count: int = 0
    amount: int = 0
    approved_count: int = 0
    approved_amount: int = 0


@dataclass(slots=True)
class Group:
    """One row of a breakdown: a network, a merchant or a response code."""

    name: str
    count: int = 0
    approved: int = 0
    declined: int = 0
    rejected: int = 0
    timed_out: int = 0
    by_currency: dict[str, Money] = field(default_factory=dict)

    @property
    def approval_rate(self) -> float | None:
        return self.approved / self.count if self.count else None

    def add(self, row: Mapping[str, Any]) -> None:
        self.count += 1
        approved = row.get("response_code") == "00"
        state = row.get("state") or ""
        if approved:
            self.approved += 1
        elif state == "rejected":
            self.rejected += 1
        elif state.startswith("timed_out"):
            self.timed_out += 1
        else:
            self.declined += 1
        money = self.by_currency.setdefault(row.get("currency") or "?", Money())
        amount = int(row.get("amount") or 0)
        money.count += 1
        money.amount += amount
        if approved:
            money.approved_count += 1
            money.approved_amount += amount


@dataclass(slots=True, kw_only=True)
class Report:
    since_us: int | None
    until_us: int | None
    first_us: int | None
    last_us: int | None
    requests: int
    approved: int
    reversals: int
    reversals_done: int
    latency_ms: dict[str, float | None]
    by_network: list[Group]
    by_merchant: list[Group]
    by_response_code: list[Group]
    by_state: dict[str, int]
    timeline_step_s: int
    timeline: list[dict[str, int]]
    latency_histogram: list[dict[str, float | int]]

    @property
    def approval_rate(self) -> float | None:
        return self.approved / self.requests if self.requests else None

    def to_dict(self) -> dict[str, Any]:
        def group(g: Group) -> dict[str, Any]:
            out = {k: v for k, v in asdict(g).items() if k != "by_currency"}
            out["approval_rate"] = g.approval_rate
            out["by_currency"] = {
                cur: {**asdict(m), "currency_code": currency_code(cur)}
                for cur, m in g.by_currency.items()
            }
            return out

        return {
            "period": {
                "since": _iso(self.since_us),
                "until": _iso(self.until_us),
                "first": _iso(self.first_us),
                "last": _iso(self.last_us),
            },
            "requests": self.requests,
            "approved": self.approved,
            "approval_rate": self.approval_rate,
            "reversals": self.reversals,
            "reversals_done": self.reversals_done,
            "latency_ms": self.latency_ms,
            "by_state": self.by_state,
            "by_network": [group(g) for g in self.by_network],
            "by_merchant": [group(g) for g in self.by_merchant],
            "by_response_code": [
                {**group(g), "meaning": response_code_meaning(g.name)}
                for g in self.by_response_code
            ],
            "timeline_step_s": self.timeline_step_s,
            "timeline": self.timeline,
            "latency_histogram": self.latency_histogram,
        }


def _iso(us: int | None) -> str | None:
    if us is None:
        return None
    return dt.datetime.fromtimestamp(us / 1e6, dt.UTC).isoformat(timespec="seconds")


def _breakdown(rows: Iterable[Mapping[str, Any]], key: str, default: str) -> list[Group]:
    groups: dict[str, Group] = {}
    for row in rows:
        name = row.get(key) or default
        groups.setdefault(name, Group(name)).add(row)
    return sorted(groups.values(), key=lambda g: (-g.count, g.name))


def _timeline(
    rows: Sequence[Mapping[str, Any]], first: int, last: int
) -> tuple[int, list[dict[str, int]]]:
    span_s = max(1.0, (last - first) / 1e6)
    step = next((s for s in _TIMELINE_STEPS if span_s / s <= 60), _TIMELINE_STEPS[-1])
    start = first // (step * 1_000_000) * step * 1_000_000
    buckets = int((last - start) // (step * 1_000_000)) + 1
    timeline = [
        {"start_us": start + i * step * 1_000_000, "approved": 0, "declined": 0, "other": 0}
        for i in range(buckets)
    ]
    for row in rows:
        bucket = timeline[int((row["created_us"] - start) // (step * 1_000_000))]
        if row.get("response_code") == "00":
            bucket["approved"] += 1
        elif row.get("state") == "declined":
            bucket["declined"] += 1
        else:
            bucket["other"] += 1
    return step, timeline


def _histogram(latencies_ms: Sequence[float]) -> list[dict[str, float | int]]:
    edges = [*LATENCY_EDGES_MS, math.inf]
    counts = [0] * (len(edges) - 1)
    for value in latencies_ms:
        for i in range(len(counts)):
            if value < edges[i + 1]:
                counts[i] += 1
                break
    return [
        {"from_ms": edges[i], "to_ms": edges[i + 1], "count": counts[i]} for i in range(len(counts))
    ]


def build(rows: Sequence[Mapping[str, Any]], since_us: int | None, until_us: int | None) -> Report:
    """A report from ``transactions`` rows (pure)."""
    requests = [r for r in rows if not (r.get("mti") or "").startswith(("04", "08"))]
    reversals = [r for r in rows if (r.get("mti") or "").startswith("04")]
    latencies = [r["latency_us"] / 1000 for r in requests if r.get("latency_us") is not None]
    by_state: dict[str, int] = {}
    for r in requests:
        by_state[r.get("state") or "?"] = by_state.get(r.get("state") or "?", 0) + 1
    times = [r["created_us"] for r in requests]
    step, timeline = _timeline(requests, min(times), max(times)) if times else (60, [])
    return Report(
        since_us=since_us,
        until_us=until_us,
        first_us=min(times) if times else None,
        last_us=max(times) if times else None,
        requests=len(requests),
        approved=sum(1 for r in requests if r.get("response_code") == "00"),
        reversals=len(reversals),
        reversals_done=sum(
            1 for r in reversals if r.get("state") in ("reversed", "partially_reversed")
        ),
        latency_ms={
            "p50": percentile(latencies, 50),
            "p95": percentile(latencies, 95),
            "p99": percentile(latencies, 99),
            "max": max(latencies) if latencies else None,
        },
        by_network=_breakdown(requests, "link", SWITCH_DECIDED),
        by_merchant=_breakdown(requests, "merchant", "(none)"),
        by_response_code=_breakdown(requests, "response_code", "(none)"),
        by_state=dict(sorted(by_state.items(), key=lambda kv: -kv[1])),
        timeline_step_s=step,
        timeline=timeline,
        latency_histogram=_histogram(latencies),
    )


def gather(journal: Journal, *, since_us: int | None = None, until_us: int | None = None) -> Report:
    """Read the period's transactions from the journal and build the report."""
    clauses, args = [], []
    if since_us is not None:
        clauses.append("created_us >= ?")
        args.append(since_us)
    if until_us is not None:
        clauses.append("created_us < ?")
        args.append(until_us)
    where = f" where {' and '.join(clauses)}" if clauses else ""
    cur = journal.db.conn.execute(
        "select created_us, link, mti, merchant, amount, currency, response_code, state,"
        f" latency_us from transactions{where} order by created_us",
        args,
    )
    names = [d[0] for d in cur.description]
    rows = [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
    return build(rows, since_us, until_us)


# -- renderers --------------------------------------------------------------------


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def _amounts(group: Group) -> str:
    return "; ".join(
        f"{m.count} x {format_amount(m.amount, cur)}"
        f" (approved {format_amount(m.approved_amount, cur)})"
        for cur, m in sorted(group.by_currency.items())
    )


def _local(us: int | None) -> str:
    if us is None:
        return "-"
    return dt.datetime.fromtimestamp(us / 1e6).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def render_table(report: Report) -> str:
    out = [
        f"Period      {_local(report.since_us or report.first_us)} → "
        f"{_local(report.until_us or report.last_us)}",
        f"Requests    {report.requests}   approved {report.approved} "
        f"({_pct(report.approval_rate)})   reversals {report.reversals} "
        f"({report.reversals_done} done)",
        "Latency     p50 {}   p95 {}   p99 {}   max {}".format(
            *(_ms(report.latency_ms[k]) for k in ("p50", "p95", "p99", "max"))
        ),
    ]
    sections = (
        ("Network", report.by_network),
        ("Merchant (F42)", report.by_merchant),
        ("Response code", report.by_response_code),
    )
    for title, groups in sections:
        width = max([len(title), *(len(_label(title, g)) for g in groups)])
        out += [
            "",
            f"{title:<{width}}  {'count':>6} {'approved':>8} {'rate':>7}  amounts",
        ]
        for g in groups:
            out.append(
                f"{_label(title, g):<{width}}  {g.count:>6} {g.approved:>8} "
                f"{_pct(g.approval_rate):>7}  {_amounts(g)}"
            )
    if report.by_state:
        out += ["", "States      " + "  ".join(f"{k} {v}" for k, v in report.by_state.items())]
    return "\n".join(out)


def _label(title: str, group: Group) -> str:
    if title == "Response code" and group.name != "(none)":
        return f"{group.name} {response_code_meaning(group.name)}"
    return group.name


CSV_COLUMNS = (
    "section",
    "name",
    "currency",
    "count",
    "approved",
    "amount",
    "approved_amount",
    "value",
)


def render_csv(report: Report) -> str:
    """Tidy rows: one per (section, name, currency), plus summary and latency rows."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    writer.writerow(["summary", "requests", "", report.requests, report.approved, "", "", ""])
    writer.writerow(["summary", "approval_rate", "", "", "", "", "", report.approval_rate])
    writer.writerow(
        ["summary", "reversals", "", report.reversals, report.reversals_done, "", "", ""]
    )
    for key, value in report.latency_ms.items():
        writer.writerow(["latency_ms", key, "", "", "", "", "", value])
    for section, groups in (
        ("network", report.by_network),
        ("merchant", report.by_merchant),
        ("response_code", report.by_response_code),
    ):
        for g in groups:
            for cur, m in sorted(g.by_currency.items()):
                writer.writerow(
                    [
                        section,
                        g.name,
                        cur,
                        m.count,
                        m.approved_count,
                        m.amount,
                        m.approved_amount,
                        "",
                    ]
                )
    return buf.getvalue()


def render_json(report: Report) -> str:
    return json.dumps(report.to_dict(), indent=2)
