"""Redis connections: the one place that turns the settings into a connection of each kind.

Every process talks to Redis the same way, whichever of three shapes the settings describe:

* ``PARLEY_REDIS_URL=redis://[user:password@]host:port/db`` (or ``unix:///path?db=0``): one server;
* ``rediss://...``: the same over TLS, with ``PARLEY_REDIS_TLS_*`` (CA file, client certificate and key,
  verify mode);
* ``PARLEY_REDIS_SENTINELS=host:port,...`` with ``PARLEY_REDIS_SENTINEL_MASTER``: the master those
  Sentinels name, asked again on every new connection. ``PARLEY_REDIS_URL`` then gives only the
  login, database and scheme (``rediss`` for TLS, to the data nodes and the Sentinels alike); its host is
  the master name (``redis://user:password@mymaster/0``), or it is left unset. The Sentinels' own
  login is ``PARLEY_REDIS_SENTINEL_USERNAME`` / ``_PASSWORD``.

Four kinds of connection are built here: :func:`connect` (sync redis-py, every worker and the CLI),
:func:`connect_async` (the guest worker's pool, whose connection class its multiplexed connection also
opens, so it too resolves the master through Sentinel on every reconnect), :func:`tasks.transport.celery_broker` (the
Celery broker through :mod:`tasks.transport`) and :func:`describe` (what may be printed: never a
password).

A connection to a master Sentinel no longer names (a failover happened while it was open) is dropped at
the first sign, READONLY (the old master was demoted) or NOREPLICAS (its replica was promoted away from
it, with ``min-replicas-to-write``), as a connection error every caller already retries, so the next
command asks the Sentinels again. redis-py does this for a plain READONLY reply only; here it is also
done for the same refusal inside a Lua script, which Parley uses for nearly every write.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import redis
import redis.asyncio as aredis
import redis.asyncio.sentinel as asentinel
import redis.sentinel as sentinel
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from parley.settings import Settings, SettingsConflict

SENTINEL_PORT = 26379
# What every connection gets: a bounded connect, keepalive, a health check when idle, and retry on timeouts.
COMMON: dict[str, Any] = {"socket_connect_timeout": 5, "socket_keepalive": True, "health_check_interval": 15,
                          "retry_on_timeout": True}
SENTINEL_TIMEOUT_S = 5.0  # a Sentinel that does not answer in this long is skipped for the next one
VERIFY_MODES = {"full": (ssl.CERT_REQUIRED, True), "ca": (ssl.CERT_REQUIRED, False), "none": (ssl.CERT_NONE, False)}
_DEMOTED = ("READONLY ", "NOREPLICAS ")  # a master's refusals that mean "not the master you want any more"


class RedisNotConfigured(RuntimeError):
    pass


class RedisSettingsError(SettingsConflict):
    """Redis settings that cannot work together; the message names them (never their values)."""


@dataclass(frozen=True)
class RedisTarget:
    """Where Parley's Redis is and how to log in, read from the settings; no I/O."""

    scheme: str  # redis, rediss or unix
    url: str  # the URL as given, credentials included: for clients only, never printed
    username: str | None = None
    password: str | None = None
    db: int = 0
    sentinels: tuple[tuple[str, int], ...] = ()
    master: str | None = None
    sentinel_username: str | None = None
    sentinel_password: str | None = None
    tls: dict[str, Any] = field(default_factory=dict)  # redis-py's ssl_* arguments; empty without TLS

    @property
    def uses_sentinel(self) -> bool:
        return bool(self.sentinels)

    @property
    def uses_tls(self) -> bool:
        return self.scheme == "rediss"

    def describe(self) -> str:
        """The target without secrets: safe for banners, logs and error messages."""
        login = f" as {self.username}" if self.username else ""
        login += " with a password" if self.password else ""
        tls = " over TLS" if self.uses_tls else ""
        if self.uses_sentinel:
            where = ",".join(f"{h}:{p}" for h, p in self.sentinels)
            return f"Sentinel master {self.master} (sentinels {where}), db {self.db}{login}{tls}"
        return redact(self.url) + (f" ({login.strip()})" if login else "")


