"""`parley demo`: the five forum threads Parley was born from, run against a running `parley run`.

Each scenario submits the commands its thread needed, as a producer would, waits for their outcomes
on ``parley:events`` and reads what Genesys saw from the emulator's ledger (the demo runs only
against the emulator: it would otherwise message real customers). Then one command of every type
the threads did not need. The result is a table: command, outcome, what Genesys saw, and the hint
where one applies.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx
import redis

from parley.producer import Producer
from parley.settings import Settings

DEPLOYMENT = "e1b6f3a8-52c9-4d7e-8a10-b4c3d2e5f607"  # the emulator's seeded Messenger deployment
GUEST_CHAT_DEPLOYMENT = "9f2d7b4c-1a6e-4c38-b5d9-e08f3a2c6b71"
SUPPORT_QUEUE = "5b7e1d9a-3c2f-4e81-9a6b-d4f08c2e7a13"
TERMINAL = frozenset({"command.succeeded", "command.failed", "command.expired", "command.rejected"})
OUTCOME_TIMEOUT_S = 45.0


class DemoError(RuntimeError):
    """The demo cannot run (no emulator, nothing consuming); the message says what to do."""


@dataclass
class Row:
    scenario: str
    command: str
    outcome: str
    genesys_saw: str
    reason: str = ""
    hint: str = ""


@dataclass
class Demo:
    client: redis.Redis
    settings: Settings
    emulator: httpx.Client
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    events_from: str = "0-0"
    """Events after this stream id are the demo's (set to the stream's end when it starts)."""
    rows: list[Row] = field(default_factory=list)
    seen: list[dict[str, Any]] = field(default_factory=list)

    # --- plumbing ------------------------------------------------------------------------------------
    def key(self, name: str) -> str:
        return f"demo-{self.run_id}-{name}"

    def submit(self, command: dict[str, Any]) -> None:
        Producer(self.client, self.settings).submit(command)

    def outcome(self, key: str) -> dict[str, Any]:
        """The terminal event of the command with idempotency key ``key``."""
        return self.await_event(lambda e: e.get("idempotency_key") == key and e["type"] in TERMINAL,
                                f"the command {key}")

    def await_event(self, match: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
        """The first event (since the demo began) that ``match``es, blocking on the stream for more."""
        deadline = time.monotonic() + OUTCOME_TIMEOUT_S
        while (found := next((e for e in self.seen if match(e)), None)) is None:
            if time.monotonic() > deadline:
                raise DemoError(f"no outcome for {what} within {OUTCOME_TIMEOUT_S:.0f} s: is `parley run` "
                                "running (parley status)?")
            for _stream, entries in self.client.xread({self.settings.events_stream: self.events_from},
                                                      count=500, block=500) or []:
                for entry_id, fields in entries:
                    self.seen.append(json.loads(fields["event"]))
                    self.events_from = entry_id
        return found

    def run_one(self, command: dict[str, Any]) -> dict[str, Any]:
        self.submit(command)
        return self.outcome(command["idempotency_key"])

    def saw(self, conversation_id: str | None, *, kinds: Iterable[str] | None = None) -> str:
        """What the emulator's ledger recorded for the conversation, as ``2 message.sent, 1 ...``."""
        if not conversation_id:
            return "nothing"
        entries = self.emulator.get("/__emulator/ledger", params={"conversation_id": conversation_id}).json()
        counts = Counter(e["kind"] for e in entries["entries"] if kinds is None or e["kind"] in kinds)
        return ", ".join(f"{n} {kind}" for kind, n in counts.items()) or "nothing"

    def fault(self, **spec: Any) -> None:
        self.emulator.post("/__emulator/faults", json=spec).raise_for_status()

    def add(self, scenario: str, command: str, event: dict[str, Any], saw: str) -> dict[str, Any]:
        outcome = event["type"].removeprefix("command.")
        result = event.get("result") or {}
        if result.get("reused"):
            outcome += " (reused)"
        self.rows.append(Row(scenario, command, outcome, saw, event.get("reason") or "", event.get("hint") or ""))
        return event

    # --- the five threads --------------------------------------------------------------------------
    def seed_000_proactive_message(self) -> str:
        """A proactive message into a customer's live web messaging conversation, not a new one."""
        customer = str(uuid.uuid4())
        send = {"type": "message.send", "channel": "webmessaging", "from_address": DEPLOYMENT,
                "external_contact_id": customer}
        first = self.run_one({**send, "idempotency_key": self.key("000-hello"), "text": "Hi! Your order is packed."})
        cid = first.get("result", {}).get("conversation_id")
        second = self.run_one({**send, "idempotency_key": self.key("000-shipped"), "text": "It has shipped."})
        self.add("000 proactive message", "message.send (opens the conversation)", first, "1 conversation.created")
        self.add("000 proactive message", "message.send (into the live one)", second,
                 self.saw(cid, kinds=("conversation.created", "message.sent")))
        return str(cid)

    def seed_001_third_party_chat(self) -> None:
        """A chat opened from the backend is routing-only: text aimed at it is refused, with why."""
        chat = self.run_one({"type": "chat.create", "idempotency_key": self.key("001-chat"),
                             "queue_id": SUPPORT_QUEUE, "provider": "AcmeCRM", "customer_name": "Ada"})
        cid = chat.get("result", {}).get("conversation_id")
        self.add("001 third-party chat", "chat.create", chat, self.saw(cid))
        text = self.run_one({"type": "message.send", "idempotency_key": self.key("001-text"), "channel": "webmessaging",
                             "from_address": DEPLOYMENT, "external_contact_id": str(uuid.uuid4()),
                             "conversation_id": cid, "text": "Hello from the CRM"})
        self.add("001 third-party chat", "message.send into it", text,
                 self.saw(cid, kinds=("message.sent",)).replace("nothing", "no message"))

    def seed_002_verified_end(self, conversation_id: str) -> None:
        """End the conversation from the backend and read the state back until it is over."""
        done = self.run_one({"type": "conversation.end", "idempotency_key": self.key("002-end"),
                             "conversation_id": conversation_id})
        self.add("002 verified end", "conversation.end", done,
                 self.saw(conversation_id, kinds=("participant.disconnected", "conversation.disconnected")))

    def seed_003_cobrowse(self) -> str:
        """Two cobrowse starts on one conversation, with two 409s injected: one session, no errors."""
        cid = self.run_one({"type": "message.send", "idempotency_key": self.key("003-conv"), "channel": "webmessaging",
                            "from_address": DEPLOYMENT, "external_contact_id": str(uuid.uuid4()),
                            "text": "Shall we look at your screen together?"})["result"]["conversation_id"]
        self.fault(method="POST", path="/api/v2/conversations/{id}/cobrowse", status=409, times=2)
        first = {"type": "cobrowse.start", "idempotency_key": self.key("003-start-1"), "conversation_id": cid}
        second = {"type": "cobrowse.start", "idempotency_key": self.key("003-start-2"), "conversation_id": cid}
        started = self.run_one(first)
        again = self.run_one(second)
        retries = sum(1 for e in self.seen if e.get("idempotency_key") == first["idempotency_key"]
                      and e["type"] == "command.retrying")
        self.add("003 cobrowse", f"cobrowse.start (two 409s, {retries} retries)", started,
                 self.saw(cid, kinds=("cobrowse.started",)))
        self.add("003 cobrowse", "cobrowse.start again", again, self.saw(cid, kinds=("cobrowse.started",)))
        return cid

    def seed_004_guest_chat(self) -> None:
        """A Guest Chat the worker creates, routes by holding its stream open, and relays both ways."""
        session = self.key("004-guest")
        start = self.run_one({"type": "guest.start", "idempotency_key": self.key("004-start"), "session_key": session,
                              "protocol": "guestchat", "deployment_id": GUEST_CHAT_DEPLOYMENT,
                              "organization_id": self._organization_id(), "queue_name": "Support",
                              "display_name": "Ada", "first_message": "Hi, I need help with my order"})
        answer = self.await_event(lambda e: e.get("session_key") == session and e["type"] == "guest.message",
                                  "the agent's answer")
        cid = next((e.get("conversation_id") for e in self.seen
                    if e.get("session_key") == session and e["type"] == "guest.started"), None)
        self.add("004 guest chat", "guest.start (Guest Chat, first message)", start,
                 f"{self.saw(cid, kinds=('guest.message.received', 'agent.joined', 'agent.message.sent'))}; "
                 f"relayed: {answer['type']} from the {answer['sender']}")
        end = self.run_one({"type": "guest.end", "idempotency_key": self.key("004-end"), "session_key": session})
        self.add("004 guest chat", "guest.end", end, self.saw(cid, kinds=("guest.session.ended",)))

    # --- every other command type ----------------------------------------------------------------
    def other_types(self, cobrowse_conversation: str) -> None:
        ended = self.run_one({"type": "cobrowse.end", "idempotency_key": self.key("x-cobrowse-end"),
                              "conversation_id": cobrowse_conversation})
        self.add("other types", "cobrowse.end", ended, self.saw(cobrowse_conversation, kinds=("cobrowse.ended",)))
        session = self.key("x-web")
        start = self.run_one({"type": "guest.start", "idempotency_key": self.key("x-web-start"), "session_key": session,
                              "deployment_id": DEPLOYMENT, "origin": "http://localhost"})
        self.add("other types", "guest.start (web messaging)", start, "a guest session")
        for kind, extra in (("guest.typing", {}), ("guest.send", {"text": "Is anyone there?"}), ("guest.end", {})):
            done = self.run_one({"type": kind, "idempotency_key": self.key(f"x-{kind}"), "session_key": session,
                                 **extra})
            self.add("other types", kind, done, "")
        sms = self.run_one({"type": "message.send", "idempotency_key": self.key("x-sms"), "channel": "sms",
                            "from_address": "+13175550100", "to_address": "+13175550199", "text": "Your code: 4711"})
        self.add("other types", "message.send (sms)", sms,
                 self.saw(sms.get("result", {}).get("conversation_id"), kinds=("message.sent",)))

    def _organization_id(self) -> str:
        return str(self.emulator.get("/__emulator/fixtures").json()["organization_id"])

    def run(self) -> list[Row]:
        conversation = self.seed_000_proactive_message()
        self.seed_001_third_party_chat()
        cobrowse = self.seed_003_cobrowse()
        self.seed_002_verified_end(conversation)
        self.seed_004_guest_chat()
        self.other_types(cobrowse)
        return self.rows


