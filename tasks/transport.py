"""kombu's Redis transport, with one reusable Redis client per channel.

Stock kombu builds a new ``redis.Redis`` for every synchronous operation: each publish, each
task event and each ack (``Channel.conn_or_acquire``). Building one fills its response-callback
table, about a fifth of the CPU the ingest worker spent per command and a sizeable part of the
Celery worker's bookkeeping (measured with bench/bench_pipeline.py). The client is only a handle on
the channel's connection pool and is thread-safe, so one per pool does the same work. When kombu
drops its pools after a connection error, the next call sees a new pool and builds a new client.
"""

from __future__ import annotations

import redis
from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):
    _reused_client: redis.Redis | None = None

    def _create_client(self, asynchronous: bool = False) -> redis.Redis:
        if asynchronous:  # the consumer's own BRPOP connection: kombu keeps it, leave it as it is
            return super()._create_client(asynchronous=True)
        pool = self.pool
        client = self._reused_client
        if client is None or client.connection_pool is not pool:
            client = self._reused_client = super()._create_client()
        return client


class Transport(kombu_redis.Transport):
    Channel = Channel


TRANSPORT = f"{__name__}:Transport"
"""The ``broker_transport`` setting that selects this transport for a ``redis://`` broker URL."""
