"""OAuth client credentials: the token is fetched once, shared through Redis, refreshed before it
expires by one process, and refreshed exactly once after a 401."""

from __future__ import annotations

import base64
import json
import logging
import threading
from collections.abc import Iterator
from urllib.parse import parse_qs

import fakeredis
import httpx
import pytest
import redis
from pydantic import SecretStr

from genesys.auth import CachedToken, ClientCredentials, TokenProvider, credentials_from
from genesys.client import GenesysClient, GenesysConfigError
from genesys.effects import Pause, Plan, SyncRunner
from genesys.errors import GenesysError, GenesysTransportError
from genesys.keys import ClientKeys
from parley.settings import Settings
from tests.support.genesys_mock import FakeGenesys, error

LOGIN = "https://login.mypurecloud.ie"
CREDS = ClientCredentials(client_id="client-abc", client_secret=SecretStr("s3cr3t-value"))
KEYS = ClientKeys.for_client(LOGIN, CREDS.client_id)
SETTINGS = Settings(
    genesys_region="eu_west_1",
    genesys_client_id="client-abc",
    genesys_client_secret=SecretStr("s3cr3t-value"),
    genesys_rate_limit_per_minute=60_000,  # these tests are about tokens: no waits for slots
)


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def fake() -> FakeGenesys:
    return FakeGenesys(expires_in=3600)


@pytest.fixture
def server() -> fakeredis.FakeServer:
    return fakeredis.FakeServer()


@pytest.fixture
def r(server: fakeredis.FakeServer) -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis(server=server)


@pytest.fixture
def http(fake: FakeGenesys) -> Iterator[httpx.Client]:
    with httpx.Client(transport=fake.transport()) as client:
        yield client


def provider(clock: Clock | None = None, margin: float = 300) -> TokenProvider:
    return TokenProvider(
        LOGIN, CREDS, KEYS, refresh_margin_s=margin, lock_ttl_s=10, clock=clock or Clock(), poll_s=0.01
    )


def client(r: redis.Redis, fake: FakeGenesys) -> GenesysClient:
    return GenesysClient(SETTINGS, r, transport=fake.transport())


# --- The token request ---------------------------------------------------------------------------
def test_token_request_is_client_credentials_with_basic_auth(
    r: fakeredis.FakeRedis, fake: FakeGenesys, http: httpx.Client
) -> None:
    SyncRunner(r, http).run(provider().plan_token())
    (sent,) = fake.requests
    assert (sent.method, sent.path) == ("POST", "/oauth/token")
    assert sent.headers["authorization"] == "Basic " + base64.b64encode(b"client-abc:s3cr3t-value").decode()
    assert sent.headers["content-type"] == "application/x-www-form-urlencoded"


def test_token_request_body_is_grant_type_only() -> None:
    captured: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        captured.append(request)
        return httpx.Response(200, json={"access_token": "t", "token_type": "Bearer", "expires_in": 60})

    with httpx.Client(transport=httpx.MockTransport(handler)) as http:
        token = SyncRunner(fakeredis.FakeRedis(), http).run(provider().plan_token())
    assert token.access_token == "t"
    assert parse_qs(captured[0].content.decode()) == {"grant_type": ["client_credentials"]}
    assert str(captured[0].url) == f"{LOGIN}/oauth/token"


def test_token_endpoint_error_is_typed_and_releases_the_lock(r: fakeredis.FakeRedis, fake: FakeGenesys) -> None:
    fake.queue(
        "POST",
        "/oauth/token",
        httpx.Response(400, json={"error": "invalid_client", "description": "Invalid client credentials"}),
    )
    with httpx.Client(transport=fake.transport()) as http, pytest.raises(GenesysError) as caught:
        SyncRunner(r, http).run(provider().plan_token())
    assert (caught.value.status, caught.value.code) == (400, "invalid_client")
    assert caught.value.message == "Invalid client credentials"
    assert r.exists(KEYS.token_lock) == 0
    assert r.exists(KEYS.token) == 0


def test_a_failed_token_fetch_changed_nothing_whatever_the_call(r: fakeredis.FakeRedis, fake: FakeGenesys) -> None:
    """The retry policy must not take a 503 on the token for a write that may have happened (which would
    send the command looking for its effect, after the analytics lag), nor a write's 503 for a read's."""
    c = client(r, fake)
    fake.queue("POST", "/oauth/token", httpx.Response(503), httpx.ConnectError("refused"))
    for _ in range(2):
        with pytest.raises((GenesysError, GenesysTransportError)) as caught:
            c.disconnect_conversation("c-1")
        assert caught.value.changed_nothing is True
    fake.queue("POST", "/api/v2/conversations/{id}/disconnect", httpx.Response(503))
    with pytest.raises(GenesysError) as write:
        c.disconnect_conversation("c-1")
    assert write.value.status == 503 and write.value.changed_nothing is False
    fake.queue("GET", "/api/v2/conversations/{id}", httpx.Response(503))
    with pytest.raises(GenesysError) as read:
        c.get_conversation("c-1")
    assert read.value.changed_nothing is True


