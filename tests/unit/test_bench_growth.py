"""The soak's RSS growth: the recent-transactions table's fill apart from what follows."""

from __future__ import annotations

from dataclasses import replace

from bench.run import Phase, _growth, _table_fill_seconds


def test_soak_growth_is_measured_once_the_recent_table_is_full() -> None:
    # 50,000 transactions found at 1,000 TPS, and up to one slice (1/8) more
    # held: full after 56.25 s, 60 s in RSS samples every 5 s. The fill's
    # climb is reported apart from what follows it.
    fill = _table_fill_seconds(1000.0)
    assert fill == 60.0
    climb = [100_000 + 10_000 * i for i in range(13)]  # 0..60 s: the table filling
    flat = [200_000] * 3 + [204_000] * 60  # then 2% more over five minutes
    phase = Phase(
        target="switch",
        load={},
        cpu_s=0.0,
        rss_kib_start=climb[0],
        rss_kib_end=flat[-1],
        rss_kib_peak=flat[-1],
        rss_samples_kib=climb + flat,
    )
    growth = _growth(phase, fill)
    assert growth["rss_growth_pct"] == 2.0
    assert growth["rss_growth_with_fill_pct"] == 104.0
    short = _growth(replace(phase, rss_samples_kib=climb), fill)  # ended with the fill
    assert short["rss_growth_pct"] is None
    assert short["rss_growth_with_fill_pct"] == 120.0
    assert _growth(replace(phase, rss_samples_kib=[]), fill)["rss_growth_pct"] is None
