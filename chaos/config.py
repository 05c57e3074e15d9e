"""The knobs of one chaos run, and the settings Parley and the emulator run with under it."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class FaultRates(BaseModel):
    """Per-call chances of each Genesys fault (drawn per call from the run's seed)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    conflict_409: float = Field(default=0.20, ge=0, le=1, description="409 request.conflict on mutating calls.")
    unavailable_503: float = Field(default=0.05, ge=0, le=1, description="503 on every Genesys call.")
    lost_answer: float = Field(default=0.01, ge=0, le=1, description="Call performed, answer dropped (mutations).")
    rate_limited_429: float = Field(default=0.02, ge=0, le=1, description="429 with Retry-After on every call.")
    retry_after_s: int = Field(default=1, ge=0)
    latency_ms: tuple[int, int] = (1, 30)
    slow_share: float = Field(default=0.05, ge=0, le=1, description="Calls that take slow_latency_ms instead.")
    slow_latency_ms: tuple[int, int] = (100, 400)


class ChaosConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int
    commands: int = Field(default=10_000, ge=20, description="Distinct valid REST commands.")
    guests: int = Field(default=200, ge=0, description="Guest sessions (half web messaging, half Guest Chat).")
    celery_kills: int = Field(default=5, ge=0)
    guest_kills: int = Field(default=2, ge=0)
    redis_restarts: int = Field(default=1, ge=0)
    duplicate_share: float = Field(default=0.10, ge=0, le=1)
    invalid_share: float = Field(default=0.05, ge=0, le=1)
    expired_share: float = Field(default=0.01, ge=0, le=1, description="Valid commands already expired.")
    guest_messages: int = Field(default=3, ge=1, description="guest.send commands per session.")
    celery_workers: int = Field(default=2, ge=1)
    celery_concurrency: int = Field(default=4, ge=1)
    guest_workers: int = Field(default=2, ge=1)
    window: int = Field(default=48, ge=1, description="REST commands submitted but not yet ended, at most.")
    recovery_limit_s: float = Field(default=60.0, gt=0)
    drain_timeout_s: float = Field(default=240.0, gt=0, description="After the last submission, wait this long.")
    customers: int = Field(default=0, ge=0, description="message.send customers; 0: one per 25 commands.")
    non_utf8: bool = Field(default=False, description="Also submit a command that is not UTF-8 (last of all).")
    rates: FaultRates = FaultRates()
    keep_dir: bool = False

    @property
    def customer_pool(self) -> int:
        """Pool of message.send customers: small enough that each gets many commands."""
        return self.customers or max(4, self.commands // 25)


EMULATOR_ENV = {
    # The per-token limit (300/min) would make 10,000 commands take an hour; 429s are injected instead.
    "PARLEY_EMULATOR_RATE_LIMIT_ENABLED": "false",
}


def parley_env(redis_url: str, api_url: str, client_id: str, client_secret: str) -> dict[str, str]:
    """Parley's settings for the run. Timings are shortened where a default would make recovery wait on
    a timer far longer than the 60 s the verdict allows, never where it changes what Parley does."""
    return {
        "PARLEY_REDIS_URL": redis_url,
        "PARLEY_GENESYS_API_URL": api_url,
        "PARLEY_GENESYS_CLIENT_ID": client_id,
        "PARLEY_GENESYS_CLIENT_SECRET": client_secret,
        # Parley's own shared limiter must not be the bottleneck: the emulator's limit is off.
        "PARLEY_GENESYS_RATE_LIMIT_PER_MINUTE": "100000",
        # A killed Celery main process's tasks come back one visibility timeout later (900 s by default);
        # it must still exceed the task time limit and the longest retry delay (Settings.check).
        "PARLEY_VISIBILITY_TIMEOUT_S": "25",
        "PARLEY_TASK_TIME_LIMIT_S": "20",
        "PARLEY_RETRY_MAX_DELAY_S": "10",
        "PARLEY_UNACKED_RESTORE_INTERVAL_S": "2",
        # A killed pool child's execution lease and customer lease expire on their own.
        "PARLEY_EXECUTION_LEASE_MS": "3000",
        "PARLEY_NATURAL_KEY_LEASE_MS": "5000",
        # Faults are frequent (a quarter of mutating calls): short backoff, more attempts, so only a
        # genuinely permanent error ends a command in failure.
        "PARLEY_RETRY_BASE_S": "0.2",
        "PARLEY_RETRY_CAP_S": "2",
        "PARLEY_RETRY_MAX_ATTEMPTS": "12",
        "PARLEY_END_VERIFY_DEADLINE_S": "5",
        # A lost Celery message is published again after this (default: visibility timeout + 60 s). Kept
        # above the visibility timeout, as the default is: a shorter one would publish a second copy of a
        # message the broker is about to redeliver anyway.
        "PARLEY_STALL_REDISPATCH_S": "35",
        "PARLEY_CLAIM_IDLE_MS": "5000",
        # The emulator lists a conversation in analytics 2 s after it starts (its analytics_lag_s).
        "PARLEY_GENESYS_ANALYTICS_LAG_S": "5",
        # Guest workers: a killed worker's sessions are adopted within TTL + adopt period.
        "PARLEY_GUEST_LEASE_TTL_MS": "5000",
        "PARLEY_GUEST_RENEW_EVERY_S": "1.5",
        "PARLEY_GUEST_ADOPT_EVERY_S": "1",
        "PARLEY_GUEST_BACKOFF_INITIAL_S": "0.2",
        "PARLEY_GUEST_BACKOFF_MAX_S": "2",
    }
