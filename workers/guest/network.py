"""The guest worker's only I/O: websockets (python-websockets' asyncio client) and guest REST calls.

A session driver (:mod:`workers.guest.session`) sees two callables, so unit tests swap in fakes:

* ``connect(uri, origin)`` -> :class:`Connection` (start delivery to the session's callbacks, send,
  close), raising :class:`ConnectRefused` with the HTTP status when the upgrade is refused (403: do
  not retry);
* ``rest(intent)`` -> the response text, for the REST intents of the guest machines (Guest Chat
  calls, Web Messaging history): each names its :mod:`genesys.operations` operation, run through
  :class:`genesys.client.AsyncGenesysClient` so errors arrive as the typed :mod:`genesys.errors` the
  machines understand. The answer stays text: the machine reads it as the operation's model itself
  (once), and a Guest Chat create answer is saved as it came before the machine sees it.

The socket is :class:`workers.guest.websocket.GuestSocket`: websockets' client connection handing
messages straight to the session, kept alive by protocol pings (``ping_interval`` 15-20 s,
``ping_timeout``) from one timer per worker (:class:`~workers.guest.websocket.Keepalive`); the
machines add the application echo on top. Compression is off: permessage-deflate costs ~100 KB of
zlib state per socket, which ten thousand sessions cannot afford, for frames of a few hundred bytes.
URIs are never logged: a Guest Chat event stream URI carries the guest JWT in its path.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlencode, urlsplit, urlunsplit

import redis.asyncio
import websockets
from websockets.asyncio.client import connect as ws_connect
from websockets.proxy import get_proxy
from websockets.typing import Origin
from websockets.uri import parse_uri

from genesys.client import AsyncGenesysClient
from genesys.wire import Operation
from parley.settings import Settings
from workers.guest.settings import GuestSettings
from workers.guest.websocket import ClosedSink, GuestSocket, Keepalive, MessageSink
from workers.guest.websocket import log as websocket_log

USER_AGENT = "parley-guest-worker/0.1"
MAX_FRAME_BYTES = 1 << 20


class Connection(Protocol):
    def start(self, on_message: MessageSink, on_closed: ClosedSink) -> None:
        """Hand every message to ``on_message`` from now on (those that came before first), in order;
        call ``on_closed`` once when the connection is gone."""

    async def send(self, message: str) -> None: ...

    async def close(self, code: int = 1000, reason: str = "") -> None: ...


class ConnectRefused(Exception):
    """The websocket upgrade was answered with an HTTP status instead of 101."""

    def __init__(self, status: int) -> None:
        super().__init__(f"websocket upgrade refused with HTTP {status}")
        self.status = status


class RestIntent(Protocol):
    """What both machines' REST intents offer (:class:`guest.events.GenesysCall`)."""

    @property
    def request_id(self) -> str: ...

    @property
    def method(self) -> str: ...

    @property
    def operation(self) -> Operation[Any]: ...


Connector = Callable[[str, str | None], Awaitable[Connection]]
RestCaller = Callable[[RestIntent], Awaitable[str | None]]


@dataclass(frozen=True)
class SessionIO:
    connect: Connector
    rest: RestCaller
    api_url: str


def webmessaging_url(api_url: str, deployment_id: str) -> str:
    """The guest socket for a deployment: ``wss://webmessaging.<domain>/v1?deploymentId=...`` for a
    Genesys ``https://api.<domain>``; the same host (``ws://``) for the emulator or a proxy."""
    parts = urlsplit(api_url)
    host = parts.netloc
    if host.startswith("api."):
        host = "webmessaging." + host.removeprefix("api.")
    scheme = "wss" if parts.scheme == "https" else "ws"
    return urlunsplit((scheme, host, "/v1", urlencode({"deploymentId": deployment_id}), ""))


@functools.cache
def _proxy_for(secure: bool, host: str, port: int) -> str | None:
    """The proxy websockets would pick from the environment for this endpoint, looked up once per
    endpoint: websockets reads the whole environment on every connect (twice), a measurable share of
    the worker's CPU while thousands of sessions open or are adopted. The environment is read at the
    first connect to an endpoint; a proxy set later needs a restart, like every other setting."""
    return get_proxy(parse_uri(f"{'wss' if secure else 'ws'}://{host}:{port}/"))


def websocket_connector(settings: GuestSettings) -> Connector:
    keepalive = Keepalive(settings.ping_interval_s, settings.ping_timeout_s)

    async def connect(uri: str, origin: str | None) -> Connection:
        target = parse_uri(uri)
        try:
            sock = await ws_connect(
                uri,
                proxy=_proxy_for(target.secure, target.host, target.port),
                origin=Origin(origin) if origin else None,
                compression=None,
                create_connection=GuestSocket,
                ping_interval=None,  # the worker's Keepalive pings
                ping_timeout=None,
                open_timeout=settings.open_timeout_s,
                close_timeout=5,
                max_size=MAX_FRAME_BYTES,
                user_agent_header=USER_AGENT,
                logger=websocket_log,
            )
        except websockets.exceptions.InvalidStatus as exc:
            raise ConnectRefused(exc.response.status_code) from None
        assert isinstance(sock, GuestSocket)
        keepalive.watch(sock)
        return sock

    return connect


@dataclass(frozen=True)
class _RawBody:
    """An answer kept as text (in place of the operation's model): the machines read answers themselves."""

    text: str

    @classmethod
    def model_validate_json(cls, data: bytes | str) -> _RawBody:
        return cls(data.decode() if isinstance(data, bytes) else data)


def rest_caller(client: AsyncGenesysClient) -> RestCaller:
    async def call(intent: RestIntent) -> str | None:
        result = await client.call(dataclasses.replace(intent.operation, response=_RawBody))
        return result.text if result is not None and result.text else None

    return call


class OrgSessionIO:
    """The I/O of each org's sessions: the org's own :class:`AsyncGenesysClient` (its region's API and
    web messaging host), made on the org's first session and shared by its sessions; one connector."""

    def __init__(self, settings: Settings, redis_client: redis.asyncio.Redis, connect: Connector) -> None:
        self._settings = settings
        self._redis = redis_client
        self._connect = connect
        self._clients: dict[str, AsyncGenesysClient] = {}
        self._ios: dict[str, SessionIO] = {}

    def __call__(self, org: str) -> SessionIO:
        if org not in self._ios:
            client = AsyncGenesysClient(self._settings, self._redis, org=org)  # UnknownOrg if not configured
            self._clients[org] = client
            self._ios[org] = SessionIO(connect=self._connect, rest=rest_caller(client),
                                       api_url=client.endpoints.api_url)
        return self._ios[org]

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
