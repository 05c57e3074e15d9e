"""Small pieces both guest protocols share: dedup, reorder, backoff, throttle, the outbound queue.

Nothing here does I/O or reads a clock: every method that cares about time takes ``now`` (POSIX
seconds, as from ``time.time()``). Wall-clock seconds rather than a monotonic clock because the
protocols compare against server wall-clock values (``expirationDate``, ``channel.time``).
"""

from __future__ import annotations

import base64
import binascii
import json
import random
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from guest.events import GuestEvent, Intent, MessageRejected, Reconnecting
from parley import backoff
from schemas.common import random_uuid_text

T = TypeVar("T")


def parse_time(value: str | datetime | None) -> datetime | None:
    """An ISO-8601 server timestamp as an aware datetime; None when absent or unparseable.

    Real frames carry ``...Z``; test fixtures in the SDKs carry junk like ``"some_time"``, which
    must not crash the machine (the caller falls back to arrival order). A REST answer's model has
    parsed its timestamp already: it is taken as it is.
    """
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def iso_time(now: float) -> str:
    """``now`` as the ``yyyy-MM-ddTHH:mm:ss.mmmZ`` form Genesys uses."""
    return datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def jwt_expiry(jwt: str) -> float | None:
    """The ``exp`` claim of a JWT, read without verifying it (we only need to know when to stop
    trusting it). None when the token is not a readable JWT."""
    parts = jwt.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (ValueError, binascii.Error):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    return float(exp) if isinstance(exp, int | float) else None


class RecentIds:
    """A bounded set of recently seen ids: dedup without unbounded memory on long sessions.

    Oldest ids are forgotten first. The bound only has to exceed the number of messages that can
    be replayed at once (a reorder window plus a history backfill), which is small.
    """

    def __init__(self, capacity: int = 1024, initial: Iterable[str] = ()) -> None:
        if capacity < 1:
            raise ValueError("capacity must be positive")
        self.capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()
        for item in initial:
            self.add(item)

    def add(self, key: str) -> bool:
        """Remember ``key``; True when it was not already known."""
        if key in self._ids:
            return False
        self._ids[key] = None
        while len(self._ids) > self.capacity:
            self._ids.popitem(last=False)
        return True

    def __contains__(self, key: object) -> bool:
        return key in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def snapshot(self) -> list[str]:
        """Oldest first, so that feeding it back to ``initial`` keeps the eviction order."""
        return list(self._ids)


@dataclass(order=True)
class _Held(Generic[T]):
    key: float
    seq: int
    release_at: float = field(compare=False)
    item: T = field(compare=False)


class ReorderBuffer(Generic[T]):
    """Hold items for ``window`` seconds and release them sorted by their server time.

    Genesys does not guarantee delivery order, so an item is held until it has waited ``window``
    seconds; when one is due, every held item with an earlier or equal key goes out with it, in key
    order. Releases stay sorted as long as no item arrives more than ``window`` seconds after a
    later-keyed one; a later straggler is still released (never dropped), just late.
    """

    def __init__(self, window: float) -> None:
        if window < 0:
            raise ValueError("window must be >= 0")
        self.window = window
        self._held: list[_Held[T]] = []
        self._seq = 0

    def push(self, key: float, item: T, now: float) -> None:
        self._seq += 1
        self._held.append(_Held(key, self._seq, now + self.window, item))

    def pop_ready(self, now: float) -> list[T]:
        due = [h for h in self._held if h.release_at <= now]
        if not due:
            return []
        cutoff = max(h.key for h in due)
        out = sorted(h for h in self._held if h.key <= cutoff)
        self._held = [h for h in self._held if h.key > cutoff]
        return [h.item for h in out]

    def pop_all(self) -> list[T]:
        out = sorted(self._held)
        self._held = []
        return [h.item for h in out]

    def next_deadline(self) -> float | None:
        return min((h.release_at for h in self._held), default=None)

    def __len__(self) -> int:
        return len(self._held)


