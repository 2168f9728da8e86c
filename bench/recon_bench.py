"""Benchmark: ``switch recon`` over a journal of a million legs (target: under 30 s).

Builds a synthetic business day -- a journal written with ``Journal.write_batch``
in big batches, four legs per transaction (acquirer_in, issuer_out, issuer_in,
acquirer_out), and the matching settlement CSV -- then times the read side
(journal + SAF + settlement → classified report) and the rendering.
A few breaks are planted so the classifier has work to show.

    .venv/bin/python bench/recon_bench.py --legs 1000000 [--dir /tmp/reconbench] [--keep]

Prints timings; asserts nothing about time (that is for people, not CI).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from switch import recon_io, recon_report
from switch.journal import Journal, Leg
from switch.recon import SETTLEMENT_COLUMNS
from switch.saf import SafStore

DAY = dt.date(2024, 5, 1)
LEGS_PER_TXN = 4
BATCH = 20_000


def build(directory: Path, legs: int) -> tuple[Path, Path, int]:
    """Write the journal and the settlement file; return their paths and the txn count."""
    journal_path, settlement_path = directory / "journal.db", directory / "visa.csv"
    journal = Journal.open(journal_path)
    journal.db.conn.execute("pragma synchronous = OFF")
    start, _ = recon_io.day_window(DAY)
    txns = legs // LEGS_PER_TXN
    step = 86_000_000_000 // max(1, txns)  # spread over the day, in µs
    batch: list[Leg] = []
    with settlement_path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(SETTLEMENT_COLUMNS)
        for n in range(txns):
            t = start + n * step
            txn_id, stan, rrn = f"b{n:015x}", f"{n % 999_999 + 1:06d}", f"4122{n:08d}"
            amount, refund = 100 + n % 50_000, n % 20 == 0
            code = "51" if n % 10 == 3 else "00"
            common: dict[str, Any] = {
                "txn_id": txn_id,
                "terminal": f"T{n % 500:07d}",
                "merchant": "SHOP00000000001",
                "pan_masked": "411111******1111",
                "pan_token": f"tok{n % 10_000}",
                "amount": amount,
                "currency": "933",
                "processing_code": "200000" if refund else "000000",
            }
            state = "approved" if code == "00" else "declined"
            batch += [
                Leg(
                    leg="acquirer_in",
                    time_us=t,
                    link="gateway",
                    mti="0100",
                    stan=stan,
                    rrn=rrn,
                    **common,
                ),
                Leg(
                    leg="issuer_out",
                    time_us=t + 1,
                    link="visa",
                    mti="0100",
                    stan=stan,
                    rrn=rrn,
                    f7="0501100000",
                    **common,
                ),
                Leg(
                    leg="issuer_in",
                    time_us=t + 900,
                    link="visa",
                    mti="0110",
                    stan=stan,
                    rrn=rrn,
                    response_code=code,
                    txn_id=txn_id,
                ),
                Leg(
                    leg="acquirer_out",
                    time_us=t + 1000,
                    link="gateway",
                    mti="0110",
                    stan=stan,
                    rrn=rrn,
                    response_code=code,
                    state=state,
                    txn_id=txn_id,
                ),
            ]
            if n % 50_000 != 7:  # a few missing at the issuer
                writer.writerow(
                    [
                        rrn,
                        stan,
                        "A1B2C3" if code == "00" else "",
                        "411111******1111",
                        common["pan_token"],
                        f"{amount:012d}",
                        "933",
                        common["processing_code"],
                        "0100",
                        code,
                        "",
                        "",
                        "0",
                        "000000000000",
                        common["terminal"],
                        common["merchant"],
                    ]
                )
            if len(batch) >= BATCH:
                journal.write_batch(batch)
                batch.clear()
    if batch:
        journal.write_batch(batch)
    journal.close()
    return journal_path, settlement_path, txns


def run(directory: Path, legs: int) -> None:
    t0 = time.perf_counter()
    journal_path, settlement_path, txns = build(directory, legs)
    t1 = time.perf_counter()
    journal = Journal.open(journal_path)
    saf = SafStore.open(journal_path)
    print(f"built {journal.count_legs():,} legs / {txns:,} transactions in {t1 - t0:.1f} s")
    t2 = time.perf_counter()
    settlement = recon_io.read_settlement(settlement_path)
    t3 = time.perf_counter()
    report = recon_io.gather(journal, saf, DAY, {"visa": settlement})
    t4 = time.perf_counter()
    table = recon_report.render_table(report)
    recon_report.render_breaks_csv(report.breaks)
    t5 = time.perf_counter()
    counts = report.networks["visa"].result.counts
    print(f"settlement read: {t3 - t2:.2f} s ({len(settlement):,} rows)")
    print(f"journal read + classify + totals: {t4 - t3:.2f} s")
    print(f"render: {t5 - t4:.2f} s")
    print(f"recon total: {t5 - t2:.2f} s for {journal.count_legs():,} legs (target < 30 s)")
    print({k: v for k, v in counts.items() if v})
    print(table.splitlines()[-1])
    saf.close()
    journal.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--legs", type=int, default=1_000_000)
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    args = parser.parse_args()
    directory = args.dir or Path(tempfile.mkdtemp(prefix="reconbench-"))
    directory.mkdir(parents=True, exist_ok=True)
    try:
        run(directory, args.legs)
    finally:
        if not args.keep:
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
