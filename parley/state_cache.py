"""The Redis state cache that deduplicates Genesys session ids, and the lease that serializes commands.

What it remembers, per natural key:

* the customer's live conversation: (org, channel, from_address, recipient) -> conversation id and,
  when known, the agent communication id, with ``checked_at`` so the runner can tell a fresh entry from
  one it must confirm with Genesys first;
* the live cobrowse of a conversation: conversation id -> cobrowse session (join code, websocket url,
  ``date_offer_ends``), so a second ``cobrowse.start`` returns the live one instead of a 409 storm;
* guest sessions: (org, session_key) -> the Genesys ids of the guest session the guest worker holds;
* conversations Parley saw end (it ended them, or read them ended), so that a later 404 about one is
  explained as "it ended before this command ran" instead of as a wrong id.

Every entry is only a hint: Genesys stays the source of truth. An entry Genesys contradicts (the
conversation ended, a 404) is dropped with :meth:`StateCache.contradicted`; an unreadable one is a miss.

The lease (:meth:`StateCache.lease`) serializes commands on one natural key across workers, so two
commands for the same customer never both decide "no live conversation, create one". It is a fenced
:class:`parley.leases.Lease`: a holder that stalled past its TTL finds out (``LeaseLost``) instead of
silently overlapping the next holder.

Values are pydantic models stored as JSON; none holds customer text or credentials (the models forbid
extra fields). Key names come from :mod:`parley.keys` only; customer addresses and producer session
keys appear in them only as hashes. Every key has a TTL.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import ClassVar, Literal, TypeVar

import redis
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from parley import keys, leases
from parley.leases import Lease
from parley.leases import LeaseLost as LeaseLost  # what a holder of a StateCache lease catches
from parley.leases import LeaseTimeout as LeaseTimeout  # what StateCache.lease raises

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


def _ms(delta: timedelta) -> int:
    return max(1, int(delta.total_seconds() * 1000))


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# --- natural keys --------------------------------------------------------------------------------------


class _Subject(_Frozen):
    """A natural key: what a cache entry or a lease is about."""

    namespace: ClassVar[str]

    def ident(self) -> str:
        """A stable id for key names; a hash, so customer addresses never appear in Redis key names."""
        canonical = json.dumps(self.model_dump(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:32]


class CustomerKey(_Subject):
    """The customer end of a messaging conversation: one live conversation per key."""

    namespace: ClassVar[str] = "customer"

    org: str = Field(min_length=1)
    channel: str = Field(min_length=1)
    from_address: str = Field(min_length=1)
    recipient: str = Field(min_length=1, description="to_address, or the external contact id (webmessaging)")

    @classmethod
    def for_message(
        cls,
        *,
        org: str,
        channel: str,
        from_address: str,
        to_address: str | None = None,
        external_contact_id: str | None = None,
    ) -> CustomerKey:
        """The key of a ``message.send``: webmessaging has no to_address and names the customer by the
        external contact; the other channels name them by address."""
        recipient = to_address or external_contact_id
        if not recipient:
            raise ValueError("a customer key needs to_address or external_contact_id")
        return cls(org=org, channel=channel, from_address=from_address, recipient=recipient)


class ConversationKey(_Subject):
    """A Genesys conversation (for leases on conversation.end and cobrowse.*)."""

    namespace: ClassVar[str] = "conversation"

    conversation_id: str = Field(min_length=1)

    def ident(self) -> str:
        # A Genesys id, not customer data: kept readable for operators.
        return self.conversation_id


class GuestKey(_Subject):
    """A producer's guest session (``session_key`` is the producer's id, so it is hashed)."""

    namespace: ClassVar[str] = "guest"

    org: str = Field(min_length=1)
    session_key: str = Field(min_length=1)


Subject = CustomerKey | ConversationKey | GuestKey


# --- cached values -------------------------------------------------------------------------------------


class LiveConversation(_Frozen):
    conversation_id: str = Field(min_length=1)
    communication_id: str | None = None
    checked_at: AwareDatetime = Field(
        default_factory=utcnow, description="When Genesys last confirmed the conversation live."
    )

    def is_stale(self, max_age: timedelta, now: datetime | None = None) -> bool:
        return (now or utcnow()) - self.checked_at > max_age


class CobrowseSession(_Frozen):
    conversation_id: str = Field(min_length=1)
    cobrowse_session_id: str = Field(min_length=1)
    join_code: str
    websocket_url: str
    date_offer_ends: AwareDatetime | None = None
    created_at: AwareDatetime = Field(default_factory=utcnow)

    def is_live(self, now: datetime | None = None) -> bool:
        """Past ``date_offer_ends`` the offer is over, so the session cannot be handed out again."""
        return self.date_offer_ends is None or (now or utcnow()) < self.date_offer_ends


class GuestSession(_Frozen):
    """Genesys ids of a guest session. Never the guest JWT or the web messaging session token."""

    protocol: Literal["webmessaging", "guestchat"]
    deployment_id: str = Field(min_length=1)
    conversation_id: str | None = None
    member_id: str | None = Field(default=None, description="Guest Chat: the guest's member id.")
    created_at: AwareDatetime = Field(default_factory=utcnow)


class CacheTTLs(_Frozen):
    conversation: timedelta = Field(default=timedelta(days=1), gt=timedelta(0))
    # Upper bound: date_offer_ends cuts it shorter.
    cobrowse: timedelta = Field(default=timedelta(hours=1), gt=timedelta(0))
    # Web messaging sessions live 72 h after their last message by default.
    guest: timedelta = Field(default=timedelta(hours=72), gt=timedelta(0))
    # Idle time after which a key's fencing counter may be dropped (see parley.leases).
    fence: timedelta = Field(default=timedelta(days=30), gt=timedelta(0))
    # An ended conversation stays ended; the mark only explains later 404s, a week covers the retries.
    ended: timedelta = Field(default=timedelta(days=7), gt=timedelta(0))


# --- Lua -----------------------------------------------------------------------------------------------

# KEYS: live entry, reverse index, cobrowse. ARGV: conversation id. The live entry goes only if it still
# names that conversation: a newer conversation cached meanwhile for the same customer stays. An
# unreadable entry goes too (a read would treat it as a miss anyway).
_CONTRADICT = """
local removed = 0
local live = redis.call('GET', KEYS[1])
if live then
  local ok, entry = pcall(cjson.decode, live)
  if not ok or type(entry) ~= 'table' or entry['conversation_id'] == ARGV[1] then
    removed = redis.call('DEL', KEYS[1])
  end
