"""Who is calling: client-credentials bearer tokens and guest JWTs.

- OAuth tokens are opaque random strings issued by ``POST /oauth/token`` (client credentials, Basic
  auth); they expire after ``token_expires_in_s``.
- Guest JWTs (Guest Chat ``jwt``, Web Messaging guest JWT) are HS256 JWTs signed with a per-process
  key, carrying Genesys' claim layout (``iss``, ``iat``, ``exp``, ``data``). Genesys signs RS256; no
  client may verify the signature anyway, only read the claims, which these allow.

Neither kind of token is ever logged: objects holding one hide it from ``repr``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import threading
import uuid
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.requests import Request

from emulator.clock import Clock
from emulator.errors import ApiError

GUEST_CHAT_ISSUER = "urn:purecloud:webchat"
WEBMESSAGING_ISSUER = "urn:purecloud:webmessaging"
JwtIssuer = Literal["urn:purecloud:webchat", "urn:purecloud:webmessaging"]


def bearer_token(request: Request) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (scheme compared case-insensitively)."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


# --- client-credentials tokens -------------------------------------------------------------------
@dataclass(frozen=True)
class ClientToken:
    token: str = field(repr=False)
    client_id: str
    issued_at: float
    expires_at: float


class TokenStore:
    def __init__(self) -> None:
        self._tokens: dict[str, ClientToken] = {}
        self._lock = threading.Lock()

    def issue(self, client_id: str, now: float, expires_in_s: int) -> ClientToken:
        token = ClientToken(secrets.token_urlsafe(64), client_id, now, now + expires_in_s)
        with self._lock:
            self._tokens[token.token] = token
        return token

    def lookup(self, token: str) -> ClientToken | None:
        with self._lock:
            return self._tokens.get(token)

    def clear(self) -> None:
        with self._lock:
            self._tokens.clear()


def authenticate_client(request: Request, tokens: TokenStore, clock: Clock) -> ClientToken:
    """The client token of a Platform API call, or Genesys' 401."""
    raw = bearer_token(request)
    if raw is None:
        raise ApiError(401, "authentication.required")
    token = tokens.lookup(raw)
    if token is None:
        raise ApiError(401, "bad.credentials")
    if clock.time() >= token.expires_at:
        raise ApiError(401, "credentials.expired")
    return token


# --- guest JWTs ----------------------------------------------------------------------------------
class GuestJwtData(BaseModel):
    model_config = ConfigDict(extra="forbid")

    did: str  # deployment id
    conv: str | None = None  # Guest Chat: conversation id
    sub: str | None = None  # Guest Chat: member id; Web Messaging: session id


class GuestClaims(BaseModel):
    model_config = ConfigDict(extra="forbid")

    iss: JwtIssuer
    iat: int
    exp: int
    jti: str
    data: GuestJwtData


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


_HEADER = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())


class GuestJwts:
    """Issues and checks guest JWTs; remembers the revoked ones (webdeployments/token/revoke)."""

    def __init__(self) -> None:
        self._key = secrets.token_bytes(32)
        self._revoked: set[str] = set()
        self._lock = threading.Lock()

    def issue(self, issuer: JwtIssuer, data: GuestJwtData, now: float, expires_in_s: int) -> tuple[str, GuestClaims]:
        claims = GuestClaims(iss=issuer, iat=int(now), exp=int(now) + expires_in_s, jti=str(uuid.uuid4()), data=data)
        payload = _b64url(claims.model_dump_json(exclude_none=True).encode())
        signing_input = f"{_HEADER}.{payload}"
        return f"{signing_input}.{self._sign(signing_input)}", claims

    def _sign(self, signing_input: str) -> str:
        return _b64url(hmac.new(self._key, signing_input.encode(), hashlib.sha256).digest())

    def decode(self, token: str) -> GuestClaims | None:
        """The claims of a JWT this emulator signed, else None (expiry is the caller's check)."""
        parts = token.split(".")
        if len(parts) != 3:
            return None
        signing_input = f"{parts[0]}.{parts[1]}"
        if not hmac.compare_digest(self._sign(signing_input), parts[2]):
            return None
        try:
            return GuestClaims.model_validate_json(_b64url_decode(parts[1]))
        except (ValidationError, binascii.Error, ValueError):
            return None

    def revoke(self, claims: GuestClaims) -> None:
        with self._lock:
            self._revoked.add(claims.jti)

    def is_revoked(self, claims: GuestClaims) -> bool:
        with self._lock:
            return claims.jti in self._revoked

    def clear(self) -> None:
        with self._lock:
            self._revoked.clear()


def authenticate_guest(
    request: Request, jwts: GuestJwts, clock: Clock, issuer: JwtIssuer, expired_status: int = 401
) -> GuestClaims:
    """The claims of a guest call's JWT, or a 401 (an OAuth token is not a guest JWT); an expired one is
    ``expired_status`` ``credentials.expired``."""
    raw = bearer_token(request)
    if raw is None:
        raise ApiError(401, "authentication.required")
    claims = jwts.decode(raw)
    if claims is None or claims.iss != issuer or jwts.is_revoked(claims):
        raise ApiError(401, "bad.credentials")
    if clock.time() >= claims.exp:
        raise ApiError(expired_status, "credentials.expired")
    return claims
