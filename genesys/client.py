"""Genesys Cloud REST client: :class:`GenesysClient` (sync, for Celery tasks) and
:class:`AsyncGenesysClient` (asyncio, for the guest worker).

Both run the same plan per call (:meth:`_Pipeline.plan_call`); only the I/O differs (see
:mod:`genesys.effects`). An OAuth call: token (shared, cached) -> rate-limit slot (shared) -> send;
on 401 the token is invalidated and the call retried exactly once; on 429 the whole fleet pauses for
Retry-After (unless it is longer than ``retry_after_max_s``: a used-up quota, which only fails the
command) and the error is raised. No other retries here: the task retry policy decides, from the
typed errors (:mod:`genesys.errors`).
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Awaitable, Callable
from typing import Concatenate, ParamSpec, Self, TypeVar

import httpx
import redis
import redis.asyncio

from genesys import operations as ops
from genesys.auth import TokenProvider
from genesys.effects import AsyncRunner, Plan, SyncRunner
from genesys.errors import GenesysError, GenesysTransportError
from genesys.keys import ClientKeys
from genesys.orgs import target_for
from genesys.ratelimit import RateLimiter
from genesys.regions import Endpoints
from genesys.wire import GuestJwt, OAuth, Operation, build_request, decode, plan_send, rate_limit_info
from parley.orgs import DEFAULT_ORG
from parley.settings import Settings
from schemas.common import Lane

T = TypeVar("T")
P = ParamSpec("P")

DEFAULT_429_PAUSE_S = 1.0  # Genesys always sends Retry-After; this covers a proxy that strips it


class GenesysConfigError(RuntimeError):
    """The client is asked for something its settings cannot provide (no OAuth credentials)."""


def timeouts(settings: Settings) -> httpx.Timeout:
    return httpx.Timeout(
        connect=settings.genesys_connect_timeout_s,
        read=settings.genesys_read_timeout_s,
        write=settings.genesys_read_timeout_s,
        pool=settings.genesys_connect_timeout_s,
    )


class _Pipeline:
    """Everything a call does, as a plan; shared by both clients."""

    def __init__(self, settings: Settings, org: str) -> None:
        target = target_for(settings, org)
        self.org = org
        self.endpoints: Endpoints = target.endpoints
        self.tokens: TokenProvider | None = None
        self.limiter: RateLimiter | None = None
        self.max_pause_s = settings.retry_after_max_s
        credentials = target.credentials
        if credentials is not None:
            keys = ClientKeys.for_client(self.endpoints.login_url, credentials.client_id)
            self.tokens = TokenProvider(
                self.endpoints.login_url,
                credentials,
                keys,
                refresh_margin_s=settings.genesys_token_refresh_margin_s,
                # Outlives a token request that hits every timeout, so a live holder keeps the lock.
                lock_ttl_s=settings.genesys_connect_timeout_s + settings.genesys_read_timeout_s + 5,
            )
            self.limiter = RateLimiter(keys.rate, keys.pause, target.rate_limit_per_minute,
                                       org=org)
        self.keys = keys if credentials is not None else None
        self.rate_wait_max_s: float | None = None
        """Set on a :meth:`GenesysClient.bounded` view until its first request is sent."""
        self.rate_slot_key: str | None = None
        """Where a bounded view's slot is kept while its command is parked."""
        self.rate_lane = Lane.normal
        """The bounded view's command's lane: its turn for the rate budget (:mod:`genesys.lanes`)."""

    def plan_call(self, op: Operation[T]) -> Plan[T]:
        try:
            if isinstance(op.auth, OAuth):
                response = yield from self._plan_oauth(op)
            else:
                bearer = op.auth.jwt if isinstance(op.auth, GuestJwt) else None
                response = yield from plan_send(build_request(op, self.endpoints.api_url, bearer))
            return decode(op, response)
        except (GenesysError, GenesysTransportError) as exc:
            exc.changed_nothing = exc.changed_nothing or op.changes_nothing  # (a failed token fetch: True)
            raise

    def _plan_oauth(self, op: Operation[T]) -> Plan[httpx.Response]:
        if self.tokens is None or self.limiter is None:
            raise GenesysConfigError(
                "PARLEY_GENESYS_CLIENT_ID and PARLEY_GENESYS_CLIENT_SECRET are needed for " + op.path
            )
        token = yield from self.tokens.plan_token()
        yield from self.limiter.plan_acquire(self.rate_wait_max_s, self.rate_slot_key, self.rate_lane)
        self.rate_wait_max_s = self.rate_slot_key = None  # a request leaves: later ones may not be put off
        response = yield from plan_send(build_request(op, self.endpoints.api_url, token.access_token))
        if response.status_code == 401:
            # Expired or revoked before its time: refresh (once for the fleet) and retry once.
            yield from self.tokens.plan_invalidate(token)
            token = yield from self.tokens.plan_token()
            yield from self.limiter.plan_acquire()
            response = yield from plan_send(build_request(op, self.endpoints.api_url, token.access_token))
        if response.status_code == 429:
            retry_after = rate_limit_info(response.headers).retry_after_s
            pause = retry_after if retry_after is not None else DEFAULT_429_PAUSE_S
            if pause <= self.max_pause_s:  # longer is a used-up quota: this command fails, the others go on
                yield from self.limiter.plan_pause(pause)
        return response