end
redis.call('DEL', KEYS[2], KEYS[3])
return removed
"""


M = TypeVar("M", bound=BaseModel)


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


class StateCache:
    """Typed get/put/invalidate over Redis for the three kinds of session, plus leases."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        ttls: CacheTTLs | None = None,
        clock: Clock = utcnow,
        poll_s: float = 0.05,
    ) -> None:
        self.redis = client
        self.ttls = ttls or CacheTTLs()
        self._clock = clock
        self._poll_s = poll_s
        self._contradict = client.register_script(_CONTRADICT)

    # --- (a) the customer's live conversation ------------------------------------------------------------

    def get_conversation(self, key: CustomerKey) -> LiveConversation | None:
        return self._load(keys.live_conversation(key.ident()), LiveConversation)

    def put_conversation(self, key: CustomerKey, live: LiveConversation,
                         pipe: redis.client.Pipeline | None = None) -> None:
        """Remember (or re-confirm, with a new ``checked_at``) the customer's live conversation.

        With ``pipe``, the writes join that transaction (the caller executes it).
        """
        ttl = _ms(self.ttls.conversation)
        own = pipe is None
        pipe = self.redis.pipeline(transaction=True) if pipe is None else pipe
        pipe.set(keys.live_conversation(key.ident()), live.model_dump_json(), px=ttl)
        pipe.set(keys.conversation_customer(live.conversation_id), key.ident(), px=ttl)
        if own:
            pipe.execute()

    def invalidate_conversation(self, key: CustomerKey) -> bool:
        return bool(self.redis.delete(keys.live_conversation(key.ident())))

    def contradicted(self, conversation_id: str, key: CustomerKey | None = None) -> bool:
        """Genesys says ``conversation_id`` is over (ended, 404): forget every entry naming it.

        Drops the live-conversation entry that still points at it (found through ``key`` or the
        reverse index) and the conversation's cobrowse. True if a live-conversation entry went.
        """
        ident = key.ident() if key is not None else self.redis.get(keys.conversation_customer(conversation_id))
        reverse, cobrowse = keys.conversation_customer(conversation_id), keys.live_cobrowse(conversation_id)
        if ident is None:
            self.redis.delete(reverse, cobrowse)
            return False
        live = keys.live_conversation(_text(ident))
        return bool(self._contradict(keys=[live, reverse, cobrowse], args=[conversation_id]))

    # --- (b) one live cobrowse per conversation ------------------------------------------------------------

    def get_cobrowse(self, conversation_id: str) -> CobrowseSession | None:
        """The conversation's cobrowse, or None if there is none or its offer has ended."""
        session = self._load(keys.live_cobrowse(conversation_id), CobrowseSession)
        if session is None or not session.is_live(self._clock()):
            return None
        return session

    def put_cobrowse(self, session: CobrowseSession) -> bool:
        """Remember the live cobrowse until its offer ends; False (nothing stored) if it already has."""
        ttl = self.ttls.cobrowse
        if session.date_offer_ends is not None:
            ttl = min(ttl, session.date_offer_ends - self._clock())
        if ttl <= timedelta(0):
            return False
        self.redis.set(keys.live_cobrowse(session.conversation_id), session.model_dump_json(), px=_ms(ttl))
        return True

    def invalidate_cobrowse(self, conversation_id: str) -> bool:
        return bool(self.redis.delete(keys.live_cobrowse(conversation_id)))

    # --- (c) guest sessions ------------------------------------------------------------------------------

    def get_guest(self, key: GuestKey) -> GuestSession | None:
        return self._load(keys.guest_ids(key.ident()), GuestSession)

    def put_guest(self, key: GuestKey, session: GuestSession) -> None:
        self.redis.set(keys.guest_ids(key.ident()), session.model_dump_json(), px=_ms(self.ttls.guest))

    def invalidate_guest(self, key: GuestKey) -> bool:
        return bool(self.redis.delete(keys.guest_ids(key.ident())))

    # --- (d) conversations seen ended ---------------------------------------------------------------------

    def mark_ended(self, conversation_id: str, pipe: redis.client.Pipeline | None = None) -> None:
        """Parley ended ``conversation_id`` or read it ended; with ``pipe``, the write joins that transaction."""
        (pipe if pipe is not None else self.redis).set(keys.ended_conversation(conversation_id), "1",
                                                        px=_ms(self.ttls.ended))

    def ended(self, conversation_id: str) -> bool:
        return bool(self.redis.exists(keys.ended_conversation(conversation_id)))

    # --- (e) leases ---------------------------------------------------------------------------------------

    def try_lease(self, subject: Subject, ttl_ms: int) -> Lease | None:
        """Take the lease on ``subject`` if it is free; never waits."""
        namespace, ident = subject.namespace, subject.ident()
        return leases.try_fenced(self.redis, keys.natural_lease(namespace, ident), keys.natural_fence(namespace, ident),
                                 ttl_ms, fence_ttl_ms=_ms(self.ttls.fence),
                                 clock_ms=int(self._clock().timestamp() * 1000))

    def lease(self, subject: Subject, ttl_ms: int, *, timeout_s: float = 10.0) -> Lease:
        """Take the lease on ``subject``, waiting up to ``timeout_s``; use it as a context manager.

        Raises :class:`LeaseTimeout` if it stays taken. ``ttl_ms`` must outlast the work, or the work
        must :meth:`Lease.extend` it (about every ttl/3) and stop when that raises :class:`LeaseLost`.
        """
        return leases.wait_for(lambda: self.try_lease(subject, ttl_ms), timeout_s=timeout_s, poll_s=self._poll_s,
                               what=f"{subject.namespace} lease")

    # --- internals ----------------------------------------------------------------------------------------

    def _load(self, key: str, model: type[M]) -> M | None:
        raw = self.redis.get(key)
        if raw is None:
            return None
        try:
            return model.model_validate_json(raw)
        except ValidationError:
            # Written by another Parley version, or damaged: a miss is safe because Genesys is the
            # source of truth; removing it (only if unchanged) lets the next put heal the key.
            leases.delete_if_equal(self.redis, key, raw)
            return None