class Backoff(BaseModel):
    """Exponential backoff with jitter (:mod:`parley.backoff`), so many sessions dropped together do not
    return in step."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    initial: float = Field(default=1.0, gt=0)
    factor: float = Field(default=2.0, ge=1)
    maximum: float = Field(default=30.0, gt=0)
    jitter: float = Field(default=0.5, ge=0, le=1, description="Fraction of the delay that is random.")

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Delay before retry number ``attempt`` (1-based)."""
        return backoff.delay_s(max(0, attempt - 1), self.initial, self.maximum, rng, jitter=self.jitter,
                               factor=self.factor)


HISTORY_RETRIES = 5
"""History reads asked again (after a backoff) when one fails for a reason that may pass, before the
machine reports the gap as unreadable: what Genesys sent while no socket was open is only in history."""


def retryable(status: int | None) -> bool:
    """Whether a failed guest request may succeed if asked again: no answer (None), 408, 429 or 5xx (an
    HTTP status; Web Messaging's own 4xxx codes are not)."""
    return status is None or status in (408, 429) or 500 <= status < 600


NOT_HELD = float("-inf")  # a Throttle never taken, an outbox not held: due at any time, never a deadline


def earliest(times: Iterable[float | None]) -> float | None:
    """The earliest of a machine's deadlines, skipping None and :data:`NOT_HELD`. Machines answer this
    before every input their session handles, so it is a plain loop."""
    found: float | None = None
    for t in times:
        if t is not None and t != NOT_HELD and (found is None or t < found):
            found = t
    return found