def redact(url: str) -> str:
    """``url`` with its password replaced by ``***`` (the user name stays: it is not a secret)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    userinfo = f"{parts.username or ''}:***"
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{userinfo}@{host}").geturl()


def configured(settings: Settings) -> bool:
    """True when the settings name a Redis (a URL, or Sentinels); else ``parley run`` embeds one."""
    return bool(settings.redis_url or settings.redis_sentinels)


def redis_url(settings: Settings) -> str:
    """The URL as given (credentials included; print :func:`describe` instead). Raises when no Redis is set."""
    return target(settings).url


def target(settings: Settings) -> RedisTarget:
    """The settings read as one :class:`RedisTarget`; a contradiction is a :class:`RedisSettingsError`."""
    if not configured(settings):
        raise RedisNotConfigured(
            "PARLEY_REDIS_URL is not set: point it at a Redis (or set PARLEY_REDIS_SENTINELS), or use "
            "`parley run`, which starts one"
        )
    sentinels = _sentinel_addresses(settings)
    master = settings.redis_sentinel_master
    if sentinels and not master:
        raise RedisSettingsError("PARLEY_REDIS_SENTINELS is set but PARLEY_REDIS_SENTINEL_MASTER is not: "
                                 "name the master the Sentinels watch (sentinel monitor NAME ...)")
    if master and not sentinels:
        raise RedisSettingsError("PARLEY_REDIS_SENTINEL_MASTER is set but PARLEY_REDIS_SENTINELS is not: "
                                 "list the Sentinels as host:port,host:port")
    url = settings.redis_url or f"redis://{master}/0"
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("redis", "rediss", "unix"):
        raise RedisSettingsError("PARLEY_REDIS_URL must start with redis://, rediss:// or unix://")
    if sentinels and scheme == "unix":
        raise RedisSettingsError("PARLEY_REDIS_URL is a unix socket, but Sentinel names masters by network "
                                 "address: use redis:// or rediss:// with PARLEY_REDIS_SENTINELS")
    if sentinels and parts.hostname and parts.hostname != master.lower():  # type: ignore[union-attr]
        raise RedisSettingsError(
            "PARLEY_REDIS_URL names a host other than PARLEY_REDIS_SENTINEL_MASTER: with Sentinel the master's "
            "address comes from the Sentinels, so write the master name as the host "
            "(redis://user:password@mymaster/0) or leave PARLEY_REDIS_URL unset"
        )
    tls = _tls(settings, scheme)
    return RedisTarget(
        scheme=scheme, url=url,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        db=_db(parts.path, parts.query), sentinels=sentinels, master=master,
        sentinel_username=settings.redis_sentinel_username,
        sentinel_password=(settings.redis_sentinel_password.get_secret_value()
                           if settings.redis_sentinel_password else None),
        tls=tls,
    )


def describe(settings: Settings) -> str:
    """Where Parley's Redis is, without secrets (for banners, status and error messages)."""
    return target(settings).describe()


def _sentinel_addresses(settings: Settings) -> tuple[tuple[str, int], ...]:
    addresses = []
    for item in (settings.redis_sentinels or "").split(","):
        host, _colon, port = item.strip().rpartition(":")
        if not item.strip():
            continue
        if not host:  # "host" alone: the Sentinel port
            host, port = port, str(SENTINEL_PORT)
        addresses.append((host.strip("[]"), int(port)))
    return tuple(addresses)


def _db(path: str, query: str) -> int:
    if path.strip("/").isdigit():
        return int(path.strip("/"))
    for pair in query.split("&"):
        name, _eq, value = pair.partition("=")
        if name == "db" and value.isdigit():
            return int(value)
    return 0


def _tls(settings: Settings, scheme: str) -> dict[str, Any]:
    """redis-py's TLS arguments for a rediss:// target; TLS settings without rediss:// are a mistake."""
    given = {name: value for name, value in (
        ("PARLEY_REDIS_TLS_CA_FILE", settings.redis_tls_ca_file),
        ("PARLEY_REDIS_TLS_CERT_FILE", settings.redis_tls_cert_file),
        ("PARLEY_REDIS_TLS_KEY_FILE", settings.redis_tls_key_file),
    ) if value}
    if scheme != "rediss":
        if given:
            raise RedisSettingsError(f"{', '.join(given)} {'is' if len(given) == 1 else 'are'} set but "
                                     "PARLEY_REDIS_URL is not rediss://: TLS settings apply to rediss:// only")
        return {}
    if bool(settings.redis_tls_cert_file) != bool(settings.redis_tls_key_file):
        raise RedisSettingsError("PARLEY_REDIS_TLS_CERT_FILE and PARLEY_REDIS_TLS_KEY_FILE go together: "
                                 "a client certificate needs its key")
    cert_reqs, check_hostname = VERIFY_MODES[settings.redis_tls_verify]
    return {"ssl_cert_reqs": cert_reqs, "ssl_check_hostname": check_hostname,
            "ssl_ca_certs": settings.redis_tls_ca_file, "ssl_certfile": settings.redis_tls_cert_file,
            "ssl_keyfile": settings.redis_tls_key_file}


