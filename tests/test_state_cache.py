"""The state cache: live conversations, cobrowse, guest sessions, and leases with fencing tokens.

Logic runs on fakeredis; the Lua scripts and the lease also run on the real redis-server, where 50
threads contend for one customer's lease and real key expiry is awaited through keyspace events.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import fakeredis
import pytest
import redis
from pydantic import ValidationError

from parley import keys
from parley.state_cache import (
    CacheTTLs,
    CobrowseSession,
    ConversationKey,
    CustomerKey,
    GuestKey,
    GuestSession,
    LeaseLost,
    LeaseTimeout,
    LiveConversation,
    StateCache,
)

T0 = datetime(2026, 5, 14, 10, 0, tzinfo=UTC)
PHONE = "+14155550100"
CONTACT = "5d1f7a1e-contact"
SESSION_KEY = "crm-session-42"


class Clock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=[False, True], ids=["bytes", "str"])
def fake(request: pytest.FixtureRequest) -> Iterator[redis.Redis]:
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=request.param)
    yield client
    client.close()


@pytest.fixture
def cache(fake: redis.Redis, clock: Clock) -> StateCache:
    return StateCache(fake, clock=clock, poll_s=0.005)


@pytest.fixture(params=["fakeredis", "redis-server"])
def any_cache(request: pytest.FixtureRequest, clock: Clock) -> StateCache:
    """For what the Lua scripts do: run it on fakeredis and on the real server."""
    if request.param == "fakeredis":
        client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    else:
        client = request.getfixturevalue("redis_client")
    return StateCache(client, clock=clock, poll_s=0.005)


def sms_customer(org: str = "default") -> CustomerKey:
    return CustomerKey.for_message(org=org, channel="sms", from_address="+14155550199", to_address=PHONE)


def webmessaging_customer() -> CustomerKey:
    return CustomerKey.for_message(
        org="default", channel="webmessaging", from_address="deployment-1", external_contact_id=CONTACT
    )


def cobrowse(
    conversation_id: str = "conv-1", offer_ends: datetime | None = T0 + timedelta(minutes=10)
) -> CobrowseSession:
    return CobrowseSession(
        conversation_id=conversation_id,
        cobrowse_session_id="cb-1",
        join_code="123456",
        websocket_url="wss://cobrowse.example/ws",
        date_offer_ends=offer_ends,
        created_at=T0,
    )


def ttl_s(client: redis.Redis, key: str) -> float:
    return client.pttl(key) / 1000


# --- natural keys -----------------------------------------------------------------------------------------


def test_customer_key_names_webmessaging_customers_by_external_contact() -> None:
    assert webmessaging_customer().recipient == CONTACT
    assert sms_customer().recipient == PHONE
    with pytest.raises(ValueError, match="to_address or external_contact_id"):
        CustomerKey.for_message(org="default", channel="webmessaging", from_address="deployment-1")


def test_idents_are_stable_distinct_and_hide_addresses() -> None:
    assert sms_customer().ident() == sms_customer().ident()
    assert sms_customer("default").ident() != sms_customer("other-org").ident()
    assert PHONE not in sms_customer().ident()
    assert PHONE not in keys.live_conversation(sms_customer().ident())
    assert SESSION_KEY not in keys.guest_ids(GuestKey(org="default", session_key=SESSION_KEY).ident())
    assert keys.live_cobrowse("conv-1") == "parley:state:cobrowse:conv-1"


def test_lease_keys_of_different_kinds_never_collide() -> None:
    subjects = (ConversationKey(conversation_id="x"), GuestKey(org="default", session_key="x"), sms_customer())
    names = {keys.natural_lease(subject.namespace, subject.ident()) for subject in subjects}
    assert len(names) == 3


# --- (a) live conversation per customer -------------------------------------------------------------------


def test_live_conversation_round_trip(cache: StateCache) -> None:
    key = webmessaging_customer()
    assert cache.get_conversation(key) is None
    live = LiveConversation(conversation_id="conv-1", communication_id="comm-1", checked_at=T0)
    cache.put_conversation(key, live)
    assert cache.get_conversation(key) == live
    assert cache.get_conversation(sms_customer()) is None


def test_live_conversation_and_reverse_index_expire(cache: StateCache, fake: redis.Redis) -> None:
    key = sms_customer()
    cache.put_conversation(key, LiveConversation(conversation_id="conv-1"))
    for name in (keys.live_conversation(key.ident()), keys.conversation_customer("conv-1")):
        assert 86_000 < ttl_s(fake, name) <= 86_400


def test_freshness_by_checked_at(cache: StateCache, clock: Clock) -> None:
    key = sms_customer()
    cache.put_conversation(key, LiveConversation(conversation_id="conv-1", checked_at=clock()))
    entry = cache.get_conversation(key)
    assert entry is not None
    assert not entry.is_stale(timedelta(minutes=5), now=clock.now + timedelta(minutes=5))
    assert entry.is_stale(timedelta(minutes=5), now=clock.now + timedelta(minutes=5, seconds=1))
    # Confirming it with Genesys again is a put with a new checked_at.
    cache.put_conversation(key, entry.model_copy(update={"checked_at": clock.now + timedelta(hours=1)}))
    refreshed = cache.get_conversation(key)
    assert refreshed is not None
    assert not refreshed.is_stale(timedelta(minutes=5), now=clock.now + timedelta(hours=1, minutes=1))


def test_checked_at_must_carry_a_time_zone() -> None:
    with pytest.raises(ValidationError):
        LiveConversation(conversation_id="c", checked_at=datetime(2026, 5, 14, 10, 0))


def test_invalidate_conversation(cache: StateCache) -> None:
    key = sms_customer()
    cache.put_conversation(key, LiveConversation(conversation_id="conv-1"))
    assert cache.invalidate_conversation(key) is True
    assert cache.get_conversation(key) is None
    assert cache.invalidate_conversation(key) is False


def test_contradicted_conversation_is_forgotten_with_its_cobrowse(any_cache: StateCache) -> None:
    key = webmessaging_customer()
    any_cache.put_conversation(key, LiveConversation(conversation_id="conv-1"))
    assert any_cache.put_cobrowse(cobrowse("conv-1"))
    assert any_cache.contradicted("conv-1") is True
    assert any_cache.get_conversation(key) is None
    assert any_cache.get_cobrowse("conv-1") is None
    assert any_cache.redis.exists(keys.conversation_customer("conv-1")) == 0


def test_contradiction_of_an_old_conversation_keeps_the_newer_one(any_cache: StateCache) -> None:
    key = webmessaging_customer()
    any_cache.put_conversation(key, LiveConversation(conversation_id="conv-old"))
    any_cache.put_conversation(key, LiveConversation(conversation_id="conv-new"))
    assert any_cache.contradicted("conv-old") is False
    entry = any_cache.get_conversation(key)
    assert entry is not None
    assert entry.conversation_id == "conv-new"


def test_contradicted_with_the_key_needs_no_reverse_index(cache: StateCache) -> None:
    key = sms_customer()
    cache.put_conversation(key, LiveConversation(conversation_id="conv-1"))
    cache.redis.delete(keys.conversation_customer("conv-1"))
    assert cache.contradicted("conv-1") is False  # nothing points back at the customer
    assert cache.get_conversation(key) is not None
    assert cache.contradicted("conv-1", key) is True
    assert cache.get_conversation(key) is None


def test_contradicted_unknown_conversation_still_drops_its_cobrowse(cache: StateCache) -> None:
    cache.put_cobrowse(cobrowse("conv-9"))
    assert cache.contradicted("conv-9") is False
    assert cache.get_cobrowse("conv-9") is None


def test_contradicting_an_unreadable_entry_removes_it(any_cache: StateCache) -> None:
    key = sms_customer()
    any_cache.put_conversation(key, LiveConversation(conversation_id="conv-1"))
    any_cache.redis.set(keys.live_conversation(key.ident()), "not json", px=60_000)
    assert any_cache.contradicted("conv-1") is True
    assert any_cache.redis.exists(keys.live_conversation(key.ident())) == 0


def test_unreadable_entry_is_a_miss_and_is_removed(cache: StateCache) -> None:
    key = sms_customer()
    name = keys.live_conversation(key.ident())
    cache.redis.set(name, '{"conversation_id": 42, "unexpected": true}', px=60_000)
    assert cache.get_conversation(key) is None
    assert cache.redis.exists(name) == 0


# --- (b) one live cobrowse per conversation ---------------------------------------------------------------


def test_cobrowse_round_trip_lives_until_its_offer_ends(cache: StateCache, clock: Clock) -> None:
    session = cobrowse("conv-1", offer_ends=T0 + timedelta(minutes=10))
    assert cache.put_cobrowse(session) is True
    assert cache.get_cobrowse("conv-1") == session
    assert 590 < ttl_s(cache.redis, keys.live_cobrowse("conv-1")) <= 600
    clock.advance(timedelta(minutes=10))
    assert cache.get_cobrowse("conv-1") is None  # stale entry past date_offer_ends is not live


def test_cobrowse_whose_offer_already_ended_is_not_stored(cache: StateCache) -> None:
    assert cache.put_cobrowse(cobrowse(offer_ends=T0 - timedelta(seconds=1))) is False
    assert cache.redis.exists(keys.live_cobrowse("conv-1")) == 0


def test_cobrowse_without_offer_end_uses_the_cobrowse_ttl(fake: redis.Redis, clock: Clock) -> None:
    cache = StateCache(fake, clock=clock, ttls=CacheTTLs(cobrowse=timedelta(minutes=2)))
    assert cache.put_cobrowse(cobrowse(offer_ends=None))
    assert 110 < ttl_s(fake, keys.live_cobrowse("conv-1")) <= 120
    # The TTL also caps a far-away offer end.
    assert cache.put_cobrowse(cobrowse(offer_ends=T0 + timedelta(days=3)))
    assert ttl_s(fake, keys.live_cobrowse("conv-1")) <= 120


def test_second_cobrowse_of_a_conversation_replaces_the_first(cache: StateCache) -> None:
    cache.put_cobrowse(cobrowse("conv-1"))
    second = cobrowse("conv-1").model_copy(update={"cobrowse_session_id": "cb-2", "join_code": "654321"})
    cache.put_cobrowse(second)
    assert cache.get_cobrowse("conv-1") == second
    assert cache.invalidate_cobrowse("conv-1") is True
    assert cache.get_cobrowse("conv-1") is None


# --- (c) guest sessions -----------------------------------------------------------------------------------


def test_guest_session_round_trip(cache: StateCache) -> None:
    key = GuestKey(org="default", session_key=SESSION_KEY)
    session = GuestSession(protocol="guestchat", deployment_id="dep-1", conversation_id="c1", member_id="m1")
    cache.put_guest(key, session)
    assert cache.get_guest(key) == session
    assert cache.get_guest(GuestKey(org="other", session_key=SESSION_KEY)) is None
    assert 259_000 < ttl_s(cache.redis, keys.guest_ids(key.ident())) <= 259_200
    assert cache.invalidate_guest(key) is True
    assert cache.get_guest(key) is None


def test_guest_session_refuses_credentials() -> None:
    with pytest.raises(ValidationError):
        GuestSession(protocol="guestchat", deployment_id="dep-1", jwt="eyJ...")  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        GuestSession(protocol="webmessaging", deployment_id="dep-1", token="uuid")  # type: ignore[call-arg]


# --- hygiene: TTLs and no customer data -------------------------------------------------------------------


def test_every_key_has_a_ttl_and_no_customer_data(cache: StateCache) -> None:
    customer = sms_customer()
    cache.put_conversation(customer, LiveConversation(conversation_id="conv-1"))
    cache.put_cobrowse(cobrowse("conv-1"))
    cache.put_guest(GuestKey(org="default", session_key=SESSION_KEY), GuestSession(
        protocol="webmessaging", deployment_id="dep-1"
    ))
    with cache.lease(customer, 5_000):
        pass
    names = [k.decode() if isinstance(k, bytes) else k for k in cache.redis.keys("*")]
    assert len(names) == 5  # live, reverse index, cobrowse, guest, fencing counter (lease released)
    for name in names:
        assert cache.redis.pttl(name) > 0, name
        value = str(cache.redis.get(name))
        for secret in (PHONE, SESSION_KEY):
            assert secret not in name
            assert secret not in value


# --- (d) leases -------------------------------------------------------------------------------------------


def test_lease_is_exclusive_and_tokens_rise(any_cache: StateCache) -> None:
    key = sms_customer()
    first = any_cache.try_lease(key, 5_000)
    assert first is not None
    assert first.held()
    assert any_cache.try_lease(key, 5_000) is None
    assert any_cache.try_lease(ConversationKey(conversation_id="conv-1"), 5_000) is not None  # other key
    assert first.release() is True
    second = any_cache.try_lease(key, 5_000)
    assert second is not None
    assert second.token > first.token
    # The token stored in Redis is exactly the one handed out (no float formatting in Lua).
    assert int(any_cache.redis.get(second.key)) == second.token


def test_lease_and_its_fencing_counter_have_ttls(cache: StateCache) -> None:
    key = sms_customer()
    lease = cache.try_lease(key, 3_000)
    assert lease is not None
    assert 0 < cache.redis.pttl(lease.key) <= 3_000
    assert 29 * 86_400 < ttl_s(cache.redis, keys.natural_fence(key.namespace, key.ident())) <= 30 * 86_400


def test_extend_resets_the_ttl(cache: StateCache) -> None:
    lease = cache.try_lease(sms_customer(), 1_000)
    assert lease is not None
    lease.extend(60_000)
    assert 59_000 < cache.redis.pttl(lease.key) <= 60_000
    lease.extend()
    assert cache.redis.pttl(lease.key) <= 1_000


def test_a_holder_that_lost_its_lease_finds_out(any_cache: StateCache) -> None:
    key = sms_customer()
    stalled = any_cache.try_lease(key, 5_000)
    assert stalled is not None
    any_cache.redis.delete(stalled.key)  # stands in for the TTL running out while the holder stalled
    successor = any_cache.try_lease(key, 5_000)
    assert successor is not None
    assert successor.token > stalled.token  # the fencing token tells who is newer
    assert not stalled.held()
    with pytest.raises(LeaseLost):
        stalled.ensure()
    with pytest.raises(LeaseLost):
        stalled.extend()
    assert stalled.release() is False
    assert successor.held()  # the stalled holder's release did not free the successor's lease
    successor.ensure()


def test_context_manager_releases_and_reports_a_lost_lease(cache: StateCache) -> None:
    key = sms_customer()
    with cache.lease(key, 5_000) as lease:
        assert lease.held()
    assert cache.try_lease(key, 5_000) is not None  # released on exit

    cache.redis.delete(keys.natural_lease(key.namespace, key.ident()))
    with pytest.raises(LeaseLost), cache.lease(key, 5_000) as lease:
        cache.redis.delete(lease.key)


def test_a_lost_lease_never_masks_the_error_in_flight(cache: StateCache) -> None:
    with pytest.raises(KeyError), cache.lease(sms_customer(), 5_000) as lease:
        cache.redis.delete(lease.key)
        raise KeyError("the real failure")


def test_blocking_lease_times_out_while_taken(cache: StateCache) -> None:
    key = sms_customer()
    assert cache.try_lease(key, 60_000) is not None
    with pytest.raises(LeaseTimeout):
        cache.lease(key, 1_000, timeout_s=0.05)


def test_blocking_lease_is_granted_when_the_holder_releases(cache: StateCache) -> None:
    key = sms_customer()
    holder = cache.try_lease(key, 60_000)
    assert holder is not None
    waiting = threading.Event()
    tokens: list[int] = []

    def wait_for_it() -> None:
        waiting.set()
        with cache.lease(key, 5_000, timeout_s=30) as lease:
            tokens.append(lease.token)

    waiter = threading.Thread(target=wait_for_it)
    waiter.start()
    assert waiting.wait(5)
    assert tokens == []
    holder.release()
    waiter.join(30)
    assert tokens and tokens[0] > holder.token


def test_tokens_keep_rising_after_the_fencing_counter_expired(cache: StateCache, clock: Clock) -> None:
    key = sms_customer()
    first = cache.try_lease(key, 1_000)
    assert first is not None
    first.release()
    # The counter outlives every lease by its own TTL; after that idle spell it may be gone.
    clock.advance(timedelta(days=31))
    cache.redis.delete(keys.natural_fence(key.namespace, key.ident()))
    later = cache.try_lease(key, 1_000)
    assert later is not None
    assert later.token > first.token


def test_lease_ttl_must_be_positive(cache: StateCache) -> None:
    with pytest.raises(ValueError, match="ttl_ms"):
        cache.try_lease(sms_customer(), 0)


@pytest.mark.integration
def test_fifty_threads_contending_for_one_customer_never_overlap(redis_client: redis.Redis) -> None:
    cache = StateCache(redis_client, poll_s=0.005)
    key = webmessaging_customer()
    threads, start = 50, threading.Barrier(50)
    tokens: list[int] = []
    overlaps: list[int] = []
    errors: list[BaseException] = []

    def command() -> None:
        try:
            start.wait()
            with cache.lease(key, 10_000, timeout_s=120) as lease:
                inside = redis_client.incr("test:inside")
                if inside != 1:
                    overlaps.append(inside)
                # A read-modify-write that loses updates unless the lease serializes it.
                count = int(redis_client.get("test:counter") or 0)
                lease.ensure()
                redis_client.set("test:counter", count + 1)
                tokens.append(lease.token)
                redis_client.decr("test:inside")
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=command) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(180)
    assert errors == []
    assert overlaps == []
    assert int(redis_client.get("test:counter")) == threads
    assert len(tokens) == threads
    assert tokens == sorted(tokens)  # recorded in holding order: each holder's token beats the last
    assert len(set(tokens)) == threads


@pytest.mark.integration
def test_real_expiry_hands_the_lease_on(redis_client: redis.Redis) -> None:
    cache = StateCache(redis_client)
    key = ConversationKey(conversation_id="conv-1")
    redis_client.config_set("notify-keyspace-events", "Ex")
    pubsub = redis_client.pubsub()
    try:
        pubsub.subscribe("__keyevent@0__:expired")
        assert pubsub.get_message(timeout=5)["type"] == "subscribe"
        stalled = cache.try_lease(key, 50)
        assert stalled is not None
        # Await Redis' own expiry event for the lease key rather than sleeping past the TTL.
        message = pubsub.get_message(timeout=10)
        while message is not None and message["data"] != stalled.key:
            message = pubsub.get_message(timeout=10)
        assert message is not None, "the lease never expired"
        assert not stalled.held()
        successor = cache.try_lease(key, 5_000)
        assert successor is not None
        assert successor.token > stalled.token
        with pytest.raises(LeaseLost):
            stalled.extend()
        assert stalled.release() is False
        assert successor.held()
    finally:
        pubsub.close()
        redis_client.config_set("notify-keyspace-events", "")


def test_release_in_a_transaction_frees_the_lease_but_spares_a_later_holder(any_cache: StateCache) -> None:
    key = sms_customer()
    lease = any_cache.try_lease(key, 5_000)
    assert lease is not None
    with any_cache.redis.pipeline(transaction=True) as pipe:
        any_cache.put_conversation(key, LiveConversation(conversation_id="c-1"), pipe)
        lease.release_in(pipe)
        pipe.execute()
    assert any_cache.get_conversation(key) is not None
    later = any_cache.try_lease(key, 5_000)  # free again
    assert later is not None
    with any_cache.redis.pipeline(transaction=True) as pipe:
        lease.release_in(pipe)  # the first holder's release comes late: the later holder keeps it
        pipe.execute()
    assert later.held()
