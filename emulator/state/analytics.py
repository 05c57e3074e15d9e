"""Genesys analytics as the conversation detail query sees it: a lagging index of the org's conversations.

Analytics is fed asynchronously from the conversation service. The emulator does not keep a second
copy; it renders each conversation as analytics would have indexed it at the emulator's clock time:

- a conversation is listed only ``analytics_lag_s`` after it started, a participant only that long
  after it joined;
- an end (``conversationEnd``, a session's ``segmentEnd``) shows only that long after it happened;
  until then the conversation is still listed, as not ended (``conversationEnd`` notExists matches).

A query covers the conversations that started on a UTC day touched by its interval (Genesys keeps one
index per day), filtered, ordered and paged. Segment filters are evaluated on one session (one
participant's media leg, with its participant's fields and attributes) at a time: a filter matches a
conversation when one of its sessions satisfies it; several filters must all match.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from emulator.errors import ApiError
from emulator.state.model import Communication, Conversation, Media, Participant
from genesys import models as wire
from genesys.models import (
    ConversationDetailQueryFilter,
    ConversationDetailQueryPredicate,
    ConversationQuery,
    FilterType,
    SegmentDetailQueryFilter,
    SegmentDetailQueryPredicate,
)

DEFAULT_PAGE_SIZE = 25
MAX_PAGE_SIZE = 100
# "If no filter is supplied, you will be limited to an interval no longer than seven days. If you do
# provide a filter, the limit increases to 31 days."
MAX_DAYS_UNFILTERED = 7
MAX_DAYS_FILTERED = 31
# Dimension values compared without regard to case (enumerations); ids and addresses are exact.
_CASELESS = frozenset({"purpose", "mediaType", "messageType", "direction"})
_DISCONNECT_TYPES = frozenset(
    {
        "client", "conferenceTransfer", "consultTransfer", "dndEndpoint", "dndTransfer", "endpoint", "error",
        "forwardTransfer", "inactivity", "noAnswerTransfer", "notAvailableTransfer", "other", "peer",
        "sessionExpired", "spam", "system", "takeover", "timeout", "transfer", "transportFailure", "uncallable",
    }
)  # fmt: skip
View = wire.AnalyticsConversationWithoutAttributes
_MEDIA_TYPES = {Media.MESSAGE: "message", Media.CHAT: "chat", Media.COBROWSE: "cobrowse"}


# --- the interval -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Interval:
    start: datetime
    end: datetime

    @property
    def days(self) -> tuple[date, date]:
        """First and last UTC day the interval touches (its end is exclusive)."""
        return self.start.date(), (self.end - timedelta(microseconds=1)).date()

    def touches_day_of(self, moment: datetime) -> bool:
        first, last = self.days
        return first <= moment.astimezone(UTC).date() <= last


def _bad_interval(value: str, why: str) -> ApiError:
    return ApiError(
        400,
        "bad.request",
        message=f"Invalid interval [{value[:100]}]: {why}. Intervals are ISO-8601 start/end, "
        "e.g. 2024-05-01T00:00:00.000Z/2024-05-02T00:00:00.000Z",
    )


def _instant(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ApiError(400, "invalid.date", message=_INVALID_DATE) from None
    # Genesys reads a bound without an offset as UTC.
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


_INVALID_DATE = "Dates must be specified as ISO-8601 strings. For example: yyyy-MM-ddTHH:mm:ss.SSSZ"


def parse_interval(value: str, *, filtered: bool) -> Interval:
    """``start/end``; 400 unless both are ISO-8601 instants, end after start, within the day limit."""
    parts = value.split("/")
    if len(parts) != 2 or not all(p.strip() for p in parts):
        raise _bad_interval(value, "expected start/end")
    interval = Interval(_instant(parts[0]), _instant(parts[1]))
    if interval.end <= interval.start:
        raise _bad_interval(value, "the end must be after the start")
    limit = MAX_DAYS_FILTERED if filtered else MAX_DAYS_UNFILTERED
    if interval.end - interval.start > timedelta(days=limit):
        raise _bad_interval(value, f"longer than {limit} days")
    return interval


# --- conversations as analytics has indexed them ----------------------------------------------------
@dataclass
class IndexedSession:
    """One session of the rendered conversation, with what its filters may look at."""

    participant: wire.AnalyticsParticipantWithoutAttributes
    session: wire.AnalyticsSession
    attributes: dict[str, str]


@dataclass
class IndexedConversation:
    view: wire.AnalyticsConversationWithoutAttributes
    sessions: list[IndexedSession] = field(default_factory=list)


def _disconnect_type(value: str | None) -> str | None:
    """Conversation disconnect types in analytics' spelling (``transport.failure`` -> ``transportFailure``)."""
    if value is None:
        return None
    head, *rest = value.split(".")
    camel = head + "".join(part[:1].upper() + part[1:] for part in rest)
    return camel if camel in _DISCONNECT_TYPES else "other"