# --- Sentinel-managed connections that notice a demoted master ------------------------------------------


def demoted(error: ResponseError) -> bool:
    """A master's refusal meaning it is no longer the master (READONLY) or was left behind by a failover
    (NOREPLICAS), as a reply or inside a Lua script's error ("... -READONLY You can't write ...")."""
    text = str(error)
    return text.startswith(_DEMOTED) or any(f"-{word}" in text for word in _DEMOTED)


class _LostMaster(RedisConnectionError):
    pass


def _lost_master(error: ResponseError) -> _LostMaster:
    return _LostMaster(f"the Redis Sentinel named as master refused a write ({str(error).strip()[:120]}): "
                       "a failover moved the master; reconnecting through Sentinel")


class SentinelConnection(sentinel.SentinelManagedConnection):
    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().read_response(*args, **kwargs)
        except ResponseError as exc:
            if self.connection_pool.is_master and demoted(exc):
                self.disconnect()
                raise _lost_master(exc) from None
            raise


class SentinelSSLConnection(SentinelConnection, redis.SSLConnection):
    pass


class AsyncSentinelConnection(asentinel.SentinelManagedConnection):
    async def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().read_response(*args, **kwargs)
        except ResponseError as exc:
            lost = self.breaking_error(exc)
            if lost is not None:
                await self.disconnect()
                raise lost from None
            raise

    def breaking_error(self, error: ResponseError) -> RedisConnectionError | None:
        """The connection error an error reply means (a demoted master), else None; the guest worker's
        multiplexed connection, which reads its replies itself, asks this too."""
        return _lost_master(error) if self.connection_pool.is_master and demoted(error) else None


class AsyncSentinelSSLConnection(AsyncSentinelConnection, aredis.SSLConnection):
    pass


class BlockingSentinelConnectionPool(asentinel.SentinelConnectionPool, aredis.BlockingConnectionPool):
    """redis-py's Sentinel pool (which master, reconnect on a switch) that waits for a free connection
    instead of failing, like the guest worker's plain pool."""


# --- the connections ---------------------------------------------------------------------------------------


def _login(t: RedisTarget) -> dict[str, Any]:
    return {"username": t.username, "password": t.password, "db": t.db}


def sentinel_kwargs(t: RedisTarget) -> dict[str, Any]:
    """How to reach the Sentinels themselves: their login, short timeouts, and TLS when the data nodes use it."""
    kwargs: dict[str, Any] = {"username": t.sentinel_username, "password": t.sentinel_password,
                              "socket_connect_timeout": SENTINEL_TIMEOUT_S, "socket_timeout": SENTINEL_TIMEOUT_S,
                              "socket_keepalive": True}
    if t.uses_tls:
        kwargs.update(ssl=True, **t.tls)
    return kwargs


def connect(settings: Settings, *, decode: bool = True) -> redis.Redis:
    """A sync client with timeouts and retry on transient errors; health-checked when idle. Through
    Sentinel, each new connection asks the Sentinels where the master is."""
    t = target(settings)
    if not t.uses_sentinel:
        return redis.Redis.from_url(t.url, decode_responses=decode, **COMMON, **t.tls)
    watchers = sentinel.Sentinel(list(t.sentinels), sentinel_kwargs=sentinel_kwargs(t))
    return watchers.master_for(
        t.master, redis_class=redis.Redis, decode_responses=decode, **COMMON, **_login(t), **t.tls,
        connection_class=SentinelSSLConnection if t.uses_tls else SentinelConnection)


def connect_async(settings: Settings, *, max_connections: int, decode: bool = True) -> aredis.Redis:
    """An asyncio client on a bounded pool whose callers wait for a free connection rather than fail.
    ``pool.connection_class(**pool.connection_kwargs)`` opens one more connection of the same kind (the
    guest worker's multiplexed connection does), resolving the master through Sentinel on each open."""
    t = target(settings)
    if not t.uses_sentinel:
        pool = aredis.BlockingConnectionPool.from_url(
            t.url, decode_responses=decode, max_connections=max_connections, timeout=None, **COMMON, **t.tls)
        return aredis.Redis(connection_pool=pool)
    watchers = asentinel.Sentinel(list(t.sentinels), sentinel_kwargs=sentinel_kwargs(t))
    return watchers.master_for(
        t.master, redis_class=aredis.Redis, connection_pool_class=BlockingSentinelConnectionPool,
        max_connections=max_connections, timeout=None, decode_responses=decode, **COMMON, **_login(t), **t.tls,
        connection_class=AsyncSentinelSSLConnection if t.uses_tls else AsyncSentinelConnection)