class Throttle:
    """At most one action per ``interval`` seconds."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._last: float | None = None

    def next_allowed(self) -> float:
        return NOT_HELD if self._last is None else self._last + self.interval

    def allows(self, now: float) -> bool:
        return now >= self.next_allowed()

    def take(self, now: float) -> bool:
        """Consume the slot if free; True when the action may go now."""
        if not self.allows(now):
            return False
        self._last = now
        return True


@dataclass
class OutboxItem:
    """One guest message on its way out. ``tracing_id`` is its identity for its whole life: resends
    reuse it so a late confirmation of an earlier attempt still matches and nothing is doubled."""

    tracing_id: str
    text: str = field(repr=False)
    enqueued_at: float
    attempts: int = 0
    first_sent_at: float | None = None
    # The previous attempt's outcome is unknown (socket dropped, 5xx, timeout): it may have arrived.
    uncertain: bool = False
    # Data that must ride on this message and no other (custom attributes on the first message).
    extras: dict[str, str] = field(default_factory=dict, repr=False)


class Outbox:
    """Guest messages, sent strictly in order with at most one in flight.

    One in flight keeps ordering trivial under retries: a rate-limited or failed message goes back
    to the head of the queue, so nothing can overtake it.
    """

    def __init__(self) -> None:
        self._queue: deque[OutboxItem] = deque()
        self.in_flight: OutboxItem | None = None
        self.held_until: float = NOT_HELD

    def add(self, item: OutboxItem) -> None:
        self._queue.append(item)

    def ready(self, now: float) -> bool:
        return self.in_flight is None and bool(self._queue) and now >= self.held_until

    def take(self, now: float) -> OutboxItem:
        item = self._queue.popleft()
        item.attempts += 1
        if item.first_sent_at is None:
            item.first_sent_at = now
        self.in_flight = item
        return item

    def head(self) -> OutboxItem | None:
        return self.in_flight or (self._queue[0] if self._queue else None)

    def find(self, tracing_id: str) -> OutboxItem | None:
        if self.in_flight and self.in_flight.tracing_id == tracing_id:
            return self.in_flight
        return next((i for i in self._queue if i.tracing_id == tracing_id), None)

    def confirm(self, tracing_id: str) -> OutboxItem | None:
        """Remove the message wherever it is (in flight, or re-queued for a resend that is now
        unnecessary); None when it is not ours or was already confirmed."""
        if self.in_flight and self.in_flight.tracing_id == tracing_id:
            item, self.in_flight = self.in_flight, None
            return item
        for item in self._queue:
            if item.tracing_id == tracing_id:
                self._queue.remove(item)
                return item
        return None

    def requeue(self, *, uncertain: bool = False) -> OutboxItem | None:
        """Put the in-flight message back at the head, to be sent again."""
        item, self.in_flight = self.in_flight, None
        if item is not None:
            item.uncertain = item.uncertain or uncertain
            self._queue.appendleft(item)
        return item

    def fail(self) -> OutboxItem | None:
        """Drop the in-flight message (the caller reports it as rejected)."""
        item, self.in_flight = self.in_flight, None
        return item

    def hold(self, until: float) -> None:
        self.held_until = max(self.held_until, until)

    def expire_hold(self, now: float) -> None:
        """Forget a hold that has passed, so it stops being reported as a deadline."""
        if self.held_until <= now:
            self.held_until = NOT_HELD

    @property
    def hold_ends(self) -> float | None:
        """When the hold on the next message ends, if one is held."""
        held = self.held_until != NOT_HELD and self.in_flight is None and bool(self._queue)
        return self.held_until if held else None

    def drain_queued(self) -> list[OutboxItem]:
        """The queued messages, leaving the one in flight to be settled by its own answer."""
        items = list(self._queue)
        self._queue.clear()
        return items

    def drain(self) -> list[OutboxItem]:
        """Everything not yet confirmed, in order, emptying the outbox."""
        items = ([self.in_flight] if self.in_flight else []) + list(self._queue)
        self.in_flight = None
        self._queue.clear()
        return items

    def __len__(self) -> int:
        return len(self._queue) + (1 if self.in_flight else 0)


class Reconnector:
    """Reconnect bookkeeping: backoff per attempt, and a give-up time counted from the first loss
    (not from the last attempt), so a flapping link cannot keep a session alive for ever."""

    def __init__(self, backoff: Backoff, timeout: float, rng: random.Random) -> None:
        self.backoff = backoff
        self.timeout = timeout
        self._rng = rng
        self.attempt = 0
        self.lost_since: float | None = None
        self.reconnect_at: float | None = None

    def lost(self, now: float, *, immediate: bool = False) -> Reconnecting | None:
        """Schedule the next attempt; None when it is time to give up."""
        if self.lost_since is None:
            self.lost_since = now
        if now - self.lost_since >= self.timeout:
            self.reconnect_at = None
            return None
        self.attempt += 1
        delay = 0.0 if immediate else self.backoff.delay(self.attempt, self._rng)
        self.reconnect_at = now + delay
        return Reconnecting(attempt=self.attempt, delay=delay)

    def due(self, now: float) -> bool:
        """True once when the scheduled attempt is due."""
        if self.reconnect_at is None or now < self.reconnect_at:
            return False
        self.reconnect_at = None
        return True

    def recovered(self) -> None:
        self.attempt, self.lost_since, self.reconnect_at = 0, None, None

    def cancel(self) -> None:
        self.reconnect_at = None


class SansIOMachine:
    """Output queues shared by both machines: the I/O layer drains them after every input."""

    def __init__(self, *, rng: random.Random | None = None, new_id: Callable[[], str] | None = None) -> None:
        self._intents: list[Intent] = []
        self._events: list[GuestEvent] = []
        self._new_id = new_id or random_uuid_text
        self._rng = rng or random.Random()

    def intents_to_run(self) -> list[Intent]:
        """Work for the I/O layer (sockets, REST calls), in order."""
        intents, self._intents = self._intents, []
        return intents

    def events_received(self) -> list[GuestEvent]:
        """What happened, in order."""
        events, self._events = self._events, []
        return events

    def _reject(self, item: OutboxItem | str, code: int | str | None, reason: str, *, maybe: bool = False) -> None:
        tracing_id = item if isinstance(item, str) else item.tracing_id
        self._events.append(MessageRejected(tracing_id=tracing_id, code=code, reason=reason, maybe_delivered=maybe))
