"""How a Genesys route is served: authentication, the per-token limit, then the handler.

Each route declares who may call it (:class:`Auth`); :func:`api_route` authenticates the caller,
counts the call against its token's limit (the ``inin-ratelimit-*`` headers are added to the answer
by the gateway), and hands the handler a :class:`Call`: the request, who is calling, and the parts of
the emulator a Genesys route acts on - not the emulator itself, whose faults, sockets and reset are
the admin API's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from emulator.auth import (
    GUEST_CHAT_ISSUER,
    WEBMESSAGING_ISSUER,
    ClientToken,
    GuestClaims,
    GuestJwts,
    TokenStore,
    authenticate_client,
    authenticate_guest,
)
from emulator.clock import Clock
from emulator.config import EmulatorConfig
from emulator.errors import rate_limited
from emulator.fixtures import Fixtures
from emulator.ledger import Ledger
from emulator.runtime import Emulator
from emulator.state import EmulatorState
from genesys.models import WireModel


class Auth(Enum):
    CLIENT = "client"  # OAuth client-credentials bearer token
    GUEST_CHAT = "guest_chat"  # Guest Chat JWT
    WEBMESSAGING = "webmessaging"  # Web Messaging guest JWT
    NONE = "none"  # Guest Chat create


@dataclass(slots=True)
class Call:
    request: Request
    state: EmulatorState
    fixtures: Fixtures
    config: EmulatorConfig
    clock: Clock
    ledger: Ledger
    tokens: TokenStore
    jwts: GuestJwts
    client: ClientToken | None = None
    guest: GuestClaims | None = None

    def param(self, name: str) -> str:
        return str(self.request.path_params[name])

    @property
    def guest_claims(self) -> GuestClaims:
        assert self.guest is not None, "route is not guest-authenticated"
        return self.guest


Handler = Callable[[Call], Awaitable[Response]]


def emulator_of(request: Request) -> Emulator:
    """The app's emulator: for the edges only (this module's routes, the admin API)."""
    emulator: Emulator = request.app.state.emulator
    return emulator


def api_route(path: str, handler: Handler, *, methods: list[str], auth: Auth, expired_status: int = 401) -> Route:
    """A Genesys route: ``auth`` checked, then the per-token limit. ``expired_status``: what an expired
    guest JWT gets (401 ``credentials.expired``; token revoke answers it 400)."""

    async def endpoint(request: Request) -> Response:
        emulator = emulator_of(request)
        call = Call(
            request,
            emulator.state,
            emulator.fixtures,
            emulator.config,
            emulator.clock,
            emulator.ledger,
            emulator.tokens,
            emulator.jwts,
        )
        rate_key: str | None = None
        if auth is Auth.CLIENT:
            call.client = authenticate_client(request, emulator.tokens, emulator.clock)
            rate_key = call.client.token
        elif auth in (Auth.GUEST_CHAT, Auth.WEBMESSAGING):
            issuer = GUEST_CHAT_ISSUER if auth is Auth.GUEST_CHAT else WEBMESSAGING_ISSUER
            call.guest = authenticate_guest(request, emulator.jwts, emulator.clock, issuer, expired_status)
            rate_key = call.guest.jti
        if rate_key is not None:
            config = emulator.config
            status = emulator.rate_limiter.hit(
                rate_key, config.rate_limit_per_minute, enforce=config.rate_limit_enabled
            )
            request.state.ratelimit = status
            if status.exceeded:
                raise rate_limited(status.reset_s)
        return await handler(call)

    return Route(path, endpoint, methods=methods, name=handler.__name__)


# --- answers ---------------------------------------------------------------------------------------
def ok(body: WireModel, status: int = 200) -> JSONResponse:
    return JSONResponse(body.to_wire(), status_code=status)


# Empty answers still say application/json, the one media type the operations declare.
def accepted() -> Response:
    """202 with an empty body (participant PATCHes, disconnect)."""
    return Response(status_code=202, media_type="application/json")


def no_content() -> Response:
    return Response(status_code=204, media_type="application/json")
