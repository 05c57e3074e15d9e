"""kombu's Redis transport, with one reusable Redis client per channel, that rides out Redis restarts.

Stock kombu builds a new ``redis.Redis`` for every synchronous operation: each publish, each
task event and each ack (``Channel.conn_or_acquire``). Building one fills its response-callback
table, about a fifth of the CPU the ingest worker spent per command and a sizeable part of the
Celery worker's bookkeeping (measured with bench/bench_pipeline.py). The client is only a handle on
the channel's connection pool and is thread-safe, so one per pool does the same work. When kombu
drops its pools after a connection error, the next call sees a new pool and builds a new client.

A Redis restart must not end the worker, nor park the messages it held until the visibility
timeout. On a lost connection Celery closes the consumer's channel twice (``collect()``, then
``close()`` once it has dropped the transport's client), and closing a channel puts the unacked
messages it holds back in their queue. Redis is down at that moment, so stock kombu 5.7 (a) fails
that restore, leaving the messages in the unacked hash for the visibility timeout, and (b) if the
first close stopped early (a BRPOP was in flight: its read raises), runs the restore in the second
close, where ``_connparams`` dereferences the dropped client: an AttributeError, not a connection
error, so Celery treats it as unrecoverable and the worker exits. Here a channel without its
connection raises a connection error, a restore that cannot reach Redis keeps the delivery tags,
and the next channel that reaches Redis restores them (``restore_by_tag`` is one transaction and
does nothing for a tag already acked or restored, so restoring late or twice loses and doubles nothing).

Through Redis Sentinel (``PARLEY_REDIS_SENTINELS``) the same channel behaviour sits on kombu's
``SentinelChannel`` (:data:`SENTINEL_TRANSPORT`, chosen by :func:`celery_broker`): its
pools ask the Sentinels for the master on every new connection, and its connections are Parley's
(:class:`parley.connections.SentinelConnection`), which drop a connection to a master a failover left behind
at its first READONLY or NOREPLICAS instead of failing the command, so the call is retried on the new master.
The visibility timeout, restore interval and the rest of the transport options are the same either way.
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Any
from urllib.parse import urlsplit

import redis
from kombu.transport import redis as kombu_redis

from parley import connections
from parley.connections import SentinelConnection, SentinelSSLConnection
from parley.settings import Settings

log = logging.getLogger(__name__)

CONNECTION_ERRORS: tuple[type[BaseException], ...] = kombu_redis.Transport.connection_errors

# Delivery tags a closing channel could not restore, by (unacked hash, unacked index). Process-wide: Celery
# reconnects with a new connection, transport and channels. An insertion-ordered dict is an ordered set.
_unrestored: dict[tuple[str, str], dict[str, None]] = {}
os.register_at_fork(after_in_child=_unrestored.clear)  # a pool child holds none of its parent's messages


class QoS(kombu_redis.QoS):
    def _keys(self) -> tuple[str, str]:
        return self.unacked_key, self.unacked_index_key

    def restore_unacked(self, client: redis.Redis | None = None) -> None:
        """kombu's restore of every message the channel holds, one tag at a time, so that on a connection
        error the tags not yet restored (and only those) are kept for the next channel that reaches Redis."""
        delivered = self._delivered
        try:
            with self.channel.conn_or_acquire(client) as client:
                while delivered:
                    tag = next(iter(delivered))
                    self.restore_by_tag(tag, client=client)
                    del delivered[tag]
        except CONNECTION_ERRORS as exc:
            # The messages stay in Redis's unacked hash (AOF keeps it across a restart): their tags suffice.
            _unrestored.setdefault(self._keys(), {}).update(dict.fromkeys(delivered))
            log.warning("Redis unreachable (%r): %d unacknowledged message(s) will be restored on reconnect",
                        exc, len(delivered))
            delivered.clear()  # kombu asserts it is empty once restored

    def restore_unrestored(self) -> None:
        """Put back what a closed channel could not; on a connection error the rest stays for the next try."""
        pending = _unrestored.get(self._keys())
        while pending:
            tag = next(iter(pending))
            self.restore_by_tag(tag)
            pending.pop(tag, None)

    def restore_visible(self, *args: Any, **kwargs: Any) -> None:
        # Called every unacked_restore_interval on the consumer's event loop (its connection errors are
        # caught there): retries a restore the reconnect itself could not finish.
        self.restore_unrestored()
        super().restore_visible(*args, **kwargs)


class _ParleyChannel:
    """What Parley changes in a kombu Redis channel, plain or Sentinel: mixed in before kombu's class."""

    QoS = QoS
    _reused_client: redis.Redis | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # pings Redis: it answers now
        if _unrestored:
            with contextlib.suppress(*CONNECTION_ERRORS):  # gone again: QoS.restore_visible retries
                self.qos.restore_unrestored()

    def _get_pool(self, asynchronous: bool = False) -> redis.ConnectionPool:
        transport = self.connection
        if transport is None or transport.client is None:
            # Closed, or closed again after Celery dropped the connection: say so with an error every
            # caller handles (ack_log_error, ignore_errors, ...) instead of kombu's AttributeError.
            raise redis.ConnectionError("this channel's broker connection is closed")
        return super()._get_pool(asynchronous)

    def _create_client(self, asynchronous: bool = False) -> redis.Redis:
        if asynchronous:  # the consumer's own BRPOP connection: kombu keeps it, leave it as it is
            return super()._create_client(asynchronous=True)
        pool = self.pool
        client = self._reused_client
        if client is None or client.connection_pool is not pool:
            client = self._reused_client = super()._create_client()
        return client


