"""Typed errors for everything that can go wrong talking to Genesys Cloud.

Every non-2xx answer becomes a :class:`GenesysError` carrying the ErrorBody fields and the rate-limit
headers; transport failures become :class:`GenesysTimeout` or :class:`GenesysConnectionError`. The
retry policy (tasks) classifies these, never raw httpx exceptions.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class GenesysTransportError(Exception):
    """The request may or may not have reached Genesys: the outcome is unknown."""

    changed_nothing = False
    """Set when the request was a read (:attr:`Operation.changes_nothing`): nothing is unknown then."""

    def __init__(self, message: str, *, method: str = "", path: str = "") -> None:
        super().__init__(message)
        self.method = method
        self.path = path


class GenesysTimeout(GenesysTransportError):
    """Connect, read, write or pool timeout."""


class GenesysConnectionError(GenesysTransportError):
    """Connection refused, reset or dropped."""


@dataclass(frozen=True)
class RateLimitInfo:
    """The ``inin-ratelimit-*`` headers and ``Retry-After`` of one response."""

    retry_after_s: float | None = None
    count: int | None = None
    allowed: int | None = None
    reset_s: float | None = None


@dataclass
class GenesysError(Exception):
    """A non-2xx answer from Genesys Cloud (or the emulator), with its ErrorBody."""

    status: int
    code: str = ""
    message: str = ""
    message_params: dict[str, str] = field(default_factory=dict)
    context_id: str | None = None
    correlation_id: str | None = None
    method: str = ""
    path: str = ""
    rate_limit: RateLimitInfo = field(default_factory=RateLimitInfo)
    changed_nothing: bool = False
    """The request was a read (:attr:`Operation.changes_nothing`): a 5xx cannot hide an effect."""

    def __post_init__(self) -> None:
        Exception.__init__(self, f"{self.status} {self.code}: {self.message}")

    @property
    def retry_after_s(self) -> float | None:
        return self.rate_limit.retry_after_s

    def __str__(self) -> str:
        return f"{self.method} {self.path} -> {self.status} {self.code}: {self.message}".strip()


class GenesysInvalidResponse(Exception):
    """A 2xx whose body does not parse as the documented model: the call took effect, but its result
    is unreadable. Not retryable as is (retrying could repeat the effect)."""

    def __init__(self, message: str, *, status: int, method: str = "", path: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.method = method
        self.path = path