def _session(p: Participant, comm: Communication, indexed_by: datetime) -> wire.AnalyticsSession:
    start = comm.connected_time or p.start_time
    ended = comm.disconnected_time is not None and comm.disconnected_time <= indexed_by
    segment = wire.AnalyticsConversationSegment(
        segment_start=start,
        segment_end=comm.disconnected_time if ended else None,
        segment_type="interact" if comm.connected_time else "alert",
        disconnect_type=_disconnect_type(comm.disconnect_type) if ended else None,
        queue_id=p.queue_id,
        conference=False,
    )
    return wire.AnalyticsSession(
        session_id=comm.id,
        media_type=_MEDIA_TYPES[comm.media],
        message_type=comm.messenger_type if comm.media is Media.MESSAGE else None,
        direction=comm.direction,
        address_from=comm.from_address,
        address_to=comm.to_address,
        provider=comm.provider,
        room_id=comm.room_id,
        cobrowse_role=comm.cobrowse_role,
        segments=[segment],
    )


def index(conv: Conversation, now: datetime, lag_s: float) -> IndexedConversation | None:
    """``conv`` as analytics shows it at ``now``, or None while it is not indexed yet."""
    indexed_by = now - timedelta(seconds=lag_s)
    if conv.start_time > indexed_by:
        return None
    participants: list[wire.AnalyticsParticipantWithoutAttributes] = []
    sessions: list[IndexedSession] = []
    for p in conv.participants:
        if p.start_time is not None and p.start_time > indexed_by:
            continue
        participant = wire.AnalyticsParticipantWithoutAttributes(
            participant_id=p.id,
            participant_name=p.name,
            purpose=p.purpose,
            external_contact_id=p.external_contact_id,
            user_id=p.user_id,
            sessions=[_session(p, c, indexed_by) for c in p.communications],
        )
        participants.append(participant)
        sessions.extend(IndexedSession(participant, s, p.attributes) for s in participant.sessions or [])
    ended = conv.end_time is not None and conv.end_time <= indexed_by
    customer = next((p for p in conv.participants if p.purpose == "customer" and p.communications), None)
    view = wire.AnalyticsConversationWithoutAttributes(
        conversation_id=conv.id,
        conversation_start=conv.start_time,
        conversation_end=conv.end_time if ended else None,
        originating_direction=customer.communications[0].direction if customer else None,
        customer_participation=customer is not None,
        participants=participants,
    )
    return IndexedConversation(view, sessions)


# --- filters ----------------------------------------------------------------------------------------
def _combine(kind: FilterType, results: Iterable[bool]) -> bool:
    return all(results) if kind == "and" else any(results)


def _matches(operator: str | None, actual: str | None, expected: str | None, equal: Callable[[str, str], bool]) -> bool:
    if operator == "exists":
        return actual is not None
    if operator == "notExists":
        return actual is None
    return actual is not None and expected is not None and equal(actual, expected)


def _exact(a: str, b: str) -> bool:
    return a == b


def _caseless(a: str, b: str) -> bool:
    return a.casefold() == b.casefold()


def _typed_equal(property_type: str | None) -> Callable[[str, str], bool]:
    """How a property predicate compares an attribute with its value, per ``propertyType``."""

    def number(a: str, b: str) -> bool:
        try:
            return math.isclose(float(a), float(b))
        except ValueError:
            return False

    def moment(a: str, b: str) -> bool:
        try:
            return _instant(a) == _instant(b)
        except ApiError:
            return False

    return {
        "integer": number,
        "real": number,
        "date": moment,
        "bool": _caseless,
        "uuid": _caseless,
    }.get(property_type or "string", _exact)


