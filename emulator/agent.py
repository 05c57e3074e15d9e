"""The simulated agent: joins every routed guest session and answers, so a guest has someone to talk to.

Driven by the ledger. A Guest Chat is routed when its event stream attaches
(``guest.event_stream.attached``); a Web Messaging guest conversation when the guest starts it
(``conversation.created`` by the guest). ``agent_join_delay_s`` later the first fixture agent joins
(a Guest Chat stream shows ALERTING, CONNECTED and a member-join) and greets (``agent_greeting``).
Each guest message then gets a typing indicator and, ``agent_reply_delay_s`` later, a deterministic
answer: ``You said: <its first 50 characters>``. A message that is ``agent_bye_phrase`` (any case,
punctuation around it ignored) gets ``agent_farewell``, and the agent ends the conversation: Web
Messaging guests see an Outbound Presence Disconnect (read-only per
``webmessaging_disconnect_read_only``), Guest Chat guests the agent's and their own DISCONNECTED.

Each conversation has one worker task doing its actions in order, so an answer never overtakes the
greeting or an earlier answer. ``auto_agent`` is read before every action: switching it off (PATCH
``/__emulator/config``) silences the agent at once. The agent runs in the server's event loop,
started by the app's lifespan (uvicorn, or Starlette's TestClient used as a context manager); an app
driven in process through httpx's ASGITransport has no lifespan and no agent, and tests there play
the agent with the admin calls. Guest text is read from the stored messages and never logged.
"""

from __future__ import annotations

import asyncio
import logging
import string
import threading
from collections.abc import Callable
from dataclasses import dataclass

from emulator.config import EmulatorConfig
from emulator.errors import ApiError
from emulator.fixtures import Agent
from emulator.ledger import Ledger, LedgerEntry
from emulator.state.agents import Agents
from emulator.state.model import Conversation
from emulator.state.store import Conversations

log = logging.getLogger("emulator.agent")

ECHO_PREFIX = "You said: "
ECHO_CHARS = 50


@dataclass(frozen=True)
class _Join:
    pass


@dataclass(frozen=True)
class _Reply:
    message_id: str


_Action = _Join | _Reply


@dataclass
class _Worker:
    queue: asyncio.Queue[_Action]
    task: asyncio.Task[None]


def answer(text: str) -> str:
    """What the agent says to a guest message (other than the bye phrase)."""
    return ECHO_PREFIX + text[:ECHO_CHARS]


def is_bye(text: str, phrase: str) -> bool:
    strip = string.punctuation + string.whitespace
    return text.strip(strip).casefold() == phrase.strip(strip).casefold()


def routed(entry: LedgerEntry) -> bool:
    """Does this entry route a guest session to the agents' queue?"""
    if entry.kind == "guest.event_stream.attached":
        return True
    return entry.kind == "conversation.created" and entry.session_id is not None and entry.by == "guest"


class SimulatedAgent:
    """Plays ``agent`` (a fixture agent) in every routed guest session, as ``config`` says (read live)."""

    def __init__(
        self, ledger: Ledger, config: EmulatorConfig, conversations: Conversations, agents: Agents, agent: Agent
    ) -> None:
        self._ledger = ledger
        self._config = config
        self._conversations = conversations
        self._agents = agents
        self._agent = agent
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: int | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._workers: dict[str, _Worker] = {}

    def start(self) -> None:
        """Start listening (in the server's event loop)."""
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        self._unsubscribe = self._ledger.subscribe(self._on_entry)

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        tasks = [w.task for w in self._workers.values()]
        self.reset()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._loop = None

    def reset(self) -> None:
        """Forget every conversation (the emulator was reset)."""
        workers, self._workers = self._workers, {}
        for worker in workers.values():
            worker.task.cancel()

    # --- ledger -> actions ---------------------------------------------------------------------------
    def _on_entry(self, entry: LedgerEntry) -> None:
        loop = self._loop
        if loop is None:
            return
        if threading.get_ident() == self._thread:
            self._handle(entry)
        else:
            loop.call_soon_threadsafe(self._handle, entry)

    def _handle(self, entry: LedgerEntry) -> None:
        conversation_id = entry.conversation_id
        if conversation_id is None:
            return
        if routed(entry):
            if self._config.auto_agent and conversation_id not in self._workers:
                self._enqueue(conversation_id, _Join())
        elif entry.kind == "guest.message.received" and entry.message_id and conversation_id in self._workers:
            self._enqueue(conversation_id, _Reply(entry.message_id))
        elif entry.kind == "conversation.disconnected":
            worker = self._workers.pop(conversation_id, None)
            if worker is not None:
                worker.task.cancel()

    def _enqueue(self, conversation_id: str, action: _Action) -> None:
        worker = self._workers.get(conversation_id)
        if worker is None:
            assert self._loop is not None
            queue: asyncio.Queue[_Action] = asyncio.Queue()
            task = self._loop.create_task(self._work(conversation_id, queue))
            worker = self._workers[conversation_id] = _Worker(queue, task)
        worker.queue.put_nowait(action)

    # --- one conversation ----------------------------------------------------------------------------
    async def _work(self, conversation_id: str, queue: asyncio.Queue[_Action]) -> None:
        while True:
            action = await queue.get()
            conv = self._current(conversation_id)
            if conv is None:
                return
            try:
                if isinstance(action, _Join):
                    await self._join(conv)
                else:
                    await self._reply(conv, action.message_id)
            except ApiError as exc:
                # The conversation moved on meanwhile (ended, the agent left, an admin call got
                # there first): nothing to answer.
                log.debug("simulated agent skipped an action: %s", exc.code)

    def _current(self, conversation_id: str) -> Conversation | None:
        """The conversation, while it is live, not forgotten by a reset, and the agent is enabled."""
        if not self._config.auto_agent:
            return None
        conv = self._conversations.get(conversation_id)
        return conv if conv is not None and conv.live else None

    async def _join(self, conv: Conversation) -> None:
        await asyncio.sleep(self._config.agent_join_delay_s)
        if self._current(conv.id) is None or next(conv.with_purpose("agent"), None) is not None:
            return  # gone, or an agent joined through the admin API: let that one talk
        self._agents.join(conv, self._agent)
        self._agents.send(conv, self._config.agent_greeting.replace("{agent}", self._agent.name))

    async def _reply(self, conv: Conversation, message_id: str) -> None:
        message = conv.message(message_id)
        if message is None:
            return
        self._agents.typing(conv)
        await asyncio.sleep(self._config.agent_reply_delay_s)
        if self._current(conv.id) is None:
            return
        if is_bye(message.text, self._config.agent_bye_phrase):
            self._agents.send(conv, self._config.agent_farewell)
            self._agents.disconnect(conv, end_conversation=True)
        else:
            self._agents.send(conv, answer(message.text))
