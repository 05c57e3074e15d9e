"""Typed settings, read from the environment (prefix ``PARLEY_``).

Every process (ingestion worker, Celery worker, guest worker, CLI, emulator) builds its settings
from here, so a setting has one name and one default everywhere.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from parley.orgs import Org, load_orgs
from parley.webhook_signing import parse_secrets

DAY_S = 24 * 3600


class SettingsConflict(ValueError):
    """Settings that are each valid but wrong together; the message names them and why."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PARLEY_", extra="ignore")

    # --- Redis -------------------------------------------------------------------------------
    redis_url: str | None = Field(
        default=None, description="The Redis to use; unset: `parley run` starts an embedded one."
    )
    data_dir: str = Field(default=".parley", description="Where the embedded Redis keeps its AOF.")
    embedded_redis_port: int = Field(default=6390, description="Port of the embedded Redis `parley run` starts.")
    redis_tls_ca_file: str | None = Field(
        default=None, description="rediss:// only: CA certificates (PEM) to verify Redis with; unset: the system's.")
    redis_tls_cert_file: str | None = Field(
        default=None, description="rediss:// only: client certificate (PEM), when Redis asks for one.")
    redis_tls_key_file: str | None = Field(default=None, description="rediss:// only: the client certificate's key.")
    redis_tls_verify: Literal["full", "ca", "none"] = Field(
        default="full",
        description="rediss:// only: `full` checks the certificate and the host name, `ca` the certificate only, "
        "`none` nothing (encryption without authentication).",
    )
    redis_sentinels: str | None = Field(
        default=None,
        description="Redis Sentinels as host:port,host:port: Parley then asks them for the master on every new "
        "connection; PARLEY_REDIS_URL gives only the login, db and scheme, with the master name as host.",
    )
    redis_sentinel_master: str | None = Field(
        default=None, description="Name of the master the Sentinels watch (with PARLEY_REDIS_SENTINELS).")
    redis_sentinel_username: str | None = Field(default=None, description="ACL user to log in to the Sentinels.")
    redis_sentinel_password: SecretStr | None = Field(default=None, description="Password of the Sentinels.")

    # --- Genesys Cloud -----------------------------------------------------------------------
    genesys_region: str | None = Field(
        default=None, description="Region or API host (mypurecloud.ie, usw2.pure.cloud); unset: emulator."
    )
    genesys_api_url: str | None = Field(default=None, description="Explicit API base URL.")
    genesys_login_url: str | None = Field(default=None, description="Explicit OAuth base URL.")
    genesys_client_id: str | None = Field(default=None, description="OAuth client id; unset: the emulator's.")
    genesys_client_secret: SecretStr | None = Field(default=None, description="OAuth client secret.")
    genesys_rate_limit_per_minute: int = Field(
        default=300, ge=1, description="Requests per minute shared by every process using the OAuth client."
    )
    genesys_rate_wait_max_s: float = Field(
        default=0.0, ge=0,
        description="A command whose first Genesys request would wait longer than this for its org's rate "
        "budget is parked (its place in its lane's line kept for it) and comes back when its turn is due, "
        "instead of holding a Celery worker.",
    )
    genesys_connect_timeout_s: float = Field(default=5.0, gt=0, description="Connect timeout of Genesys calls.")
    genesys_read_timeout_s: float = Field(default=15.0, gt=0, description="Read timeout of Genesys calls.")
    genesys_analytics_lag_s: float = Field(
        default=30.0, ge=0,
        description="How long Genesys analytics may take to list a new conversation: a send whose answer was "
        "lost is looked up there only once this has passed since the attempt.",
    )
    genesys_token_refresh_margin_s: int = Field(
        default=300, ge=0, description="Refresh the OAuth token this long before it expires."
    )
    orgs: Annotated[dict[str, Org], NoDecode] = Field(
        default_factory=dict,
        description="Genesys orgs besides `default` (the PARLEY_GENESYS_* ones): a JSON or TOML file, or inline "
        "JSON, alias -> region or api_url, client_id, client_secret_env or client_secret_file, "
        "rate_limit_per_minute (see Several orgs).",
    )

    # --- Emulator / Flower -------------------------------------------------------------------
    emulator_host: str = Field(default="127.0.0.1", description="Where `parley run` starts the emulator.")
    emulator_port: int = Field(default=8089, description="Port of the emulator `parley run` starts.")
    flower_port: int = Field(default=5555, description="Port of Flower.")
    flower_basic_auth: SecretStr | None = Field(
        default=None, description="`user:password` for every Flower page, API call and /metrics.")

    # --- Metrics -------------------------------------------------------------------------------
    metrics_host: str = Field(default="127.0.0.1", description="Address /metrics listens on.")
    metrics_port: int | None = Field(
        default=None, ge=0, le=65535,
        description="Port of /metrics: `parley run` serves on 9464 unless set; a worker run alone serves only "
        "when it is set; 0 serves nothing.",
    )

    # --- Ingestion ---------------------------------------------------------------------------
    commands_stream: str = Field(default="parley:commands", description="Stream producers XADD commands to.")
    events_stream: str = Field(default="parley:events", description="Stream Parley appends events to.")
    dead_stream: str = Field(default="parley:dead", description="Stream of dead letters.")
    consumer_group: str = Field(default="parley-ingest", description="Consumer group of the ingestion workers.")
    max_deliveries: int = Field(default=5, ge=1, description="Stream deliveries before dead-lettering.")
    claim_idle_ms: int = Field(default=30_000, ge=100, description="Reclaim pending entries idle this long.")
    read_batch: int = Field(default=64, ge=1, description="Entries read (and committed) per batch.")
    read_block_ms: int = Field(default=1_000, ge=1, description="How long one XREADGROUP blocks.")
    commands_keep_s: int = Field(
        default=3600, ge=0,
        description="How long a handled entry stays on the commands stream; ingest then trims it (it holds the "
        "producer's JSON, customer text included; the command's record keeps what it needs).",
    )
    idempotency_retention_s: int = Field(
        default=7 * DAY_S, ge=60, description="How long idempotency keys and command records are kept."
    )
    events_maxlen: int = Field(default=1_000_000, ge=1000, description="Approximate cap of the events stream.")

    # --- Celery execution ------------------------------------------------------------------
    task_time_limit_s: int = Field(default=120, ge=5, description="Hard limit of one task execution.")
    retry_max_delay_s: int = Field(default=300, ge=1, description="Longest countdown a retry may use.")
    retry_base_s: float = Field(default=1.0, gt=0, description="First backoff window of the retry policy.")
    retry_cap_s: float = Field(default=60.0, gt=0, description="Largest backoff window.")
    retry_max_attempts: int = Field(default=8, ge=1, description="Executions of a command, the first included.")
    retry_after_max_s: float = Field(
        default=600.0, gt=0,
        description="Longest Retry-After a 429 is waited out; a longer one (a daily quota) fails the command with a "
        "hint, and does not pause the other commands.",
    )
    retry_overrides: dict[str, dict[str, float | int]] = Field(
        default_factory=dict,
        description='Per command type, e.g. {"cobrowse.start": {"base_s": 2, "max_attempts": 12}} (JSON).',
    )
    visibility_timeout_s: int = Field(
        default=900, ge=10, description="Redis broker visibility timeout; must exceed runtime and countdowns."
    )
    unacked_restore_interval_s: int = Field(
        default=10, ge=1,
        description="How often workers requeue tasks of a dead worker whose visibility timeout passed.",
    )
    max_crash_redeliveries: int = Field(
        default=3, ge=0, description="Executions a task may lose to dying workers before it is dead-lettered."
    )
    execution_lease_ms: int = Field(
        default=15_000, ge=1000, description="Lease held (and renewed) while a command executes."
    )
    celery_concurrency: int = Field(default=4, ge=1, description="Celery worker processes under `parley run`.")
    stall_redispatch_s: int | None = Field(
        default=None, ge=5,
        description="Re-dispatch a command with no progress for this long (default: visibility timeout + 60 s).",
    )
    natural_key_lease_ms: int = Field(
        default=30_000, ge=1000,
        description="Lease serializing commands on one customer or conversation; freed by a dead worker after it.",
    )
    state_max_age_s: float = Field(
        default=60.0, ge=0,
        description="A cached live cobrowse older than this is confirmed with Genesys before use.",
    )
    end_verify_deadline_s: float = Field(
        default=30.0, gt=0, description="conversation.end reads the state back until disconnected or this passes."
    )

    # --- Logs -----------------------------------------------------------------------------------
    log_format: Literal["auto", "json", "text"] = Field(
        default="auto", description="Log lines on stderr: `json` (one object per line), `text` (for a person), "
        "`auto` (text on a terminal, JSON otherwise).")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="Lowest level logged (any case).")

    # --- Traces (optional) ------------------------------------------------------------------------
    otel_enabled: bool = Field(
        default=False,
        description="Export OpenTelemetry spans of every command (needs the `otel` extra) to the OTLP endpoint of "
        "the standard OTEL_EXPORTER_OTLP_* variables (see Traces).")
    otel_spans_file: str | None = Field(
        default=None, description="With PARLEY_OTEL_ENABLED: append spans to this file as JSON lines instead "
        "(tests, debugging).")

    # --- Events webhook ----------------------------------------------------------------------
    webhook_url: str | None = Field(
        default=None, description="POST every event here, signed per Standard Webhooks (needs the secret)."
    )
    webhook_secret: SecretStr | None = Field(
        default=None, validate_default=True,
        description="`whsec_` secret of the webhook signatures; during a rotation the new and the old one, "
        "space-separated. A plain (non-`whsec_`) secret is deprecated: it also signs `X-Parley-Signature`.",
    )
    webhook_timeout_s: float = Field(default=10.0, gt=0, description="Timeout of one webhook delivery.")
    webhook_max_attempts: int = Field(
        default=10, ge=1, description="Deliveries of one event before it is dead-lettered."
    )

    @field_validator("log_format", "log_level", mode="before")
    @classmethod
    def _any_case(cls, value: object, info: ValidationInfo) -> object:
        if not isinstance(value, str):
            return value
        return value.upper() if info.field_name == "log_level" else value.lower()

    @field_validator("orgs", mode="before")
    @classmethod
    def _load_orgs(cls, value: object) -> dict[str, Org]:
        return load_orgs(value)

    @field_validator("redis_sentinels")
    @classmethod
    def _host_port_list(cls, value: str | None) -> str | None:
        if not (value or "").strip():
            return None  # set but empty (compose's ${VAR:-}): no Sentinels
        for item in (value or "").split(","):
            host, colon, port = item.strip().rpartition(":")
            if not item.strip() or (colon and not (host and port.isdigit() and 0 < int(port) < 65536)):
                raise ValueError("must be host:port,host:port (a Sentinel's port defaults to 26379)")
        return value

    @field_validator("metrics_port", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value  # compose's ${VAR:-}

    @field_validator("flower_basic_auth")
    @classmethod
    def _user_and_password(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            user, colon, password = value.get_secret_value().partition(":")
            if not (user and colon and password):
                raise ValueError("must be user:password, both non-empty")
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _webhook_keys(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if value is not None and not value.get_secret_value().strip():
            value = None  # set but empty (compose passes unset variables on as "")
        if value is None:
            if info.data.get("webhook_url"):
                raise ValueError("PARLEY_WEBHOOK_URL needs it; make one with whsec_$(openssl rand -base64 32)")
            return None
        parse_secrets(value.get_secret_value())
        return value

    def check(self) -> None:
        """Refuse settings that would make Celery run a task twice (reference §1: VT vs ETA/runtime)."""
        longest = max(self.task_time_limit_s, self.retry_max_delay_s)
        if self.visibility_timeout_s <= longest:
            raise SettingsConflict(
                f"PARLEY_VISIBILITY_TIMEOUT_S ({self.visibility_timeout_s}) must exceed the task time limit and "
                f"the longest retry delay ({longest}); otherwise Redis redelivers tasks that are still running"
            )

    @property
    def stall_after_s(self) -> int:
        """No progress for this long means the command's Celery message was lost: send it again."""
        return self.stall_redispatch_s or self.visibility_timeout_s + 60

    @property
    def uses_emulator(self) -> bool:
        """True when no real Genesys Cloud endpoint is configured."""
        return not (self.genesys_region or self.genesys_api_url)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
