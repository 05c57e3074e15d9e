"""One running emulator: its configuration, clock, org state, ledger, faults, limits and tokens, and
its guest-socket side (live sockets, Web Messaging sessions, Guest Chat streams, simulated agent).

:class:`Emulator` builds each part once and hands every other part the few it uses; nothing holds
the Emulator itself. Parts live as long as the emulator: a reset empties them and a PATCH of the
config changes the one config object in place, so what a part was given stays current. Only the
edges look the Emulator up (``app.state.emulator``): the gateway, the admin API, and
:func:`emulator.rest.api.api_route`, which hands a REST handler the parts it may use.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from emulator.agent import SimulatedAgent
from emulator.auth import GuestJwts, TokenStore
from emulator.clock import Clock
from emulator.config import EmulatorConfig
from emulator.faults import FaultInjector
from emulator.fixtures import SEEDED_ORGS, Fixtures
from emulator.ledger import Ledger
from emulator.ratelimit import RateLimiter
from emulator.state import EmulatorState
from emulator.ws.guestchat import GuestChatStreams
from emulator.ws.links import LinkRegistry
from emulator.ws.webmessaging import GuestSockets
from emulator.ws.webmessaging_sessions import SessionSockets


class ConfigPatch(BaseModel):
    """Body of ``PATCH /__emulator/config``: the runtime-tunable settings (see EmulatorConfig)."""

    model_config = ConfigDict(extra="forbid")

    token_expires_in_s: int | None = None
    rate_limit_enabled: bool | None = None
    rate_limit_per_minute: int | None = None
    guest_jwt_expires_in_s: int | None = None
    webmessaging_jwt_expires_in_s: int | None = None
    cobrowse_offer_s: int | None = None
    heartbeat_interval_s: float | None = None
    webmessaging_session_duration_s: int | None = None
    webmessaging_disconnect_read_only: bool | None = None
    webmessaging_require_origin: bool | None = None
    webmessaging_limits_enabled: bool | None = None
    webmessaging_connection_window_s: float | None = None
    analytics_lag_s: float | None = None
    disconnect_delay_s: float | None = None
    auto_agent: bool | None = None
    agent_join_delay_s: float | None = None
    agent_reply_delay_s: float | None = None
    agent_greeting: str | None = None
    agent_bye_phrase: str | None = None
    agent_farewell: str | None = None


class Emulator:
    def __init__(self, config: EmulatorConfig, fixtures: Fixtures | None = None) -> None:
        self._initial_config = config
        self.config = config.model_copy()  # changed in place (tune, reset): every part reads it live
        fixtures = fixtures or SEEDED_ORGS[config.org]
        self.fixtures = fixtures
        self.clock = Clock()
        self.ledger = Ledger()
        self.faults = FaultInjector(config.fault_seed)
        self.rate_limiter = RateLimiter(self.clock)
        # Tokens survive a reset: a client under test keeps its cached token across test cases.
        self.tokens = TokenStore()
        self.jwts = GuestJwts()
        self.state = EmulatorState.create(self.clock, self.ledger, fixtures)
        # Guest sockets: listeners of the ledger, so they survive a reset (the ledger object does).
        self.links = LinkRegistry()
        conversations = self.state.conversations
        self.session_sockets = SessionSockets(
            self.ledger, self.clock, self.config, self.links, conversations, self.state.webmessaging, fixtures
        )
        self.guest_sockets = GuestSockets(
            fixtures=fixtures,
            config=self.config,
            clock=self.clock,
            jwts=self.jwts,
            ledger=self.ledger,
            links=self.links,
            sessions=self.session_sockets,
            state=self.state.webmessaging,
        )
        self.guest_streams = GuestChatStreams(
            self.ledger, self.clock, self.config, self.jwts, self.links, conversations, self.state.guest_chats
        )
        self.agent = SimulatedAgent(self.ledger, self.config, conversations, self.state.agents, fixtures.agents[0])

    def tune(self, patch: ConfigPatch) -> EmulatorConfig:
        """Apply runtime-tunable settings; validated like the environment would be."""
        merged = self.config.model_dump() | patch.model_dump(exclude_none=True)
        self._configure(EmulatorConfig.model_validate(merged))
        return self.config

    def reset(self) -> None:
        """Back to a freshly seeded org: no conversations, ledger, faults or rate windows; clock and
        configuration as at start. Open guest sockets are closed (1012: their sessions are gone)."""
        self.links.close_all(1012, "Emulator reset")
        self.agent.reset()
        self.session_sockets.reset()
        self._configure(self._initial_config)
        self.clock.reset()
        self.ledger.clear()
        self.faults.clear()
        self.rate_limiter.clear()
        self.jwts.clear()
        self.state.reset()

    def _configure(self, values: EmulatorConfig) -> None:
        """The config object every part holds takes ``values``."""
        for name in EmulatorConfig.model_fields:
            setattr(self.config, name, getattr(values, name))
