"""The reconciliation report: what ``switch recon`` found for one business day, and its renderings.

Pure: built from records (:func:`build`), then rendered as a summary table,
a CSV or JSON of the breaks, or one JSON document. Everything is sorted, so
the same inputs render to the same bytes.

A day is *clean* when no network has a break, both sides' totals agree for
every currency, and every cutover exchange that was made is in balance.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from switch.cutover import Totals, differences, issuer_totals, switch_totals
from switch.recon import (
    BREAK_KINDS,
    Break,
    IssuerRecord,
    ReconResult,
    SwitchRecord,
    reconcile,
)

__all__ = [
    "BREAK_COLUMNS",
    "CutoverOutcome",
    "NetworkReport",
    "Report",
    "as_dict",
    "build",
    "render_breaks_csv",
    "render_breaks_json",
    "render_json",
    "render_table",
]

BREAK_COLUMNS = tuple(f.name for f in fields(Break))


@dataclass(frozen=True, slots=True, kw_only=True)
class CutoverOutcome:
    """One 0500/0510 exchange: did the issuer's totals agree with ours?"""

    currency: str
    in_balance: bool
    differences: tuple[str, ...] = ()
    issuer: Totals | None = None
    error: str | None = None


@dataclass(slots=True, kw_only=True)
class NetworkReport:
    network: str
    result: ReconResult
    switch_totals: dict[str, Totals]
    issuer_totals: dict[str, Totals]
    cutover: dict[str, CutoverOutcome] = field(default_factory=dict)

    @property
    def currencies(self) -> list[str]:
        return sorted(set(self.switch_totals) | set(self.issuer_totals))

    def totals_agree(self, currency: str) -> bool:
        ours = self.switch_totals.get(currency, Totals())
        return not differences(ours, self.issuer_totals.get(currency, Totals()))

    @property
    def clean(self) -> bool:
        return (
            self.result.clean
            and all(self.totals_agree(c) for c in self.currencies)
            and all(c.in_balance for c in self.cutover.values())
        )


@dataclass(slots=True, kw_only=True)
class Report:
    day: dt.date
    networks: dict[str, NetworkReport]
    fixed: list[dict[str, Any]] = field(default_factory=list)

    @property
    def breaks(self) -> list[Break]:
        return [b for name in sorted(self.networks) for b in self.networks[name].result.breaks]

    @property
    def clean(self) -> bool:
        return all(n.clean for n in self.networks.values())

    @property
    def errors(self) -> list[str]:
        """Cutover exchanges that could not be made (unreachable host, bad answer)."""
        return [
            f"{name} {c}: {out.error}"
            for name, net in sorted(self.networks.items())
            for c, out in sorted(net.cutover.items())
            if out.error
        ]

    @property
    def exit_code(self) -> int:
        """0 clean, 1 breaks or totals that disagree, 2 a cutover that could not be made."""
        return 2 if self.errors else 0 if self.clean else 1


def build(
    day: dt.date,
    sides: Mapping[str, tuple[Iterable[SwitchRecord], Iterable[IssuerRecord]]],
    *,
    window: tuple[int, int] | None = None,
) -> Report:
    """Reconcile each network's (journal records, settlement records) for ``day``."""
    networks = {}
    for name in sorted(sides):
        switch, issuer = list(sides[name][0]), list(sides[name][1])
        result = reconcile(name, switch, issuer, window=window)
        # Totals over the day's own records (the margin's are the neighbours').
        in_day = [s for s in switch if window is None or window[0] <= s.created_us < window[1]]
        networks[name] = NetworkReport(
            network=name,
            result=result,
            switch_totals=switch_totals(in_day),
            issuer_totals=issuer_totals(issuer),
        )
    return Report(day=day, networks=networks)


# -- renderings ------------------------------------------------------------------


def _totals_line(totals: Totals) -> str:
    reversals = totals.debit_reversals + totals.credit_reversals
    reversed_amount = totals.debit_reversals_amount + totals.credit_reversals_amount
    return (
        f"{totals.debits:>6} {totals.debits_amount:>14} "
        f"{totals.credits:>6} {totals.credits_amount:>12} "
        f"{reversals:>6} {reversed_amount:>12} {totals.net:>14}"
    )


