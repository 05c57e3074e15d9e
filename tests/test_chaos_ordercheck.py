"""The chaos verdict's order check, on a made-up event stream: it finds an overtaking, and only that."""

from __future__ import annotations

from typing import Any

from chaos.load import Plan, PlannedCommand
from chaos.observe import StreamEntry
from chaos.ordercheck import check_order
from chaos.outcomes import Outcomes

CONVERSATION = "5d0c2b9a-7e4f-4c31-8a6d-1f2e3b4c5d6e"


def command(index: int, kind: str, **body: Any) -> PlannedCommand:
    key = f"k{index}"
    return PlannedCommand(index=index, key=key, type=kind, body={"type": kind, "idempotency_key": key, **body})


def event(ms: int, kind: str, key: str) -> StreamEntry:
    return StreamEntry(id=f"{ms}-0", data={"id": f"{kind}-{key}-{ms}", "type": kind, "idempotency_key": key})


def plan(*commands: PlannedCommand) -> Plan:
    return Plan(commands={c.key: c for c in commands}, invalid=[], steps=[], guests=[])


START = command(1, "cobrowse.start", conversation_id=CONVERSATION)
END = command(2, "conversation.end", conversation_id=CONVERSATION)
ELSEWHERE = command(3, "conversation.end", conversation_id="9e8d7c6b-5a49-4382-9170-6f5e4d3c2b1a")


def test_commands_that_ended_in_the_order_accepted_pass() -> None:
    events = [event(1, "command.accepted", "k1"), event(2, "command.accepted", "k2"),
              event(3, "command.accepted", "k3"), event(4, "command.succeeded", "k3"),  # another conversation
              event(5, "command.failed", "k1"), event(6, "command.succeeded", "k2")]
    found = check_order(plan(START, END, ELSEWHERE), Outcomes(events))
    assert found.violations == []
    assert found.figures["order keys with several commands"] == 1


def test_an_end_that_overtook_the_start_is_a_violation() -> None:
    events = [event(1, "command.accepted", "k1"), event(2, "command.accepted", "k2"),
              event(3, "command.succeeded", "k2"), event(4, "command.succeeded", "k1")]
    [violation] = check_order(plan(START, END), Outcomes(events)).violations
    assert violation.check == "ordered per conversation and customer" and violation.ids == ["k1", "k2"]
