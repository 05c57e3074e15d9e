"""What the verdict reads once the load is over: the event stream and dead letters as Parley wrote them,
and, from the emulator, the ledger of side effects plus a read-back of the conversations Genesys
created (whose customer each belongs to, which command a third-party chat was stamped with).

Read with the faults cleared: these reads are the harness's, not Parley's.
"""

from __future__ import annotations

import json
from typing import Any

import redis
from pydantic import BaseModel, ConfigDict

from chaos.emulator import Emulator, LedgerEntry

PAGE = 5000


class StreamEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    data: dict[str, Any]

    @property
    def ms(self) -> int:
        """When Redis appended it (the stream id's clock, the same host clock as the harness's)."""
        return int(self.id.split("-")[0])


class Observed(BaseModel):
    model_config = ConfigDict(extra="forbid")

    events: list[StreamEntry]
    dead: list[StreamEntry]
    ledger: list[LedgerEntry]
    customers: dict[str, str]  # messaging conversation id -> "channel|from|recipient"
    chat_stamps: dict[str, str | None]  # third-party chat id -> its parley_command_id attribute
    unreadable: list[str]  # conversations the read-back could not get


def read_stream(client: redis.Redis, stream: str, field: str) -> list[StreamEntry]:
    out: list[StreamEntry] = []
    start = "-"
    while True:
        rows = client.xrange(stream, min=start, count=PAGE)
        for entry_id, fields in rows:
            raw = fields.get(field)
            out.append(StreamEntry(id=entry_id, data=json.loads(raw) if raw else {}))
        if len(rows) < PAGE:
            return out
        start = "(" + rows[-1][0]


def _customer(conversation: dict[str, Any], ledger_contact: str | None) -> str | None:
    for participant in conversation.get("participants", []):
        if participant.get("purpose") != "customer":
            continue
        channel = participant.get("type") or ""
        sender = (participant.get("fromAddress") or {}).get("addressNormalized") or ""
        contact = (participant.get("externalContact") or {}).get("id") or ledger_contact
        recipient = contact if channel == "webmessaging" else participant.get("address")
        return f"{channel}|{sender}|{recipient}"
    return None


def observe(client: redis.Redis, emulator: Emulator, ledger_after: int) -> Observed:
    ledger = emulator.ledger(after=ledger_after)
    customers: dict[str, str] = {}
    stamps: dict[str, str | None] = {}
    unreadable: list[str] = []
    for entry in ledger:
        if entry.by != "client" or entry.conversation_id is None:
            continue
        cid = entry.conversation_id
        if entry.kind == "conversation.created":
            conversation = emulator.message_conversation(cid)
            customer = _customer(conversation, entry.external_contact_id) if conversation else None
            if customer is None:
                unreadable.append(cid)
            else:
                customers[cid] = customer
        elif entry.kind == "chat.created":
            chat = emulator.chat(cid)
            if chat is None:
                unreadable.append(cid)
                continue
            attributes = next((p.get("attributes") or {} for p in chat.get("participants", [])
                               if p.get("purpose") == "customer"), {})
            stamps[cid] = attributes.get("parley_command_id")
    return Observed(events=read_stream(client, "parley:events", "event"),
                    dead=read_stream(client, "parley:dead", "dead"), ledger=ledger, customers=customers,
                    chat_stamps=stamps, unreadable=unreadable)