# --- Caching and sharing -------------------------------------------------------------------------
def test_token_is_cached_in_redis_under_a_hashed_key(
    r: fakeredis.FakeRedis, fake: FakeGenesys, http: httpx.Client
) -> None:
    runner = SyncRunner(r, http)
    first = runner.run(provider().plan_token())
    second = runner.run(provider().plan_token())  # a new provider: no memory, reads Redis
    assert first.access_token == second.access_token == "token-1"
    assert fake.token_requests == 1
    keys = [k.decode() for k in r.keys("*")]
    assert keys == [KEYS.token]
    assert "client-abc" not in keys[0] and "s3cr3t" not in keys[0]
    assert 3590_000 < r.pttl(KEYS.token) <= 3600_000
    stored = CachedToken.model_validate_json(r.get(KEYS.token))
    assert stored.expires_at - stored.refresh_at == 300


def test_clients_sharing_redis_share_one_token(server: fakeredis.FakeServer, fake: FakeGenesys) -> None:
    one = client(fakeredis.FakeRedis(server=server), fake)
    two = client(fakeredis.FakeRedis(server=server), fake)
    one.get_conversation("c-1")
    two.get_conversation("c-1")
    two.get_conversation("c-1")
    assert fake.token_requests == 1
    assert {r.authorization for r in fake.api_requests} == {"Bearer token-1"}


def test_different_clients_or_hosts_do_not_share() -> None:
    assert ClientKeys.for_client(LOGIN, "a") != ClientKeys.for_client(LOGIN, "b")
    assert ClientKeys.for_client(LOGIN, "a") != ClientKeys.for_client("http://127.0.0.1:8089", "a")


# --- Refresh before expiry -----------------------------------------------------------------------
def test_refreshes_margin_before_expiry(r: fakeredis.FakeRedis, fake: FakeGenesys, http: httpx.Client) -> None:
    clock = Clock()
    tokens = provider(clock)
    runner = SyncRunner(r, http)
    assert runner.run(tokens.plan_token()).access_token == "token-1"
    clock.now += 3600 - 300 - 1  # one second before the refresh point
    assert runner.run(tokens.plan_token()).access_token == "token-1"
    clock.now += 1
    assert runner.run(tokens.plan_token()).access_token == "token-2"
    assert fake.token_requests == 2


def test_short_lived_tokens_refresh_at_half_life(r: fakeredis.FakeRedis, http: httpx.Client) -> None:
    fake = FakeGenesys(expires_in=60)
    with httpx.Client(transport=fake.transport()) as http:
        token = SyncRunner(r, http).run(provider(Clock(0.0), margin=300).plan_token())
    assert (token.refresh_at, token.expires_at) == (30.0, 60.0)


def test_due_token_is_used_while_another_process_refreshes(
    r: fakeredis.FakeRedis, fake: FakeGenesys, http: httpx.Client
) -> None:
    clock = Clock()
    runner = SyncRunner(r, http)
    runner.run(provider(clock).plan_token())
    clock.now += 3400  # due for refresh, still valid for 200 s
    r.set(KEYS.token_lock, "another-process", px=10_000)
    token = runner.run(provider(clock).plan_token())
    assert token.access_token == "token-1"
    assert fake.token_requests == 1


class StoreOnPause(SyncRunner):
    """Plays the lock holder: the first time the plan waits, the holder stores its token."""

    def __init__(self, r: fakeredis.FakeRedis, http: httpx.Client) -> None:
        super().__init__(r, http)
        self.r = r
        self.pauses = 0

    def _perform(self, effect: object) -> object:
        if isinstance(effect, Pause):
            self.pauses += 1
            fresh = CachedToken(access_token="from-holder", refresh_at=2e6, expires_at=2e6 + 300)
            self.r.set(KEYS.token, fresh.model_dump_json(), px=60_000)
            return None
        return super()._perform(effect)  # type: ignore[arg-type]


def test_without_a_token_waits_for_the_lock_holder(
    r: fakeredis.FakeRedis, fake: FakeGenesys, http: httpx.Client
) -> None:
    r.set(KEYS.token_lock, "another-process", px=10_000)
    runner = StoreOnPause(r, http)
    token = runner.run(provider().plan_token())
    assert token.access_token == "from-holder"
    assert runner.pauses == 1
    assert fake.token_requests == 0