class Channel(_ParleyChannel, kombu_redis.Channel):
    pass


class SentinelChannel(_ParleyChannel, kombu_redis.SentinelChannel):
    connection_class = SentinelConnection
    connection_class_ssl = SentinelSSLConnection


class Transport(kombu_redis.Transport):
    Channel = Channel


class SentinelTransport(kombu_redis.SentinelTransport):
    Channel = SentinelChannel


TRANSPORT = f"{__name__}:Transport"
"""The ``broker_transport`` setting that selects this transport for a ``redis://`` broker URL."""
SENTINEL_TRANSPORT = f"{__name__}:SentinelTransport"
"""The ``broker_transport`` setting for a ``sentinel://`` broker URL (Redis Sentinel)."""


def celery_broker(settings: Settings) -> dict[str, Any]:
    """The Celery settings that choose the broker: URL, transport (Parley's, see :mod:`tasks.transport`),
    TLS, and for Sentinel the transport options naming the master and the Sentinels' login (merged into
    the visibility-timeout options by the caller, so those stay the same in all three places)."""
    if not connections.configured(settings):  # the app imported with no Redis set (kombu's default until a URL is)
        return {"broker_url": None, "broker_transport": TRANSPORT, "transport_options": {}}
    t = connections.target(settings)
    config: dict[str, Any] = {"broker_url": t.url, "broker_transport": TRANSPORT, "transport_options": {}}
    if t.uses_tls:
        config["broker_use_ssl"] = {k: v for k, v in t.tls.items() if v is not None}
    if t.uses_sentinel:
        parts = urlsplit(t.url)
        login = parts.netloc.rpartition("@")[0]
        login = f"{login}@" if login else ""
        # kombu reads every Sentinel from the list, and the master's login and db from the URL it is on: after
        # a connection error it moves on to the next one, so each carries them.
        config["broker_url"] = ";".join(f"sentinel://{login}{h}:{p}/{t.db}" for h, p in t.sentinels)
        config["broker_transport"] = SENTINEL_TRANSPORT
        config["transport_options"] = {"master_name": t.master, "sentinel_kwargs": connections.sentinel_kwargs(t)}
    return config
