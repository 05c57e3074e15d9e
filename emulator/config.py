"""Behaviour settings of the emulator, read from the environment (prefix ``PARLEY_EMULATOR_``).

Host and port are Parley's own settings (``PARLEY_EMULATOR_HOST`` / ``PARLEY_EMULATOR_PORT`` in
:mod:`parley.settings`), so the product and the emulator agree on where it listens. Everything here
shapes how the emulator answers; the runtime-tunable ones can also be changed on a running emulator
through ``PATCH /__emulator/config`` (a test over loopback cannot set env vars afterwards).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class EmulatorConfig(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PARLEY_EMULATOR_", extra="ignore")

    # --- runtime-tunable (PATCH /__emulator/config, emulator.runtime.ConfigPatch) -----------------
    token_expires_in_s: int = Field(
        default=86399, ge=1, description="Lifetime of client-credentials tokens (Genesys: 86399)."
    )
    rate_limit_enabled: bool = Field(
        default=True, description="False lifts the per-token limit (benchmarks); headers still sent."
    )
    rate_limit_per_minute: int = Field(
        default=300, ge=1, description="client.credentials.token.rate.per.minute (Genesys: 300)."
    )
    guest_jwt_expires_in_s: int = Field(
        default=75240, ge=1, description="Guest Chat JWT lifetime (one real capture lived ~20.9 h)."
    )
    webmessaging_jwt_expires_in_s: int = Field(
        default=900, ge=1, description="Web messaging guest JWT lifetime (guessed; not documented)."
    )
    cobrowse_offer_s: int = Field(default=600, ge=1, description="dateOfferEnds = start + this.")

    # Guest websockets (runtime-tunable too).
    heartbeat_interval_s: float = Field(
        default=30.0, gt=0, description="Guest Chat event stream: a channel.metadata heartbeat this often."
    )
    webmessaging_session_duration_s: int = Field(
        default=259200, ge=1, description="Web Messaging session lifetime after its last message (Genesys: 72 h)."
    )
    webmessaging_disconnect_read_only: bool = Field(
        default=True,
        description="Conversation Disconnect type: True = ReadOnly (the session refuses new messages after the "
        "agent ends the conversation), False = Send (the next guest message starts a new conversation).",
    )
    webmessaging_require_origin: bool = Field(
        default=False, description="Refuse (403) a guest socket without Origin on a domain-restricted deployment."
    )
    webmessaging_limits_enabled: bool = Field(
        default=True, description="False lifts the guest socket limits (per deployment: new sockets per minute, "
        "messages per second per session; 60 requests/min, 2 echoes/min per connection)."
    )
    webmessaging_connection_window_s: float = Field(
        default=60.0, gt=0, description="The period a deployment's connections_per_minute counts over: a test "
        "shortens it to compress time (a minute's worth of sockets in 6 s)."
    )

    # Analytics (runtime-tunable too).
    analytics_lag_s: float = Field(
        default=2.0,
        ge=0,
        description="Analytics is fed asynchronously: a conversation is found by the detail query this long "
        "after it started, and its end shows (conversationEnd) this long after it ended.",
    )

    # Eventual consistency (runtime-tunable too).
    disconnect_delay_s: float = Field(
        default=0.0,
        ge=0,
        description="PATCH {state: disconnected} on a conversation answers 200 at once but applies this long "
        "later (reads show it live until then), as Genesys' eventual consistency does (seed 002).",
    )

    # Simulated agent (runtime-tunable too).
    auto_agent: bool = Field(default=True, description="An agent joins and answers every routed guest session.")
    agent_join_delay_s: float = Field(default=0.2, ge=0, description="Routed -> the agent joins after this long.")
    agent_reply_delay_s: float = Field(
        default=0.1, ge=0, description="The agent types this long before answering each guest message."
    )
    agent_greeting: str = Field(
        default="Hello, my name is {agent}. How can I help you?", description="First words; {agent} = its name."
    )
    agent_bye_phrase: str = Field(
        default="bye", min_length=1, description="A guest message that is this (any case, punctuation around) ends it."
    )
    agent_farewell: str = Field(default="Goodbye!", min_length=1, description="The agent's last words.")

    # --- fixed at start ------------------------------------------------------------------------
    org: Literal["default", "second"] = Field(
        default="default",
        description="Which seeded org this emulator serves (credentials, deployments, queues, contacts); run "
        "one emulator per org to have several, each with its own state, ledger and rate windows.",
    )
    fault_seed: int = Field(default=0, description="Seed of the RNG behind probabilistic faults.")
    max_hang_ms: int = Field(
        default=120_000, ge=0, description="Upper bound of a 'hang' fault when the client never gives up."
    )
