"""Reports built from a journal filled with real Leg rows through Journal.write_batch."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from switch.journal import Journal, Leg
from switch.report import (
    format_amount,
    gather,
    parse_time,
    percentile,
    render_csv,
    render_json,
    render_table,
)
from switch.report_html import render_html

T0 = 1_714_557_600_000_000  # 2024-05-01T10:00:00Z in µs


def _txn(
    journal: Journal,
    txn_id: str,
    *,
    at_s: float,
    link: str | None,
    rc: str,
    state: str,
    amount: int = 1000,
    currency: str = "933",
    merchant: str = "SHOP00000000001",
    latency_ms: float = 12.0,
    mti: str = "0100",
    original: str | None = None,
) -> None:
    t = T0 + int(at_s * 1_000_000)
    common = {
        "txn_id": txn_id,
        "mti": mti,
        "terminal": "TERM0001",
        "merchant": merchant,
        "pan_masked": "411111******1111",
        "pan_token": "ab" * 16,
        "amount": amount,
        "currency": currency,
        "processing_code": "000000",
        "stan": txn_id[-6:].rjust(6, "0"),
        "original_txn": original,
    }
    legs = [Leg(leg="acquirer_in", time_us=t, link="gateway", **common)]
    if link is not None:
        legs += [
            Leg(leg="issuer_out", time_us=t + 100, link=link, **common),
            Leg(leg="issuer_in", time_us=t + 900, link=link, response_code=rc, **common),
        ]
    legs.append(
        Leg(
            leg="acquirer_out",
            time_us=t + int(latency_ms * 1000),
            link="gateway",
            response_code=rc,
            auth_code="A1B2C3" if rc == "00" else None,
            latency_us=int(latency_ms * 1000),
            state=state,
            **common,
        )
    )
    journal.write_batch(legs)


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    j = Journal.open(tmp_path / "journal.db")
    _txn(j, "t00001", at_s=0, link="visa", rc="00", state="approved", latency_ms=8)
    _txn(j, "t00002", at_s=1, link="visa", rc="51", state="declined", latency_ms=11)
    _txn(
        j,
        "t00003",
        at_s=2,
        link="mastercard",
        rc="00",
        state="approved",
        amount=2550,
        currency="840",
        merchant="SHOP00000000002",
        latency_ms=30,
    )
    _txn(j, "t00004", at_s=3, link=None, rc="15", state="rejected", latency_ms=0.4)
    _txn(j, "t00005", at_s=65, link="belkart", rc="91", state="timed_out", latency_ms=5001)
    _txn(
        j, "t00006", at_s=70, link="visa", rc="00", state="reversed", mti="0400", original="t00001"
    )
    _txn(j, "t00007", at_s=4000, link="visa", rc="00", state="approved")  # outside the period
    return j


def test_counts_amounts_and_rates_by_network(journal: Journal) -> None:
    report = gather(journal, until_us=T0 + 3600 * 1_000_000)
    assert report.requests == 5 and report.approved == 2
    assert report.approval_rate == pytest.approx(0.4)
    assert (report.reversals, report.reversals_done) == (1, 1)
    networks = {g.name: g for g in report.by_network}
    assert set(networks) == {"visa", "mastercard", "belkart", "(switch)"}
    visa = networks["visa"]
    assert (visa.count, visa.approved, visa.declined) == (2, 1, 1)
    assert visa.by_currency["933"].amount == 2000
    assert visa.by_currency["933"].approved_amount == 1000
    assert networks["mastercard"].by_currency["840"].amount == 2550
    assert networks["belkart"].timed_out == 1 and networks["(switch)"].rejected == 1


def test_breakdowns_by_merchant_and_response_code(journal: Journal) -> None:
    report = gather(journal, until_us=T0 + 3600 * 1_000_000)
    merchants = {g.name: g.count for g in report.by_merchant}
    assert merchants == {"SHOP00000000001": 4, "SHOP00000000002": 1}
    codes = {g.name: g.count for g in report.by_response_code}
    assert codes == {"00": 2, "51": 1, "15": 1, "91": 1}


def test_latency_percentiles_are_nearest_rank(journal: Journal) -> None:
    report = gather(journal, until_us=T0 + 3600 * 1_000_000)
    assert report.latency_ms["p50"] == pytest.approx(11.0)
    assert report.latency_ms["p99"] == pytest.approx(5001.0)
    assert percentile([], 50) is None
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0


def test_period_bounds_select_by_creation_time(journal: Journal) -> None:
    assert gather(journal).requests == 6
    assert gather(journal, since_us=T0 + 3000 * 1_000_000).requests == 1
    assert gather(journal, since_us=T0 + 10**10).requests == 0


def test_timeline_buckets_add_up_to_the_requests(journal: Journal) -> None:
    report = gather(journal, until_us=T0 + 3600 * 1_000_000)
    total = sum(b["approved"] + b["declined"] + b["other"] for b in report.timeline)
    assert total == report.requests
    assert len(report.timeline) <= 61
    assert sum(int(b["count"]) for b in report.latency_histogram) == report.requests


def test_table_shows_meanings_and_amounts_with_currency(journal: Journal) -> None:
    text = render_table(gather(journal, until_us=T0 + 3600 * 1_000_000))
    assert "51 Insufficient funds" in text
    assert "25.50 USD" in text and "20.00 BYN" in text
    assert "approved 2 (40.0%)" in text


def test_csv_is_tidy_and_json_round_trips(journal: Journal) -> None:
    report = gather(journal, until_us=T0 + 3600 * 1_000_000)
    rows = list(csv.DictReader(io.StringIO(render_csv(report))))
    visa = [r for r in rows if r["section"] == "network" and r["name"] == "visa"]
    assert visa == [
        {
            "section": "network",
            "name": "visa",
            "currency": "933",
            "count": "2",
            "approved": "1",
            "amount": "2000",
            "approved_amount": "1000",
            "value": "",
        }
    ]
    data = json.loads(render_json(report))
    assert data["requests"] == 5 and data["latency_ms"]["p99"] == 5001.0
    codes = {g["name"]: g["meaning"] for g in data["by_response_code"]}
    assert codes["91"] == "Issuer or switch inoperative"


def test_html_is_one_self_contained_page_with_three_charts(journal: Journal) -> None:
    html = render_html(gather(journal, until_us=T0 + 3600 * 1_000_000))
    assert html.startswith("<!doctype html>")
    assert not re.search(r"<script|<link|src=|url\(|@import|https?://", html)
    svgs = re.findall(r"<svg.*?</svg>", html, flags=re.S)
    labels = [re.search(r'aria-label="([^"]+)"', s) for s in svgs]
    assert {m.group(1) for m in labels if m} == {
        "Transactions over time",
        "Latency histogram",
        "Response codes",
    }
    for svg in svgs:
        ET.fromstring(svg)  # each chart is well-formed XML
    assert "Insufficient funds" in html and "4111111111111111" not in html


def test_html_of_an_empty_period_still_renders(journal: Journal) -> None:
    html = render_html(gather(journal, since_us=T0 + 10**10))
    assert "no transactions in this period" in html


def test_text_from_the_journal_is_escaped_in_html(tmp_path: Path) -> None:
    j = Journal.open(tmp_path / "j.db")
    _txn(j, "t00001", at_s=0, link="visa", rc="00", state="approved", merchant="<b>SHOP</b>")
    html = render_html(gather(j))
    assert "<b>SHOP</b>" not in html and "&lt;b&gt;SHOP&lt;/b&gt;" in html


def test_parse_time_understands_operators() -> None:
    now = dt.datetime(2024, 5, 1, 12, 0, 0, tzinfo=dt.UTC)
    now_us = int(now.timestamp() * 1_000_000)
    assert parse_time("now", now) == now_us
    assert parse_time("15m", now) == now_us - 15 * 60 * 1_000_000
    assert parse_time("2h", now) == now_us - 2 * 3600 * 1_000_000
    assert parse_time("2024-05-01T10:00:00+00:00", now) == T0
    assert parse_time("today", now) <= now_us
    assert parse_time("yesterday", now) < parse_time("today", now)
    with pytest.raises(ValueError, match="is not a time"):
        parse_time("last tuesday", now)


@pytest.mark.parametrize("text", ["99999999999d", "10000000d", "1e308h"])
def test_parse_time_refuses_a_time_too_far_back_with_a_value_error(text: str) -> None:
    now = dt.datetime(2024, 5, 1, 12, 0, 0, tzinfo=dt.UTC)
    with pytest.raises(ValueError, match=f"^{text!r} is not a time"):
        parse_time(text, now)


def test_amounts_use_the_currency_exponent() -> None:
    assert format_amount(123456, "933") == "1,234.56 BYN"
    assert format_amount(1500, "392") == "1,500 JPY"
    assert format_amount(1, "999") == "0.01 999"
