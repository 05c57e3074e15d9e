"""Reading a Redis stream through a consumer group, at least once: the one way the ingestion worker
(``parley:commands``), the webhook relay (``parley:events``) and the guest router
(``parley:guest:commands``) take entries off their stream.

An entry stays pending in the group from its read until its reader acknowledges it, and a reader
acknowledges only once the entry is handed on (in the transaction or script of the hand-off). So an
entry read and never acknowledged is read again:

* by the same consumer after a restart: :meth:`ConsumerGroup.pending` (XREADGROUP from 0);
* by another consumer once it has sat idle ``idle_ms`` (its consumer died):
  :meth:`ConsumerGroup.claim` (XAUTOCLAIM over the whole pending list, in stream order);

and new entries come after: :meth:`ConsumerGroup.new` (XREADGROUP >). Each entry says how many times
the group delivered it (``deliveries``: XPENDING after a replay or a claim, 1 for a new entry), so a
reader can dead-letter one that keeps failing instead of looping on it. An entry deleted while pending
(a trimmed stream) comes back without fields: there is nothing left to hand on, so it is acknowledged
here and not returned. Field names and values come back as ``str`` whether or not the client decodes.

The steps are plans (:mod:`genesys.effects`): ingest and the webhook relay run them with a
``SyncRunner``, the asyncio guest router with an ``AsyncRunner``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import redis

from genesys.effects import Plan, RedisCommand


@dataclass(frozen=True)
class StreamEntry:
    entry_id: str
    fields: dict[str, str]
    deliveries: int = 1
    """Times the group has delivered the entry, this delivery included."""


@dataclass(frozen=True)
class ConsumerGroup:
    """``consumer``'s reading of ``stream`` through ``group``, ``count`` entries at a time."""

    stream: str
    group: str
    consumer: str
    count: int
    start: str = "0"
    """Where a newly created group begins: "0" the whole stream, "$" only what is added from now on."""

    def create(self) -> Plan[None]:
        """Create the group (and the stream) unless it exists."""
        try:
            yield RedisCommand("xgroup_create", (self.stream, self.group), {"id": self.start, "mkstream": True})
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def new(self, block_ms: int | None) -> Plan[list[StreamEntry]]:
        """Entries never delivered to the group, waiting up to ``block_ms`` for some (None: no wait)."""
        reply = yield RedisCommand("xreadgroup", (self.group, self.consumer, {self.stream: ">"}),
                                   {"count": self.count, "block": block_ms})
        return (yield from self._kept([row for _stream, rows in reply or [] for row in rows]))

    def pending(self) -> Plan[list[StreamEntry]]:
        """This consumer's entries read before (then a restart) and never acknowledged."""
        reply = yield RedisCommand("xreadgroup", (self.group, self.consumer, {self.stream: "0"}),
                                   {"count": self.count})
        entries = yield from self._kept([row for _stream, rows in reply or [] for row in rows])
        return (yield from self._counted(entries))

    def claim(self, idle_ms: int) -> Plan[list[StreamEntry]]:
        """Every entry pending at least ``idle_ms`` for any consumer, taken over by this one."""
        rows: list[Any] = []
        cursor: Any = "0-0"
        while True:
            cursor, claimed, *_ = yield RedisCommand(
                "xautoclaim", (self.stream, self.group, self.consumer),
                {"min_idle_time": idle_ms, "start_id": cursor, "count": self.count})
            rows += claimed
            if _text(cursor) == "0-0":
                break
        entries = yield from self._kept(rows)
        return (yield from self._counted(entries))

    def trim(self, older_than_ms: int) -> Plan[int]:
        """Delete the entries that every group reading the stream has handed on and that are older than
        ``older_than_ms`` (ms since the epoch, as stream ids count time); returns how many went.

        Such an entry is of no more use to its readers (what it said lives where it was handed: a
        command's record), and it holds the producer's JSON, customer text included: without a trim
        the stream grows by every command ever sent. An entry still pending, or not yet delivered to
        some group, stays; so does everything when no group reads the stream."""
        groups = yield RedisCommand("xinfo_groups", (self.stream,))
        if not groups:
            return 0
        bound = (older_than_ms, 0)
        for group in groups:
            if int(group["pending"]):
                summary = yield RedisCommand("xpending", (self.stream, _text(group["name"])))
                bound = min(bound, _position(_text(summary["min"])))
            else:
                ms, seq = _position(_text(group["last-delivered-id"]))
                bound = min(bound, (ms, seq + 1))  # everything up to the last delivered was acknowledged
        removed = yield RedisCommand("xtrim", (self.stream,), {"minid": f"{bound[0]}-{bound[1]}",
                                                               "approximate": False})
        return int(removed)

    def _kept(self, rows: list[Any]) -> Plan[list[StreamEntry]]:
        """The rows as entries, after acknowledging those deleted while pending."""
        # A deleted entry's fields come back as nil or, parsed by redis-py, as {}: XADD needs at least one.
        gone = [entry_id for entry_id, fields in rows if not fields]
        if gone:
            yield RedisCommand("xack", (self.stream, self.group, *gone))
        return [StreamEntry(_text(entry_id), {_text(k): _text(v) for k, v in fields.items()})
                for entry_id, fields in rows if fields]

    def _counted(self, entries: list[StreamEntry]) -> Plan[list[StreamEntry]]:
        """``entries`` (this consumer's, in stream order) with the group's delivery counts."""
        if not entries:
            return entries
        pending = yield RedisCommand(
            "xpending_range", (self.stream, self.group),
            {"min": entries[0].entry_id, "max": entries[-1].entry_id, "count": len(entries) * 2,
             "consumername": self.consumer})
        counts = {_text(p["message_id"]): int(p["times_delivered"]) for p in pending}
        return [replace(e, deliveries=counts.get(e.entry_id, 1)) for e in entries]


def _position(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _text(value: bytes | str) -> str:
    # Undecodable bytes become surrogate escapes: the reader decides (ingest rejects such a command).
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else value
