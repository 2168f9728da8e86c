"""Trio shell: delivers the SAF queue of one issuer link.

Each pending entry is a reversal that must reach the issuer. The forwarder
waits until the link is up and an entry is due, fills in the PAN from its
encrypted copy (memory only), gives it a fresh STAN (0400 the first time,
0401 for repeats), journals the attempt write-ahead, and sends it. Any answer
from the issuer settles the entry (00: reversed; 25: the issuer never had the
original); a timeout or a dead link reschedules it with exponential backoff
(saf.backoff) until it expires.
"""

from __future__ import annotations

import datetime as dt
import logging

import trio

from switch.config import SafConfig
from switch.errors import IssuerTimeout, JournalError, LinkDown, SecurityError
from switch.issuer_link import IssuerLink
from switch.journal import JournalWriter, Leg
from switch.messages import APPROVED
from switch.saf import SafEntry, SafStore, backoff
from switch.translate import transmission_time
from switch.vault import Vault

__all__ = ["SafForwarder"]

log = logging.getLogger("switch.saf")


def _now_us() -> int:
    return int(dt.datetime.now(dt.UTC).timestamp() * 1_000_000)


class SafForwarder:
    def __init__(
        self,
        link: IssuerLink,
        store: SafStore,
        writer: JournalWriter,
        vault: Vault,
        config: SafConfig,
    ) -> None:
        self.link = link
        self.store = store
        self.writer = writer
        self.vault = vault
        self.config = config
        self._kick = trio.Event()
        self.delivered = 0

    def kick(self) -> None:
        """Something changed (new entry, link up, operator retry): look again now."""
        self._kick.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            self._kick = trio.Event()
            if not self.link.is_up:
                with trio.move_on_after(self.config.retry_max):
                    await self.link.up_event.wait()
                continue
            now = _now_us()
            for expired in await trio.to_thread.run_sync(self.store.expire, now):
                log.error("SAF entry %s for txn %s expired undelivered", expired.id, expired.txn_id)
            due = await trio.to_thread.run_sync(self.store.due, self.link.name, now, 50)
            if due:
                async with trio.open_nursery() as nursery:
                    for entry in due:
                        nursery.start_soon(self._deliver, entry)
                continue
            next_us = await trio.to_thread.run_sync(self.store.next_due_us, self.link.name)
            wait = self.config.retry_max if next_us is None else max(0.0, (next_us - now) / 1e6)
            with trio.move_on_after(wait):
                await self._kick.wait()

    async def _deliver(self, entry: SafEntry) -> None:
        message = dict(entry.message)
        message["t"] = "0400" if entry.attempts == 0 else "0401"
        message["11"] = self.link.allocate_stan(message["t"])
        message["7"] = transmission_time(dt.datetime.now(dt.UTC))
        if entry.pan_enc is not None:
            try:
                message["2"] = self.vault.decrypt_pan(entry.pan_enc)
            except SecurityError as exc:
                log.error("SAF entry %s: %s", entry.id, exc)
        leg = Leg(
            txn_id=entry.txn_id,
            leg="saf_out",
            time_us=_now_us(),
            link=self.link.name,
            mti=message["t"],
            stan=message["11"],
            rrn=message.get("37"),
            f7=message["7"],
            terminal=message.get("41"),
            amount=int(message.get("4", "0") or 0),
            currency=message.get("49"),
            processing_code=message.get("3"),
            note=f"SAF entry {entry.id}, attempt {entry.attempts + 1}",
        )
        try:
            await self.writer.commit(leg)
            answer = await self.link.exchange(message, context=_Late(self, entry))
        except (IssuerTimeout, LinkDown, JournalError, SecurityError) as exc:
            # SecurityError: the answer's MAC failed, so it proves nothing; the
            # reversal is retried (with backoff) until a trustworthy answer comes.
            delay = backoff(entry.attempts, self.config.retry_initial, self.config.retry_max)
            now, error = _now_us(), str(exc)[:200]
            await trio.to_thread.run_sync(
                lambda: self.store.attempted(
                    entry.id, now_us=now, next_try_us=now + int(delay * 1e6), error=error
                )
            )
            log.warning("SAF entry %s: %s; retry in %.1fs", entry.id, exc, delay)
            return
        await self.settle(entry, answer)

    async def settle(self, entry: SafEntry, answer: dict[str, str], *, late: bool = False) -> None:
        """Any issuer answer to a SAF reversal settles it -- even one after its timeout."""
        code = answer.get("39", "96")
        state = "timed_out_reversed" if entry.reason == "auto" else "reversed"
        if entry.reason == "partial":
            state = "partially_reversed"
        self.writer.record(
            Leg(
                txn_id=entry.txn_id,
                leg="saf_in",
                time_us=_now_us(),
                link=self.link.name,
                mti=answer.get("t"),
                stan=answer.get("11"),
                response_code=code,
                original_txn=entry.original_txn if entry.original_txn != entry.txn_id else None,
                state=state,
                note=f"SAF entry {entry.id} settled with {code}" + (" (late)" if late else ""),
            )
        )
        now = _now_us()
        await trio.to_thread.run_sync(
            lambda: self.store.done(entry.id, response_code=code, now_us=now)
        )
        self.delivered += 1
        log.info(
            "SAF entry %s delivered to %s: %s",
            entry.id,
            self.link.name,
            "reversed" if code == APPROVED else f"answered {code}",
        )


class _Late:
    """Context of a SAF send: a late answer to it still settles the entry."""

    __slots__ = ("entry", "forwarder")

    def __init__(self, forwarder: SafForwarder, entry: SafEntry) -> None:
        self.forwarder = forwarder
        self.entry = entry

    async def settle_late(self, answer: dict[str, str]) -> None:
        fresh = await trio.to_thread.run_sync(self.forwarder.store.get, self.entry.id)
        if fresh is not None and fresh.status == "pending":
            await self.forwarder.settle(self.entry, answer, late=True)