def table(rows: list[Row]) -> str:
    """The rows as an aligned text table (a failure's reason and hint on their own indented lines)."""
    headers = ("scenario", "command", "outcome", "what Genesys saw")
    cells = [(r.scenario, r.command, r.outcome, r.genesys_saw) for r in rows]
    widths = [min(48, max(len(h), *(len(c[i]) for c in cells))) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip(),
             "  ".join("-" * w for w in widths)]
    for row, cell in zip(rows, cells, strict=True):
        lines.append("  ".join(c.ljust(w) for c, w in zip(cell, widths, strict=True)).rstrip())
        lines.extend(f"    {label}: {text}" for label, text in (("reason", row.reason), ("hint", row.hint)) if text)
    return "\n".join(lines)


def run_demo(client: redis.Redis, settings: Settings) -> list[Row]:
    if not settings.uses_emulator:
        raise DemoError("the demo runs only against the emulator (it would message real customers); "
                        "unset PARLEY_GENESYS_REGION and PARLEY_GENESYS_API_URL")
    base = f"http://{settings.emulator_host}:{settings.emulator_port}"
    with httpx.Client(base_url=base, timeout=10) as emulator:
        _await_emulator(emulator, base)
        start = client.xinfo_stream(settings.events_stream)["last-generated-id"] \
            if client.exists(settings.events_stream) else "0-0"
        return Demo(client, settings, emulator, events_from=start).run()


def _await_emulator(emulator: httpx.Client, base: str, timeout_s: float = 30.0) -> None:
    """`make run` in another terminal may still be starting: give the emulator a moment."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            emulator.get("/__emulator/fixtures").raise_for_status()
            return
        except httpx.HTTPError as exc:
            if time.monotonic() > deadline:
                raise DemoError(f"no emulator answers at {base}: start `parley run` first") from exc
            time.sleep(0.5)  # polling a server that is starting; nothing to await
