"""`parley health`: a component on this host counts as healthy only while its reading loop beats."""

from __future__ import annotations

import pytest
import redis

from parley.app.health import check


@pytest.mark.parametrize("component", ["ingest", "guest", "webhook"])
def test_healthy_while_this_hosts_loop_beats(redis_client: redis.Redis, component: str) -> None:
    assert not check(component, redis_client, host="box1").ok  # nothing has beaten yet
    redis_client.set(f"parley:heartbeat:{component}:box1-12-abcdef", "1", ex=10)
    assert check(component, redis_client, host="box1").ok
    assert not check(component, redis_client, host="box2").ok  # another host's worker does not count
    redis_client.delete(f"parley:heartbeat:{component}:box1-12-abcdef")  # stuck: the TTL ran out
    assert not check(component, redis_client, host="box1").ok