# --- 401: invalidate and refresh once ------------------------------------------------------------
def test_401_refreshes_the_token_once_and_retries_once(r: fakeredis.FakeRedis, fake: FakeGenesys) -> None:
    c = client(r, fake)
    c.get_conversation("c-1")
    fake.revoke_all()
    conversation = c.get_conversation("c-1")
    assert conversation.id == "conv-1"
    assert fake.token_requests == 2
    assert [x.authorization for x in fake.api_requests] == [
        "Bearer token-1",
        "Bearer token-1",
        "Bearer token-2",
    ]


def test_a_second_401_is_raised_without_more_retries(r: fakeredis.FakeRedis, fake: FakeGenesys) -> None:
    expired = error(401, "credentials.expired", "The supplied credentials are expired.")
    fake.queue("GET", "/api/v2/conversations/{id}", expired, expired)
    with pytest.raises(GenesysError) as caught:
        client(r, fake).get_conversation("c-1")
    assert (caught.value.status, caught.value.code) == (401, "credentials.expired")
    assert len(fake.api_requests) == 2
    assert fake.token_requests == 2


def test_many_processes_seeing_a_401_refresh_once(server: fakeredis.FakeServer, fake: FakeGenesys) -> None:
    fleet = [client(fakeredis.FakeRedis(server=server), fake) for _ in range(3)]
    for c in fleet:
        c.get_conversation("c-1")  # every process holds token-1 in memory
    fake.revoke_all()
    for c in fleet:
        c.get_conversation("c-1")
    assert fake.token_requests == 2  # the first 401 refreshed; the others found token-2 in Redis
    # Each process: its remembered token-1 gets a 401, then token-2 from Redis succeeds.
    assert [x.authorization for x in fake.api_requests[3:]] == ["Bearer token-1", "Bearer token-2"] * 3


# --- Real Redis, many threads --------------------------------------------------------------------
def test_a_fleet_on_real_redis_fetches_one_token(redis_url: str) -> None:
    fake = FakeGenesys()
    entered = threading.Event()
    release = threading.Event()
    handler = fake.__call__

    def slow_token(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth/token":
            entered.set()
            assert release.wait(10)  # hold the lock while the others pile up
        return handler(request)

    clients = [
        GenesysClient(SETTINGS, redis.Redis.from_url(redis_url), transport=httpx.MockTransport(slow_token))
        for _ in range(8)
    ]
    start = threading.Barrier(len(clients) + 1)
    failures: list[BaseException] = []

    def work(c: GenesysClient) -> None:
        start.wait()
        try:
            c.get_conversation("c-1")
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    start.wait()
    assert entered.wait(10)
    release.set()
    for t in threads:
        t.join(10)
    assert not failures
    assert fake.token_requests == 1
    assert len(fake.api_requests) == 8


# --- Secrets -------------------------------------------------------------------------------------
def test_tokens_and_secrets_never_reach_logs_or_reprs(
    r: fakeredis.FakeRedis, fake: FakeGenesys, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    c = client(r, fake)
    c.get_conversation("c-1")
    fake.revoke_all()
    c.get_conversation("c-1")
    token = CachedToken.model_validate_json(r.get(KEYS.token))
    shown = caplog.text + repr(c) + repr(provider()) + repr(token) + repr(CREDS) + repr(SETTINGS)
    basic = base64.b64encode(b"client-abc:s3cr3t-value").decode()
    for secret in ("token-1", "token-2", "s3cr3t-value", basic):
        assert secret not in shown
    assert "GET /api/v2/conversations/c-1 -> 401" in caplog.text  # the log does say what happened


# --- Credentials from settings -------------------------------------------------------------------
def test_emulator_mode_defaults_to_the_seeded_client() -> None:
    from emulator.fixtures import SEED

    creds = credentials_from(Settings())
    assert creds is not None and creds.client_id == SEED.client_id


def test_real_genesys_without_credentials_allows_guest_calls_only(fake: FakeGenesys) -> None:
    c = GenesysClient(Settings(genesys_region="eu_west_1"), fakeredis.FakeRedis(), transport=fake.transport())
    with pytest.raises(GenesysConfigError, match="CLIENT_ID"):
        c.get_conversation("c-1")
    assert c.get_guest_chat_member("conv-1", "member-1", jwt="guest.jwt").role == "CUSTOMER"


def test_unreadable_cached_value_is_replaced(r: fakeredis.FakeRedis, fake: FakeGenesys, http: httpx.Client) -> None:
    r.set(KEYS.token, json.dumps({"old": "format"}))
    plan: Plan[CachedToken] = provider().plan_token()
    assert SyncRunner(r, http).run(plan).access_token == "token-1"
