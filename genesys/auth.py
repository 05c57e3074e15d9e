"""OAuth client-credentials token, cached in Redis and shared by every process using the client.

- One token per client for the whole fleet: Genesys' 300/min limit is per token, and a token
  request per process would also burn login calls.
- Refreshed ``margin`` before it expires, by one process holding a Redis lock; the others keep
  using the still-valid token meanwhile (or wait for the holder when there is none).
- On a 401 the caller invalidates *the token that failed* (compare-and-delete): the first process
  to see the 401 forces a refresh, the rest find the new token already there.
- Each process also keeps the token in memory until its refresh time, so a call costs no Redis
  round trip for the token.

The access token is never logged and never shown by a repr.
"""

from __future__ import annotations

import base64
import logging
import time
import uuid
from collections.abc import Callable

import httpx
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr

from genesys.effects import LuaScript, Pause, Plan, RedisCommand, text
from genesys.errors import GenesysTransportError
from genesys.keys import ClientKeys
from genesys.models import OAuthToken
from genesys.regions import EMULATOR_CLIENT_ID, EMULATOR_CLIENT_SECRET
from genesys.wire import USER_AGENT, error_from_response, parse_model, plan_send
from parley import logs
from parley.leases import DELETE_IF_EQUAL
from parley.settings import Settings

log = logging.getLogger(__name__)

_DELETE_IF_EQUAL = LuaScript(DELETE_IF_EQUAL)


class ClientCredentials(BaseModel):
    model_config = ConfigDict(frozen=True)

    client_id: str
    client_secret: SecretStr

    def model_post_init(self, _context: object) -> None:
        logs.register_secret(self.client_secret.get_secret_value())  # any org's, however it was read


def credentials_from(settings: Settings) -> ClientCredentials | None:
    """Configured credentials; with no Genesys configured, the emulator's seeded client (the
    documented default of ``make run``); otherwise None (only guest operations are possible)."""
    if settings.genesys_client_id and settings.genesys_client_secret is not None:
        return ClientCredentials(client_id=settings.genesys_client_id, client_secret=settings.genesys_client_secret)
    if settings.uses_emulator:
        return ClientCredentials(client_id=EMULATOR_CLIENT_ID, client_secret=SecretStr(EMULATOR_CLIENT_SECRET))
    return None


class CachedToken(BaseModel):
    """What Redis holds (as JSON) under the client's token key."""

    access_token: str = Field(repr=False)
    refresh_at: float
    expires_at: float
    _raw: str = PrivateAttr(default="")  # the exact Redis value, for compare-and-delete

    def model_post_init(self, _context: object) -> None:
        logs.register_secret(self.access_token)  # fetched here or read from Redis: masked in this process's logs

    @classmethod
    def load(cls, raw: object) -> CachedToken | None:
        value = text(raw)
        if value is None:
            return None
        try:
            cached = cls.model_validate_json(value)
        except ValueError:
            return None  # unreadable (older format): treat as absent, it gets replaced
        cached._raw = value
        return cached

    @property
    def raw(self) -> str:
        return self._raw

    def dump(self) -> str:
        self._raw = self.model_dump_json()
        return self._raw


class TokenProvider:
    def __init__(
        self,
        login_url: str,
        credentials: ClientCredentials,
        keys: ClientKeys,
        *,
        refresh_margin_s: float,
        lock_ttl_s: float,
        poll_s: float = 0.05,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._token_url = f"{login_url}/oauth/token"
        self._credentials = credentials
        self._keys = keys
        self._margin_s = refresh_margin_s
        self._lock_ms = max(1, round(lock_ttl_s * 1000))
        self._poll_s = poll_s
        self._clock = clock
        self._memo: CachedToken | None = None

    def __repr__(self) -> str:
        return f"TokenProvider(client_id={self._credentials.client_id!r}, url={self._token_url!r})"

    def plan_token(self) -> Plan[CachedToken]:
        """A token that is not due for refresh, fetching one if needed (once for the fleet)."""
        if self._memo is not None and self._clock() < self._memo.refresh_at:
            return self._memo
        while True:
            cached = CachedToken.load((yield RedisCommand("get", (self._keys.token,))))
            if cached is not None and self._clock() < cached.refresh_at:
                self._memo = cached
                return cached
            owner = uuid.uuid4().hex
            if (yield RedisCommand("set", (self._keys.token_lock, owner), {"nx": True, "px": self._lock_ms})):
                return (yield from self._plan_refresh_locked(owner))
            if cached is not None:
                return cached  # due for refresh but valid: another process is refreshing it
            yield Pause(self._poll_s)  # no valid token: wait for the process fetching one

    def plan_invalidate(self, token: CachedToken) -> Plan[None]:
        """Forget ``token`` after a 401, unless another process already replaced it."""
        self._memo = None
        yield from _DELETE_IF_EQUAL.call((self._keys.token,), (token.raw,))

    def _plan_refresh_locked(self, owner: str) -> Plan[CachedToken]:
        try:
            # Re-read under the lock: the previous holder may have just stored a fresh token.
            cached = CachedToken.load((yield RedisCommand("get", (self._keys.token,))))
            if cached is None or self._clock() >= cached.refresh_at:
                cached = yield from self._plan_fetch()
            self._memo = cached
            return cached
        finally:
            yield from _DELETE_IF_EQUAL.call((self._keys.token_lock,), (owner,))

    def _plan_fetch(self) -> Plan[CachedToken]:
        try:
            response = yield from plan_send(self._token_request())
        except GenesysTransportError as exc:
            exc.changed_nothing = True  # no call was made yet: nothing of the command can have happened
            raise
        if not response.is_success:
            error = error_from_response(response)
            error.changed_nothing = True
            raise error
        token = parse_model(OAuthToken, response)
        now = self._clock()
        # Short-lived tokens (the emulator's) would be "due" at once with a 5-minute margin.
        margin = min(self._margin_s, token.expires_in / 2)
        cached = CachedToken(
            access_token=token.access_token,
            refresh_at=now + token.expires_in - margin,
            expires_at=now + token.expires_in,
        )
        yield RedisCommand("set", (self._keys.token, cached.dump()), {"px": max(1, token.expires_in * 1000)})
        log.info("genesys oauth: new token (key %s), expires in %d s", self._keys.token, token.expires_in)
        return cached

    def _token_request(self) -> httpx.Request:
        secret = self._credentials.client_secret.get_secret_value()
        basic = base64.b64encode(f"{self._credentials.client_id}:{secret}".encode()).decode()
        return httpx.Request(
            "POST",
            self._token_url,
            data={"grant_type": "client_credentials"},
            headers={
                "Authorization": f"Basic {basic}",
                "Accept": "application/json",
                "User-Agent": USER_AGENT,
            },
        )
