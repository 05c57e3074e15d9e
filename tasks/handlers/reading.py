"""Reading Genesys conversations: what is live, what ended (shared by the handlers)."""

from __future__ import annotations

from genesys.errors import GenesysError
from genesys.models import Conversation, Participant
from tasks.context import ExecutionContext

ENDED_STATES = frozenset({"disconnected", "terminated"})


def _legs(p: Participant) -> list:
    return [*(p.messages or []), *(p.chats or []), *(p.cobrowsesessions or [])]


def participant_state(p: Participant) -> str:
    """A participant's state: its live leg's state, or disconnected when every leg ended."""
    states = [leg.state for leg in _legs(p) if leg.state]
    live = [s for s in states if s not in ENDED_STATES]
    if live:
        return live[0]
    if states or p.end_time is not None:
        return "disconnected"
    return "connected"


def participant_states(conv: Conversation) -> dict[str, str]:
    """purpose -> state (the first participant of each purpose wins; customers first)."""
    out: dict[str, str] = {}
    for p in conv.participants or []:
        out.setdefault(p.purpose or "unknown", participant_state(p))
    return out


def is_ended(conv: Conversation) -> bool:
    """Ended when Genesys stamped an end time or the customer reads disconnected."""
    if conv.end_time is not None:
        return True
    customers = [p for p in conv.participants or [] if p.purpose == "customer"]
    return bool(customers) and all(participant_state(p) in ENDED_STATES for p in customers)


def live_participants(conv: Conversation) -> list[Participant]:
    return [p for p in conv.participants or [] if participant_state(p) not in ENDED_STATES]


def has_live_cobrowse(conv: Conversation) -> bool:
    return any(
        leg.state not in ENDED_STATES
        for p in conv.participants or []
        for leg in (p.cobrowsesessions or [])
        if leg.state
    )


def fetch_live(ctx: ExecutionContext, conversation_id: str) -> Conversation | None:
    """The conversation if Genesys still has it live; None when it ended or does not exist."""
    try:
        conv = ctx.genesys.get_conversation(conversation_id)
    except GenesysError as exc:
        if exc.status == 404:
            return None
        raise
    return None if is_ended(conv) else conv
