"""The emulated org's conversations and what may happen to them.

Everything here is Genesys' domain behaviour: who the participants of each kind of conversation are,
when a conversation counts as live, what a disconnect cascades to, and the domain errors that come
with it (400 ``active.conversation``, 409 on a second live cobrowse, ...). Request parsing and
response shapes live in :mod:`emulator.rest` and :mod:`emulator.views`; what the guest sockets show
is learnt from the ledger's listeners, never from here.

- :mod:`~emulator.state.model`: the records (conversation, participant, leg, message, ...).
- :mod:`~emulator.state.store`: :class:`Conversations`, the store every section shares: lookups,
  participants and messages, the disconnect cascade.
- one section per kind of conversation or feature: :mod:`~emulator.state.messaging` (agentless,
  queue outbound), :mod:`~emulator.state.cobrowse`, :mod:`~emulator.state.chats` (third-party
  chat), :mod:`~emulator.state.guestchat`, :mod:`~emulator.state.agents` (an agent's actions),
  :mod:`~emulator.state.webmessaging` (the guest sessions of the Web Messaging socket).
- :mod:`~emulator.state.analytics`: the conversations as the analytics detail query finds them
  (a lagging index), read from the store.

:class:`EmulatorState` holds one of each, built on one store; they live as long as the emulator (a
reset empties them), so whoever needs one is given it once.
"""

from __future__ import annotations

from dataclasses import dataclass

from emulator.clock import Clock
from emulator.fixtures import Fixtures
from emulator.ledger import Ledger
from emulator.state.agents import Agents
from emulator.state.chats import ThirdPartyChats
from emulator.state.cobrowse import Cobrowse
from emulator.state.guestchat import GuestChats
from emulator.state.messaging import Messaging
from emulator.state.store import Conversations
from emulator.state.webmessaging import WebMessagingSessions


@dataclass(frozen=True)
class EmulatorState:
    """The org's conversations and the section of each kind of conversation, sharing one store."""

    conversations: Conversations
    messaging: Messaging
    cobrowse: Cobrowse
    chats: ThirdPartyChats
    guest_chats: GuestChats
    agents: Agents
    webmessaging: WebMessagingSessions

    @classmethod
    def create(cls, clock: Clock, ledger: Ledger, fixtures: Fixtures) -> EmulatorState:
        conversations = Conversations(clock, ledger)
        messaging = Messaging(conversations, fixtures)
        guest_chats = GuestChats(conversations)
        return cls(
            conversations=conversations,
            messaging=messaging,
            cobrowse=Cobrowse(conversations),
            chats=ThirdPartyChats(conversations),
            guest_chats=guest_chats,
            agents=Agents(conversations, guest_chats, fixtures),
            webmessaging=WebMessagingSessions(conversations, messaging),
        )

    def reset(self) -> None:
        """No conversations and no sessions, as freshly seeded."""
        with self.conversations.lock:
            self.webmessaging.reset()
            self.conversations.reset()
