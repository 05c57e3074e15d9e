"""Settings of the guest worker (environment, prefix ``PARLEY_GUEST_``).

Kept beside the worker rather than in :mod:`parley.settings` because only this process reads them;
shared settings (Redis, Genesys endpoints, streams) still come from :class:`parley.settings.Settings`.
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from guest.common import Backoff

HOUR_S = 3600


class GuestSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PARLEY_GUEST_", extra="ignore")

    consumer_group: str = Field(default="parley-guest", description="Consumer group on parley:guest:commands.")
    read_batch: int = Field(default=256, ge=1, description="Guest commands routed per read.")
    read_block_ms: int = Field(default=1000, ge=10, description="How long one read of guest commands blocks.")

    # Ownership. A session belongs to the worker named in its record for as long as that worker's
    # lease lives: renewing one key per worker keeps the cost flat however many sessions it holds.
    lease_ttl_ms: int = Field(default=10_000, ge=500, description="A worker silent this long is dead.")
    renew_every_s: float = Field(default=3.0, gt=0, description="Lease renewal period (about TTL/3).")
    adopt_every_s: float = Field(default=2.0, gt=0, description="How often to look for dead workers.")
    adopt_batch: int = Field(default=100, ge=1, description="Sessions taken from a dead worker per step.")
    max_sessions: int = Field(default=20_000, ge=1, description="Stop adopting beyond this many sessions.")

    # Sockets and protocol timing.
    ping_interval_s: float = Field(default=17.0, gt=0, description="Websocket protocol ping (15-20 s).")
    ping_timeout_s: float = Field(default=20.0, gt=0, description="A ping unanswered this long drops the socket.")
    open_timeout_s: float = Field(default=10.0, gt=0, description="Longest websocket opening handshake.")
    reorder_window_s: float = Field(
        default=0.025, ge=0,
        description="Agent messages are held this long to be released in server-time order; it adds to "
                    "relay latency, and history backfill covers what arrives later.",
    )
    reconnect_timeout_s: float = Field(default=300.0, gt=0, description="Give a dropped session up after this.")
    backoff_initial_s: float = Field(default=1.0, gt=0, description="First reconnect delay (then doubling).")
    backoff_max_s: float = Field(default=30.0, gt=0, description="Longest reconnect delay.")
    webmessaging_auto_start: bool = Field(
        default=False, description="The deployments have autoStart: send Presence Join on a new session."
    )
    webmessaging_clear_on_end: bool = Field(
        default=True, description="The deployments have Conversation Clear: guest.end clears, then closes."
    )
    history_clock_slack_s: float = Field(
        default=30.0, ge=0, description="Clock disagreement allowed when matching our message in history."
    )
    dedup_capacity: int = Field(default=128, ge=16, description="Agent message ids a session keeps in memory.")

    # Genesys' guest limits (see workers.guest.budget): new sockets per deployment, messages per session.
    connect_per_minute: float = Field(
        default=900.0, gt=0,
        description="New guest sockets per minute per deployment, fleet-wide (Genesys refuses more than 1,000).",
    )
    connect_burst: int = Field(
        default=50, ge=1,
        description="New guest sockets a deployment's idle budget allows at once; with the rate, at most "
                    "burst + rate in any minute.",
    )
    messages_per_second: float = Field(
        default=2.0, ge=0,
        description="Guest messages a session sends per second at most (Genesys: 2/s since December 2023); "
                    "0 = unpaced. A 429 from Genesys is still waited out (retryAfter).",
    )


    # Redis.
    batch_window_s: float = Field(
        default=0.001, ge=0, le=0.05,
        description="How long a batch of Redis calls waits for more before it goes; 0 = the next loop turn.",
    )

    # Persistence.
    session_ttl_s: int = Field(default=72 * HOUR_S, ge=60, description="Until Genesys reports the real lifetime.")
    ended_retention_s: int = Field(default=HOUR_S, ge=1, description="Keep an ended session's record this long.")
    checkpoint_every_s: float = Field(
        default=60.0, ge=0,
        description="Save the relay checkpoint at most this often (and on handover); it only narrows the "
                    "history an adopter reads, the relay set in Redis is what keeps relays exactly once.",
    )
    reconcile_timeout_s: float = Field(
        default=60.0, gt=0, description="Longest wait for history to settle a send a dead worker left unconfirmed."
    )
    idle_end_s: float = Field(
        default=0.0, ge=0,
        description="End a guest session after this long without a message either way (guest.ended by system); "
                    "0 = never. Under Genesys' default Messenger configuration (Conversation Disconnect off) the "
                    "agent's end is never told to the guest, so an idle limit is how such a session ends.",
    )


@lru_cache(maxsize=8)
def _backoff(initial_s: float, maximum_s: float) -> Backoff:
    return Backoff(initial=initial_s, maximum=maximum_s)


def backoff(settings: GuestSettings) -> Backoff:
    """The reconnect backoff, one frozen instance shared by every session."""
    return _backoff(settings.backoff_initial_s, settings.backoff_max_s)


def message_interval_s(settings: GuestSettings) -> float:
    """The shortest time between two guest message sends of one session (0: unpaced)."""
    return 1 / settings.messages_per_second if settings.messages_per_second else 0.0
