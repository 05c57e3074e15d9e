"""The kombu transport Parley's Celery app uses: stock Redis transport, one reused client per pool."""

from __future__ import annotations

from kombu import Connection

from parley.settings import Settings
from tasks.app import make_config
from tasks.transport import TRANSPORT, Channel


def test_the_celery_app_selects_the_transport(redis_url: str) -> None:
    config = make_config(Settings(redis_url=redis_url))
    with Connection(config["broker_url"], transport=config["broker_transport"]) as conn:
        assert isinstance(conn.default_channel, Channel)


def test_one_client_serves_every_synchronous_call_until_the_pool_is_dropped(redis_url: str) -> None:
    with Connection(redis_url, transport=TRANSPORT) as conn:
        channel = conn.default_channel
        with channel.conn_or_acquire() as first, channel.conn_or_acquire() as second:
            assert first is second
        channel._disconnect_pools()  # what kombu does after a connection error
        with channel.conn_or_acquire() as after:
            assert after is not first
            assert after.connection_pool is channel.pool
            assert after.ping()


def test_messages_round_trip_through_the_transport(redis_url: str) -> None:
    with Connection(redis_url, transport=TRANSPORT) as conn:
        queue = conn.SimpleQueue("parley.test.transport")
        queue.put({"n": 1})
        queue.put({"n": 2})
        got = [queue.get(timeout=5) for _ in range(2)]
        for message in got:
            message.ack()
        assert [m.payload["n"] for m in got] == [1, 2]
        with conn.default_channel.conn_or_acquire() as client:
            assert client.llen("parley.test.transport") == 0 and not client.hlen("unacked")
        queue.close()
