"""The lease rules on their own: token-checked extend and release, with and without a fencing counter.
(The fenced lease under contention is tested through the state cache, tests/test_state_cache.py.)"""

from __future__ import annotations

import fakeredis
import pytest

from parley.leases import Lease, LeaseLost, delete_if_equal, try_fenced


@pytest.fixture
def client() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)


def test_a_lease_is_extended_and_released_only_by_its_token(client: fakeredis.FakeRedis) -> None:
    client.set("lease", "mine", px=1_000)
    lease = Lease(client, "lease", "mine", 60_000)
    lease.extend()
    assert client.pttl("lease") > 1_000
    client.set("lease", "theirs", px=1_000)
    with pytest.raises(LeaseLost):
        lease.extend()
    assert not lease.release()
    assert client.get("lease") == "theirs"


def test_fencing_tokens_rise_across_holders_and_their_counter_lives_with_the_lease(
        client: fakeredis.FakeRedis) -> None:
    first = try_fenced(client, "lease", "fence", 1_000, fence_ttl_ms=5_000, clock_ms=100)
    assert first is not None and first.token == 101
    assert try_fenced(client, "lease", "fence", 1_000, fence_ttl_ms=5_000, clock_ms=100) is None
    first.extend(2_000)
    assert client.pttl("fence") > 2_000
    assert first.release()
    second = try_fenced(client, "lease", "fence", 1_000, fence_ttl_ms=5_000, clock_ms=100)
    assert second is not None and second.token == 102


def test_delete_if_equal_leaves_a_newer_value_alone(client: fakeredis.FakeRedis) -> None:
    client.set("k", "new")
    assert not delete_if_equal(client, "k", "old")
    assert delete_if_equal(client, "k", "new")
    assert not client.exists("k")