def _segment_value(s: IndexedSession, dimension: str) -> str | None:
    participant, session = s.participant, s.session
    segments = session.segments or []
    values: dict[str, str | None] = {
        "addressFrom": session.address_from,
        "addressTo": session.address_to,
        "direction": session.direction,
        "externalContactId": participant.external_contact_id,
        "mediaType": session.media_type,
        "messageType": session.message_type,
        "participantName": participant.participant_name,
        "provider": session.provider,
        "purpose": participant.purpose,
        "queueId": next((seg.queue_id for seg in segments if seg.queue_id), None),
        "userId": participant.user_id,
    }
    return values.get(dimension)


def _segment_predicate(p: SegmentDetailQueryPredicate, s: IndexedSession) -> bool:
    if p.type == "property":
        assert p.property_name is not None
        return _matches(p.operator, s.attributes.get(p.property_name), p.value, _typed_equal(p.property_type))
    assert p.dimension is not None
    equal = _caseless if p.dimension in _CASELESS else _exact
    return _matches(p.operator, _segment_value(s, p.dimension), p.value, equal)


def _segment_filter(f: SegmentDetailQueryFilter, s: IndexedSession) -> bool:
    results = [_segment_predicate(p, s) for p in f.predicates or []]
    results += [_combine(c.type, (_segment_predicate(p, s) for p in c.predicates)) for c in f.clauses or []]
    return _combine(f.type, results) if results else True


def _conversation_value(view: wire.AnalyticsConversationWithoutAttributes, dimension: str) -> str | None:
    if dimension == "conversationId":
        return view.conversation_id
    end = view.conversation_end
    return end.isoformat() if end else None


def _conversation_predicate(p: ConversationDetailQueryPredicate, view: View) -> bool:
    assert p.dimension is not None
    equal = _typed_equal("date") if p.dimension == "conversationEnd" else _exact
    return _matches(p.operator, _conversation_value(view, p.dimension), p.value, equal)


def _conversation_filter(f: ConversationDetailQueryFilter, view: View) -> bool:
    results = [_conversation_predicate(p, view) for p in f.predicates or []]
    results += [_combine(c.type, (_conversation_predicate(p, view) for p in c.predicates)) for c in f.clauses or []]
    return _combine(f.type, results) if results else True


def _selected(conv: IndexedConversation, query: ConversationQuery) -> bool:
    return all(_conversation_filter(f, conv.view) for f in query.conversation_filters or []) and all(
        any(_segment_filter(f, s) for s in conv.sessions) for f in query.segment_filters or []
    )


# --- the query --------------------------------------------------------------------------------------
def _order_key(order_by: str) -> Callable[[IndexedConversation], tuple[bool, datetime]]:
    def key(conv: IndexedConversation) -> tuple[bool, datetime]:
        view = conv.view
        moment = view.conversation_end if order_by == "conversationEnd" else view.conversation_start
        # Not ended yet sorts after every end (as "no value" sorts last).
        return moment is None, moment or datetime.max.replace(tzinfo=UTC)

    return key


def run_query(
    conversations: Iterable[Conversation], query: ConversationQuery, interval: Interval, *, now: datetime, lag_s: float
) -> wire.AnalyticsConversationQueryResponse:
    """The page of matching conversations, and how many matched in all."""
    found = [
        indexed
        for conv in conversations
        if interval.touches_day_of(conv.start_time)
        and (indexed := index(conv, now, lag_s)) is not None
        and _selected(indexed, query)
    ]
    found.sort(key=_order_key(query.order_by or "conversationStart"), reverse=query.order == "desc")
    paging = query.paging
    size = paging.page_size if paging else DEFAULT_PAGE_SIZE
    first = ((paging.page_number if paging else 1) - 1) * size
    page = [c.view for c in found[first : first + size]]
    return wire.AnalyticsConversationQueryResponse(conversations=page, total_hits=len(found))