# --- Typed methods, generated from genesys.operations so each operation is defined once ----------
def _sync(factory: Callable[P, Operation[T]]) -> Callable[Concatenate[GenesysClient, P], T]:
    @functools.wraps(factory)
    def method(self: GenesysClient, *args: P.args, **kwargs: P.kwargs) -> T:
        return self.call(factory(*args, **kwargs))

    return method


def _async(factory: Callable[P, Operation[T]]) -> Callable[Concatenate[AsyncGenesysClient, P], Awaitable[T]]:
    @functools.wraps(factory)
    async def method(self: AsyncGenesysClient, *args: P.args, **kwargs: P.kwargs) -> T:
        return await self.call(factory(*args, **kwargs))

    return method


class GenesysClient:
    """Sync client of one org (``default`` unless told); one per process and org (pooled connections),
    safe to share between threads."""

    def __init__(
        self,
        settings: Settings,
        redis_client: redis.Redis,
        *,
        org: str = DEFAULT_ORG,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._pipeline = _Pipeline(settings, org)
        self._http = httpx.Client(transport=transport, timeout=timeouts(settings))
        self._runner = SyncRunner(redis_client, self._http)

    @property
    def endpoints(self) -> Endpoints:
        return self._pipeline.endpoints

    def __repr__(self) -> str:
        return f"GenesysClient(org={self._pipeline.org!r}, api_url={self.endpoints.api_url!r})"

    def call(self, op: Operation[T]) -> T:
        return self._runner.run(self._pipeline.plan_call(op))

    def bounded(self, max_wait_s: float, holder: str, lane: Lane = Lane.normal) -> GenesysClient:
        """This client for one execution of ``holder`` (a command id), whose first request raises
        :class:`genesys.ratelimit.RateBudgetWait` instead of waiting longer than ``max_wait_s`` for the
        org's rate budget: nothing was sent, so the command can come back when told without holding a
        worker meanwhile, and its slot is kept for it (its next execution takes it). Later requests wait
        as usual (an earlier one may have had an effect). The view shares the client's connections,
        token and limiter. ``lane`` is the command's turn for the budget (:mod:`genesys.lanes`)."""
        view = copy.copy(self)
        view._pipeline = copy.copy(self._pipeline)
        keys = self._pipeline.keys
        if keys is not None:
            view._pipeline.rate_wait_max_s = max_wait_s
            view._pipeline.rate_slot_key = keys.slot(holder)
            view._pipeline.rate_lane = lane
        return view

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    send_agentless = _sync(ops.send_agentless)
    get_conversation = _sync(ops.get_conversation)
    get_message_conversation = _sync(ops.get_message_conversation)
    query_conversation_details = _sync(ops.query_conversation_details)
    get_message = _sync(ops.get_message)
    get_messages_bulk = _sync(ops.get_messages_bulk)
    patch_message_conversation = _sync(ops.patch_message_conversation)
    patch_message_participant = _sync(ops.patch_message_participant)
    patch_conversation_participant = _sync(ops.patch_conversation_participant)
    disconnect_conversation = _sync(ops.disconnect_conversation)
    delete_conversation = _sync(ops.delete_conversation)
    start_cobrowse = _sync(ops.start_cobrowse)
    get_cobrowse_session = _sync(ops.get_cobrowse_session)
    patch_cobrowse_session = _sync(ops.patch_cobrowse_session)
    patch_cobrowse_participant = _sync(ops.patch_cobrowse_participant)
    create_third_party_chat = _sync(ops.create_third_party_chat)
    create_guest_chat = _sync(ops.create_guest_chat)
    send_guest_chat_message = _sync(ops.send_guest_chat_message)
    send_guest_chat_typing = _sync(ops.send_guest_chat_typing)
    get_guest_chat_members = _sync(ops.get_guest_chat_members)
    get_guest_chat_member = _sync(ops.get_guest_chat_member)
    get_guest_chat_messages = _sync(ops.get_guest_chat_messages)
    get_guest_chat_message = _sync(ops.get_guest_chat_message)
    leave_guest_chat = _sync(ops.leave_guest_chat)
    get_webmessaging_messages = _sync(ops.get_webmessaging_messages)


class AsyncGenesysClient:
    """Asyncio client with the same methods (awaitable); one per event loop."""

    def __init__(
        self,
        settings: Settings,
        redis_client: redis.asyncio.Redis,
        *,
        org: str = DEFAULT_ORG,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._pipeline = _Pipeline(settings, org)
        self._http = httpx.AsyncClient(transport=transport, timeout=timeouts(settings))
        self._runner = AsyncRunner(redis_client, self._http)

    @property
    def endpoints(self) -> Endpoints:
        return self._pipeline.endpoints

    def __repr__(self) -> str:
        return f"AsyncGenesysClient(org={self._pipeline.org!r}, api_url={self.endpoints.api_url!r})"

    async def call(self, op: Operation[T]) -> T:
        return await self._runner.run(self._pipeline.plan_call(op))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    send_agentless = _async(ops.send_agentless)
    get_conversation = _async(ops.get_conversation)
    get_message_conversation = _async(ops.get_message_conversation)
    query_conversation_details = _async(ops.query_conversation_details)
    get_message = _async(ops.get_message)
    get_messages_bulk = _async(ops.get_messages_bulk)
    patch_message_conversation = _async(ops.patch_message_conversation)
    patch_message_participant = _async(ops.patch_message_participant)
    patch_conversation_participant = _async(ops.patch_conversation_participant)
    disconnect_conversation = _async(ops.disconnect_conversation)
    delete_conversation = _async(ops.delete_conversation)
    start_cobrowse = _async(ops.start_cobrowse)
    get_cobrowse_session = _async(ops.get_cobrowse_session)
    patch_cobrowse_session = _async(ops.patch_cobrowse_session)
    patch_cobrowse_participant = _async(ops.patch_cobrowse_participant)
    create_third_party_chat = _async(ops.create_third_party_chat)
    create_guest_chat = _async(ops.create_guest_chat)
    send_guest_chat_message = _async(ops.send_guest_chat_message)
    send_guest_chat_typing = _async(ops.send_guest_chat_typing)
    get_guest_chat_members = _async(ops.get_guest_chat_members)
    get_guest_chat_member = _async(ops.get_guest_chat_member)
    get_guest_chat_messages = _async(ops.get_guest_chat_messages)
    get_guest_chat_message = _async(ops.get_guest_chat_message)
    leave_guest_chat = _async(ops.leave_guest_chat)
    get_webmessaging_messages = _async(ops.get_webmessaging_messages)
