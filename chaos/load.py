"""The run's load, all drawn from its seed: REST commands of every type, duplicates, invalid commands and
guest sessions.

Every text is unique, so the ledger can attribute an effect to one command. The ledger records text
lengths, not texts, so the lengths carry the attribution: the n-th message to a customer is
``BASE_LENGTH + n`` characters long, unique among that customer's messages (and a guest session's
messages likewise), while the text itself starts with the command's own tag.
"""

from __future__ import annotations

import json
import random
import string
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from chaos.emulator import Fixtures

BASE_LENGTH = 48
GUEST_BASE_LENGTH = 40
PAST = "2020-01-01T00:00:00+00:00"
FUTURE = "2099-01-01T00:00:00+00:00"
Channel = Literal["webmessaging", "sms", "open"]
Role = Literal["valid", "duplicate", "invalid"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PlannedCommand(_Model):
    """A valid REST command and what its effect must look like."""

    index: int
    key: str
    type: str
    body: dict[str, Any]
    text: str | None = None
    customer: str | None = None  # "channel|from|recipient" of a message.send
    target: str | None = None  # the conversation a conversation.end / cobrowse command acts on
    expired: bool = False  # expires_at already passed: must end command.expired, without an effect
    copies: int = 1  # how often it is submitted (duplicates share the key)


class InvalidCommand(_Model):
    """A stream entry a careless producer could write, and how the rejection can be told apart."""

    index: int
    kind: str
    fields: dict[str, str]
    key: str | None = None  # the idempotency key the rejection can name (None: unreadable)
    correlation_id: str | None = None
    latin1: bool = False  # send the command field as Latin-1 bytes: not UTF-8

    def stream_fields(self) -> dict[str, str | bytes]:
        if self.latin1:
            return {name: value.encode("latin-1") for name, value in self.fields.items()}
        return dict(self.fields)


class Entry(_Model):
    role: Role
    key: str | None = None  # valid and duplicate: the command's key
    invalid: int | None = None  # invalid: index into Plan.invalid


class Step(_Model):
    """Entries added in one pipeline: the same moment for the ingestion worker."""

    entries: list[Entry]


class GuestSession(_Model):
    session_key: str
    protocol: Literal["webmessaging", "guestchat"]
    start: dict[str, Any]
    sends: list[dict[str, Any]]
    typing: dict[str, Any]
    end: dict[str, Any]
    texts: list[str]  # every guest text in order (first_message included)
    at: float = Field(ge=0, le=1)  # REST progress at which the session starts
    send_at: list[float]


class Plan(_Model):
    commands: dict[str, PlannedCommand]
    invalid: list[InvalidCommand]
    steps: list[Step]
    guests: list[GuestSession]
    last: list[Step] = Field(default_factory=list)  # after everything else, guest ends included

    @property
    def valid_submissions(self) -> int:
        return sum(c.copies for c in self.commands.values())


class Targets(_Model):
    """Conversations the harness opened itself before the load, for conversation.end and cobrowse."""

    end: list[str]
    cobrowse: list[str]


def targets_needed(commands: int) -> tuple[int, int]:
    """How many conversations to open for conversation.end and for cobrowse commands."""
    return max(2, commands * 8 // 200), max(2, commands * 22 // 1000)


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _padded(tag: str, length: int) -> str:
    """``tag`` then filler up to ``length`` characters (ASCII: the ledger's lengths are characters)."""
    filler = (" " + string.ascii_lowercase) * (length // 27 + 1)
    return (tag + filler)[:length] if len(tag) < length else tag[:length]


class LoadBuilder:
    def __init__(self, seed: int, fixtures: Fixtures, targets: Targets) -> None:
        self.seed = seed
        self.rng = random.Random(f"load-{seed}")
        self.fixtures = fixtures
        self.targets = targets
        self.wm_deployment = fixtures.deployment("webmessaging")
        self.sent_per_customer: dict[str, int] = {}

    # --- customers -------------------------------------------------------------------------------------
    def customers(self, n: int) -> list[tuple[Channel, str, str]]:
        """(channel, from_address, recipient): half web messaging, a quarter SMS, a quarter open messaging."""
        out: list[tuple[Channel, str, str]] = []
        for i in range(n):
            if i % 4 in (0, 1):
                out.append(("webmessaging", self.wm_deployment, _uuid(self.rng)))
            elif i % 4 == 2:
                out.append(("sms", self.fixtures.sms_numbers[0], f"+1555{self.seed % 1000:03d}{i:04d}"[:12]))
            else:
                out.append(("open", self.fixtures.integration("open"), f"chaos-{self.seed}-{i}"))
        return out

    # --- commands --------------------------------------------------------------------------------------
    def command(self, index: int, customers: list[tuple[Channel, str, str]]) -> PlannedCommand:
        roll = self.rng.random()
        key = f"chaos-{self.seed}-{index:06d}"
        extra: dict[str, Any] = {}
        if roll < 0.60:
            # Half the sends go to a few busy customers (sends racing on one conversation), the rest
            # spread over many (many first messages, each opening a conversation).
            busy = customers[: max(1, len(customers) // 10)]
            channel, sender, recipient = self.rng.choice(busy if self.rng.random() < 0.5 else customers)
            customer = f"{channel}|{sender}|{recipient}"
            n = self.sent_per_customer.get(customer, 0)
            self.sent_per_customer[customer] = n + 1
            text = _padded(f"m{self.seed}-{index:06d} to {recipient[-6:]} #{n}.", BASE_LENGTH + n)
            body: dict[str, Any] = {"type": "message.send", "channel": channel, "from_address": sender, "text": text}
            if channel == "webmessaging":
                body["external_contact_id"] = recipient
            else:
                body["to_address"] = recipient
            extra = {"text": text, "customer": customer}
        elif roll < 0.68:
            target = self.rng.choice(self.targets.end)
            body = {"type": "conversation.end", "conversation_id": target}
            extra = {"target": target}
        elif roll < 0.78:
            queue = self.rng.choice(self.fixtures.queues)["id"]
            body = {"type": "chat.create", "queue_id": queue, "provider": "chaos", "customer_name": f"Chaos {index}",
                    "attributes": {"chaos_key": key}, "priority": self.rng.randint(0, 10)}
        else:
            target = self.rng.choice(self.targets.cobrowse)
            body = {"type": "cobrowse.start" if roll < 0.92 else "cobrowse.end", "conversation_id": target}
            extra = {"target": target}
        body["idempotency_key"] = key
        body["correlation_id"] = f"corr-{key}"
        return PlannedCommand(index=index, key=key, type=body["type"], body=body, **extra)

    def build(self, commands: int, guests: int, duplicate_share: float, invalid_share: float,
              expired_share: float, guest_messages: int, customers: int, non_utf8: bool = False) -> Plan:
        pool = self.customers(customers)
        planned: list[PlannedCommand] = []
        for i in range(commands):
            command = self.command(i, pool)
            roll = self.rng.random()
            if roll < expired_share:
                command = command.model_copy(update={"expired": True, "body": {**command.body, "expires_at": PAST}})
            elif roll < expired_share + 0.05:  # a valid expiry in the future: parsed, then ignored
                command = command.model_copy(update={"body": {**command.body, "expires_at": FUTURE}})
            if self.rng.random() < duplicate_share:
                command = command.model_copy(update={"copies": 2})
            planned.append(command)
        invalid = [self.invalid(i) for i in range(round(commands * invalid_share))]
        steps = self._steps(planned, invalid)
        last: list[Step] = []
        if non_utf8:
            # Last of all: today it stops the ingestion worker (it cannot even read the batch holding it),
            # so anything after it would be stuck too and the verdict would only say that.
            bad = self.invalid(len(invalid), kind="not_utf8")
            invalid.append(bad)
            last.append(Step(entries=[Entry(role="invalid", invalid=bad.index)]))
        sessions = [self.guest(i, guest_messages) for i in range(guests)]
        return Plan(commands={c.key: c for c in planned}, invalid=invalid, steps=steps, guests=sessions, last=last)

    def _steps(self, planned: list[PlannedCommand], invalid: list[InvalidCommand]) -> list[Step]:
        """Each command's step; a duplicate rides in the same step half the time (the same moment),
        otherwise a few to a few hundred steps later; invalid entries are scattered in between."""
        slots: list[list[Entry]] = [[Entry(role="valid", key=c.key)] for c in planned]
        for i, command in enumerate(planned):
            if command.copies < 2:
                continue
            duplicate = Entry(role="duplicate", key=command.key)
            if self.rng.random() < 0.5:
                slots[i].append(duplicate)
            else:
                later = min(len(slots) - 1, i + self.rng.randint(1, 300))
                slots[later].append(duplicate)
        for bad in invalid:
            slots[self.rng.randrange(len(slots))].insert(0, Entry(role="invalid", invalid=bad.index))
        return [Step(entries=entries) for entries in slots]

    # --- invalid ---------------------------------------------------------------------------------------
    def invalid(self, index: int, kind: str | None = None) -> InvalidCommand:
        kinds = list(INVALID_KINDS)
        if kind == "not_utf8":  # "café" in Latin-1: the byte 0xE9 is not UTF-8
            text = json.dumps({"type": "message.send", "idempotency_key": f"chaos-{self.seed}-bad-caf\u00e9"},
                              ensure_ascii=False)
            return InvalidCommand(index=index, kind=kind, fields={"command": text}, latin1=True)
        kind = kind or (kinds[index] if index < len(kinds) else self.rng.choice(kinds))
        key = f"chaos-{self.seed}-bad-{index:05d}"
        good: dict[str, Any] = {"type": "message.send", "idempotency_key": key, "correlation_id": f"corr-{key}",
                                "channel": "webmessaging", "from_address": self.wm_deployment,
                                "external_contact_id": _uuid(self.rng), "text": f"never sent {key}"}
        fields, named = INVALID_KINDS[kind](good, self.rng)
        return InvalidCommand(index=index, kind=kind, fields=fields, key=key if named else None,
                              correlation_id=f"corr-{key}" if named else None)

    # --- guests ----------------------------------------------------------------------------------------
    def guest(self, index: int, messages: int) -> GuestSession:
        protocol: Literal["webmessaging", "guestchat"] = "webmessaging" if index % 2 == 0 else "guestchat"
        sk = f"chaos-{self.seed}-guest-{index:04d}"
        first = self.rng.random() < 0.5
        texts = [_padded(f"g{self.seed}-{index:04d}-{k} says", GUEST_BASE_LENGTH + k)
                 for k in range(messages + int(first))]
        start: dict[str, Any] = {"type": "guest.start", "idempotency_key": f"{sk}-start", "session_key": sk,
                                 "deployment_id": self.wm_deployment}
        if protocol == "guestchat":
            start.update(protocol="guestchat", deployment_id=self.fixtures.deployment("guestchat"),
                         organization_id=self.fixtures.organization_id, queue_name="Support",
                         display_name=f"Guest {index}")
        if first:
            start["first_message"] = texts[0]
        sends = [{"type": "guest.send", "idempotency_key": f"{sk}-send-{k}", "session_key": sk, "text": text}
                 for k, text in enumerate(texts[int(first):])]
        at = self.rng.uniform(0.0, 0.6)
        send_at = sorted(min(1.0, at + self.rng.uniform(0.01, 0.35)) for _ in sends)
        return GuestSession(
            session_key=sk, protocol=protocol, start=start, sends=sends, texts=texts, at=at, send_at=send_at,
            typing={"type": "guest.typing", "idempotency_key": f"{sk}-typing", "session_key": sk},
            end={"type": "guest.end", "idempotency_key": f"{sk}-end", "session_key": sk},
        )


# --- the ways a producer gets a command wrong ------------------------------------------------------------
InvalidMaker = Any  # (good command, rng) -> (stream entry fields, whether a rejection can name its key)


def _text(command: dict[str, Any]) -> str:
    return json.dumps(command)


INVALID_KINDS: dict[str, InvalidMaker] = {
    "bad_json": lambda c, r: ({"command": _text(c)[:-7]}, False),
    "not_an_object": lambda c, r: ({"command": json.dumps([c])}, False),
    "null": lambda c, r: ({"command": "null"}, False),
    "empty": lambda c, r: ({"command": ""}, False),
    "no_command_field": lambda c, r: ({"cmd": _text(c)}, False),
    "unknown_type": lambda c, r: ({"command": _text({**c, "type": "message.sned"})}, True),
    "missing_type": lambda c, r: ({"command": _text({k: v for k, v in c.items() if k != "type"})}, True),
    "type_not_a_string": lambda c, r: ({"command": _text({**c, "type": 7})}, True),
    "unknown_field": lambda c, r: ({"command": _text({**c, "colour": "red"})}, True),
    "missing_field": lambda c, r: ({"command": _text({k: v for k, v in c.items() if k != "text"})}, True),
    "missing_key": lambda c, r: ({"command": _text({k: v for k, v in c.items() if k != "idempotency_key"})}, False),
    "empty_key": lambda c, r: ({"command": _text({**c, "idempotency_key": ""})}, False),
    "key_too_long": lambda c, r: ({"command": _text({**c, "idempotency_key": "k" * 300})}, False),
    "control_characters": lambda c, r: ({"command": _text({**c, "idempotency_key": c["idempotency_key"] + "\x07"})},
                                        False),
    "oversized": lambda c, r: ({"command": _text({**c, "text": "x" * (70 * 1024)})}, False),
    "text_too_long": lambda c, r: ({"command": _text({**c, "text": "y" * 4000})}, True),
    "bad_uuid": lambda c, r: ({"command": _text({**c, "external_contact_id": "not-a-uuid"})}, True),
    "bad_expires_at": lambda c, r: ({"command": _text({**c, "expires_at": "tomorrow"})}, True),
    "expires_at_without_offset": lambda c, r: ({"command": _text({**c, "expires_at": "2099-01-01T00:00:00"})}, True),
    "wrong_field_type": lambda c, r: ({"command": _text({**c, "text": 12345})}, True),
    "wrong_channel_rules": lambda c, r: ({"command": _text({**c, "to_address": "+15550000000"})}, True),
    "unknown_channel": lambda c, r: ({"command": _text({**c, "channel": "pigeon"})}, True),
    "bad_org": lambda c, r: ({"command": _text({**c, "org": "no spaces allowed"})}, True),
    "empty_text": lambda c, r: ({"command": _text({**c, "text": ""})}, True),
}
"""Each maker returns the stream entry's fields and whether its key is readable (so the rejection
names it). Keys that are themselves invalid (empty, too long, control characters) are not readable."""
