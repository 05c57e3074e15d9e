"""Reading Genesys conversations: what is live, what ended (shared by the handlers)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from genesys.errors import GenesysError, GenesysTransportError
from genesys.models import Conversation, ConversationQuery, Participant
from parley import keys
from schemas.common import utcnow
from tasks.context import ExecutionContext, NotYet, Refused

T = TypeVar("T")

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


# --- What analytics lists (looking up what a lost request did) -------------------------------------
ANALYTICS_MAX_PAGES = 10
"""Pages of 100 read per lookup: a customer with more conversations since one attempt is not a case to chase."""
CLOCK_SKEW = timedelta(seconds=5)
"""Margin for Genesys' clock against ours when its timestamps are compared with our attempt times."""
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class ConversationSeen:
    conversation_id: str
    ended: bool


def lookup_since(ctx: ExecutionContext) -> datetime:
    """From when a lost attempt's effect may be found in Genesys."""
    return (ctx.previous_attempt_started_at or EPOCH) - CLOCK_SKEW


def await_analytics(ctx: ExecutionContext, what: str) -> None:
    """:class:`NotYet` until analytics lists everything the lost attempt may have created (it is fed with
    a lag, so an empty answer before then proves nothing)."""
    until = ctx.unknown_until or utcnow()
    wait_s = (until + timedelta(seconds=ctx.settings.genesys_analytics_lag_s) - utcnow()).total_seconds()
    if wait_s > 0:
        raise NotYet(wait_s, f"an earlier attempt's outcome is unknown; waiting for Genesys analytics to list {what}")


def conversations_listed(ctx: ExecutionContext, query_page: Callable[[int], ConversationQuery],
                         since: datetime, refused_hint: str, *, created_by: datetime | None = None,
                         ) -> list[ConversationSeen]:
    """Every conversation the query lists (page by page) that started, or was still live, at or after
    ``since`` (the query matches whole days, so the time check is ours); with ``created_by``, only those
    that started between ``since`` and it (what a lost attempt can have created). A lookup Genesys
    refuses for good (no analytics permission) is :class:`Refused` with ``refused_hint``: without it
    Parley cannot tell whether acting again would duplicate the effect."""
    seen: list[ConversationSeen] = []
    for page in range(1, ANALYTICS_MAX_PAGES + 1):
        query = query_page(page)
        try:
            answer = ctx.genesys.query_conversation_details(query)
        except GenesysError as exc:
            if exc.status in (400, 401, 403, 404):
                raise Refused("an earlier attempt's outcome is unknown and Genesys refused the analytics lookup "
                              f"that would tell ({exc.status} {exc.code})", refused_hint) from exc
            raise
        for conv in answer.conversations:
            if not conv.conversation_id or (conv.conversation_end is not None and conv.conversation_end < since):
                continue
            start = conv.conversation_start
            if created_by is not None and (start is None or not since <= start <= created_by):
                continue
            seen.append(ConversationSeen(conv.conversation_id, ended=conv.conversation_end is not None))
        if query.paging is None or len(answer.conversations) < query.paging.page_size:
            break
    return seen


RESUME_DELAY_S = 1.0
"""How soon a lookup that made progress before a read failed goes on (Retry-After when Genesys gave one)."""


def first_found(ctx: ExecutionContext, conversation_ids: Iterable[str], look: Callable[[str], T | None]) -> T | None:
    """The first ``look(conversation_id)`` that finds the effect of the attempts the command is unsure
    of, reading each conversation once per recovery.

    A lookup may read many conversations (every chat on a queue since the lost attempt), and one read
    failing (a 503) would spend an attempt and start the lookup over: under a steady rate of 5xx a long
    lookup then spends every attempt without ever finishing. So a conversation read and found without
    the effect is remembered (for this window of unknown outcome: a later lost attempt starts a new
    one), the next attempt skips it, and a read that fails transiently after this attempt read at
    least one conversation waits (:class:`NotYet`, no attempt used): each attempt makes progress, and
    the list is finite. Call it only after ``unknown_until`` (after :func:`await_analytics`): a
    conversation read earlier could still receive the effect of an attempt in flight.
    """
    window = (ctx.unknown_until or EPOCH).isoformat()
    checked_key = keys.lookup_checked(ctx.command_id, window)
    checked = ctx.redis.smembers(checked_key)
    progressed = 0
    for conversation_id in conversation_ids:
        if conversation_id in checked:
            continue
        try:
            found = look(conversation_id)
        except (GenesysError, GenesysTransportError) as exc:
            if progressed and _transient_read_failure(exc):
                delay = getattr(exc, "retry_after_s", None) or RESUME_DELAY_S
                raise NotYet(delay, f"the lookup of what an earlier attempt did read {progressed} more "
                                    f"conversation(s), then a read failed ({_failure(exc)}); it goes on") from exc
            raise
        if found is not None:
            return found
        pipe = ctx.redis.pipeline(transaction=False)
        pipe.sadd(checked_key, conversation_id)
        pipe.expire(checked_key, ctx.settings.idempotency_retention_s)
        pipe.execute()
        progressed += 1
    return None


def _transient_read_failure(exc: GenesysError | GenesysTransportError) -> bool:
    if isinstance(exc, GenesysTransportError):
        return True
    return exc.status in (408, 429) or exc.status >= 500


def _failure(exc: GenesysError | GenesysTransportError) -> str:
    return f"{exc.status} {exc.code}".strip() if isinstance(exc, GenesysError) else type(exc).__name__