def render_table(report: Report) -> str:
    """The operator's summary: counts per class, breaks, totals, cutover."""
    lines = [f"reconciliation of business day {report.day.isoformat()} (UTC)", ""]
    lines.append(f"{'network':<12}{'txns':>7}{'matched':>9}{'no money':>10}{'breaks':>8}")
    for name, net in sorted(report.networks.items()):
        counts = net.result.counts
        lines.append(
            f"{name:<12}{sum(counts.values()):>7}{counts['matched']:>9}"
            f"{counts['no_money']:>10}{len(net.result.breaks):>8}"
        )
    breaks = report.breaks
    if breaks:
        lines += ["", "breaks (amounts in minor units):"]
        by_kind = {k: sum(1 for b in breaks if b.kind == k) for k in BREAK_KINDS}
        lines.append("  " + ", ".join(f"{k} {n}" for k, n in by_kind.items() if n))
        for b in breaks:
            lines.append(
                f"  {b.kind:<24}{b.network:<12}rrn {b.rrn:<12} stan {b.stan:<6} "
                f"{b.pan_masked or '-':<19} {b.currency}"
            )
            lines.append(
                f"      switch: {_amount(b.switch_amount)} {b.switch_outcome}; "
                f"issuer: {_amount(b.issuer_amount)} {b.issuer_outcome}"
            )
            lines.append(f"      action: {b.action}")
    lines += [
        "",
        "totals (minor units)        debits         amount credits       amount"
        "   revs     rev amount            net",
    ]
    for name, net in sorted(report.networks.items()):
        for currency in net.currencies:
            for side, totals in (("switch", net.switch_totals), ("issuer", net.issuer_totals)):
                lines.append(
                    f"{name:<12}{currency:<4} {side:<8}"
                    f"{_totals_line(totals.get(currency, Totals()))}"
                )
            agree = "agree" if net.totals_agree(currency) else "DISAGREE"
            cut = net.cutover.get(currency)
            if cut is not None:
                state = "in balance" if cut.in_balance else "OUT OF BALANCE"
                agree += f"; cutover 0500/0510: {state}"
                if cut.error:
                    agree += f" ({cut.error})"
                elif cut.differences:
                    agree += " (" + "; ".join(cut.differences) + ")"
            lines.append(f"{'':<16} {agree}")
    for fixed in report.fixed:
        lines.append(
            f"fix: {fixed['kind']} rrn {fixed['rrn']} stan {fixed['stan']}: {fixed['note']}"
        )
    if report.clean:
        verdict = "clean"
    elif breaks:
        verdict = f"{len(breaks)} break(s) found"
    else:
        verdict = "no breaks, but the totals disagree"
    lines += ["", verdict]
    return "\n".join(lines)


def _amount(value: int | None) -> str:
    return "-" if value is None else str(value)


def render_breaks_csv(breaks: Iterable[Break]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(BREAK_COLUMNS)
    for b in breaks:
        writer.writerow(["" if v is None else v for v in (getattr(b, c) for c in BREAK_COLUMNS)])
    return buf.getvalue()


def render_breaks_json(breaks: Iterable[Break]) -> str:
    return json.dumps([b.as_dict() for b in breaks], indent=2) + "\n"


def as_dict(report: Report) -> dict[str, Any]:
    networks = {}
    for name, net in sorted(report.networks.items()):
        networks[name] = {
            "counts": net.result.counts,
            "clean": net.clean,
            "totals": {
                c: {
                    "switch": net.switch_totals.get(c, Totals()).as_dict(),
                    "issuer": net.issuer_totals.get(c, Totals()).as_dict(),
                    "agree": net.totals_agree(c),
                }
                for c in net.currencies
            },
            "cutover": {
                c: {
                    "in_balance": out.in_balance,
                    "differences": list(out.differences),
                    "error": out.error,
                }
                for c, out in sorted(net.cutover.items())
            },
        }
    return {
        "date": report.day.isoformat(),
        "clean": report.clean,
        "networks": networks,
        "breaks": [b.as_dict() for b in report.breaks],
        "fixed": report.fixed,
    }


def render_json(report: Report) -> str:
    return json.dumps(as_dict(report), indent=2) + "\n"
