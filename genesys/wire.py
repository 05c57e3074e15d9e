"""One HTTP exchange with Genesys: build the request, send it, turn the answer into a model or a
typed error. Shared by the sync and async clients (see :mod:`genesys.effects`).

Logs carry method, path, status and correlation id only: never bodies, tokens or query strings
(guest chat paging uses message ids, harmless, but the rule is simpler without exceptions).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Generic, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from genesys.effects import HttpExchange, Plan
from genesys.errors import (
    GenesysConnectionError,
    GenesysError,
    GenesysInvalidResponse,
    GenesysTimeout,
    RateLimitInfo,
)
from genesys.models import ErrorBody, OAuthError, RequestModel
from parley import metrics, tracing

log = logging.getLogger("genesys.http")

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

USER_AGENT = "parley-genesys-client/0.1"


# --- Operations ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class OAuth:
    """Bearer client-credentials token; counts against the client's rate limit."""


@dataclass(frozen=True)
class GuestJwt:
    """Bearer guest JWT (Guest Chat, Web Messaging): not the OAuth token, not rate-limited by us."""

    jwt: str = field(repr=False)


@dataclass(frozen=True)
class Anonymous:
    """No Authorization header (guest chat create)."""


Auth = OAuth | GuestJwt | Anonymous
QueryValue = str | int | bool


@dataclass(frozen=True)
class Operation(Generic[T]):
    """One Genesys REST call. ``response`` is the success model, or None for bodiless successes."""

    method: str
    path: str
    response: type[T] | None
    auth: Auth = field(default_factory=OAuth)
    body: RequestModel | None = field(default=None, repr=False)
    params: dict[str, QueryValue] = field(default_factory=dict, repr=False)
    headers: dict[str, str] = field(default_factory=dict, repr=False)
    """Extra request headers (the guest APIs' ``Origin``)."""
    read: bool = False
    """A POST that only reads (an analytics query, a bulk read). With GET, a lost answer leaves
    nothing unknown in Genesys: the retry policy need not look for an effect."""

    @property
    def changes_nothing(self) -> bool:
        return self.read or self.method == "GET"


def build_request(op: Operation[T], base_url: str, bearer: str | None) -> httpx.Request:
    headers = {"Accept": "application/json", "User-Agent": USER_AGENT, **op.headers}
    if bearer:
        headers["Authorization"] = f"Bearer {bearer}"
    params = {k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in op.params.items()}
    return httpx.Request(
        op.method,
        base_url + op.path,
        params=params or None,
        json=op.body.to_wire() if op.body is not None else None,
        headers=headers,
    )


# --- Sending -------------------------------------------------------------------------------------
def plan_send(request: httpx.Request) -> Plan[httpx.Response]:
    """Send ``request``; transport failures become GenesysTimeout / GenesysConnectionError."""
    method, path = request.method, request.url.path
    started = time.perf_counter()
    call = tracing.http_call(request)
    try:
        response: httpx.Response = yield HttpExchange(request)
    except httpx.TimeoutException as exc:
        call.end(error="timeout")
        metrics.genesys_request(metrics.route(method, path), "timeout", time.perf_counter() - started)
        log.warning("genesys %s %s -> timeout (%s)", method, path, type(exc).__name__)
        raise GenesysTimeout(f"{type(exc).__name__} on {method} {path}", method=method, path=path) from exc
    except httpx.TransportError as exc:
        call.end(error="connection_error")
        metrics.genesys_request(metrics.route(method, path), "connection_error", time.perf_counter() - started)
        log.warning("genesys %s %s -> connection error (%s)", method, path, type(exc).__name__)
        raise GenesysConnectionError(f"{type(exc).__name__} on {method} {path}", method=method, path=path) from exc
    call.end(response.status_code)
    metrics.genesys_request(metrics.route(method, path), response.status_code, time.perf_counter() - started)
    log.log(
        logging.DEBUG if response.is_success else logging.INFO,
        "genesys %s %s -> %s corr=%s %.0f ms",
        method,
        path,
        response.status_code,
        response.headers.get("ININ-Correlation-Id", "-"),
        (time.perf_counter() - started) * 1000,
    )
    return response


# --- Decoding ------------------------------------------------------------------------------------
def decode(op: Operation[T], response: httpx.Response) -> T:
    """The success model, or raise GenesysError / GenesysInvalidResponse."""
    if not response.is_success:
        raise error_from_response(response)
    if op.response is None:
        return None  # type: ignore[return-value]  # Operation[None]: a bodiless success
    return parse_model(op.response, response)  # type: ignore[type-var]


def parse_model(model: type[M], response: httpx.Response) -> M:
    try:
        return model.model_validate_json(response.content)
    except ValidationError as exc:
        # The call succeeded (its effect happened) but its answer is unreadable: not retryable.
        raise GenesysInvalidResponse(
            f"{model.__name__} expected; {exc.error_count()} validation errors",
            status=response.status_code,
            method=response.request.method,
            path=response.request.url.path,
        ) from exc


def error_from_response(response: httpx.Response) -> GenesysError:
    """A GenesysError from an ErrorBody, an OAuth ``{error, description}`` or a non-JSON body."""
    headers = response.headers
    code, message, params, context_id = "", response.reason_phrase, {}, None
    try:
        payload = json.loads(response.content) if response.content else None
    except ValueError:
        payload = None  # a proxy's HTML page: keep status and reason only
    if isinstance(payload, dict) and "error" in payload and "code" not in payload:
        oauth = OAuthError.model_validate(payload)
        code, message = oauth.error, oauth.description or oauth.error_description or message
    elif isinstance(payload, dict):
        try:
            body = ErrorBody.model_validate(payload)
        except ValidationError:
            body = ErrorBody()
        code = body.code or ""
        message = body.message or message
        params = body.message_params or {}
        context_id = body.context_id
    return GenesysError(
        status=response.status_code,
        code=code,
        message=message,
        message_params=params,
        context_id=context_id,
        correlation_id=headers.get("ININ-Correlation-Id"),
        method=response.request.method,
        path=response.request.url.path,
        rate_limit=rate_limit_info(headers),
    )


def rate_limit_info(headers: httpx.Headers, now: datetime | None = None) -> RateLimitInfo:
    return RateLimitInfo(
        retry_after_s=parse_retry_after(headers.get("Retry-After"), now),
        count=_int(headers.get("inin-ratelimit-count")),
        allowed=_int(headers.get("inin-ratelimit-allowed")),
        reset_s=_float(headers.get("inin-ratelimit-reset")),
    )


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds: delta-seconds or an HTTP-date (RFC 9110 allows both)."""
    if value is None or not value.strip():
        return None
    seconds = _float(value)
    if seconds is not None:
        return max(0.0, seconds)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _int(value: str | None) -> int | None:
    number = _float(value)
    return int(number) if number is not None else None
