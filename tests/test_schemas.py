"""Every command and event type: valid cases parse, invalid cases say precisely what is wrong."""

from __future__ import annotations

import json
from typing import Any

import pytest

from parley.schema_export import json_schemas
from schemas.commands import COMMAND_MODELS
from schemas.events import EVENT_ADAPTER
from schemas.limits import COMMAND_MAX_BYTES
from schemas.validation import Rejection, parse_command

CID = "6f1c2a9e-3b7d-4c55-9a0e-2f4b8d1e7c30"
DEP = "0b3a8f2e-55c1-4e7a-8d3b-9c1f2e4a6b70"

VALID: dict[str, dict[str, Any]] = {
    "message.send/webmessaging": {"type": "message.send", "idempotency_key": "k1", "channel": "webmessaging",
                                  "from_address": DEP, "external_contact_id": CID, "text": "Your order shipped"},
    "message.send/sms": {"type": "message.send", "idempotency_key": "k2", "channel": "sms",
                         "from_address": "+13175550100", "to_address": "+13175550111", "text": "hi",
                         "correlation_id": "crm-42", "org": "emea", "expires_at": "2030-01-01T00:00:00Z",
                         "lane": "bulk"},
    "message.send/whatsapp": {"type": "message.send", "idempotency_key": "k12", "channel": "whatsapp",
                              "from_address": DEP, "to_address": "447700900123",
                              "template": {"response_id": CID, "parameters": {"name": "Ada"}}},
    "conversation.end": {"type": "conversation.end", "idempotency_key": "k3", "conversation_id": CID,
                         "wrapup": {"code": DEP, "notes": "done"}},
    "chat.create": {"type": "chat.create", "idempotency_key": "k4", "queue_id": CID, "provider": "MyCRM",
                    "customer_name": "Ada", "attributes": {"order": "1"}, "skill_ids": [DEP], "priority": 5},
    "cobrowse.start": {"type": "cobrowse.start", "idempotency_key": "k5", "conversation_id": CID},
    "cobrowse.end": {"type": "cobrowse.end", "idempotency_key": "k6", "conversation_id": CID},
    "guest.start/webmessaging": {"type": "guest.start", "idempotency_key": "k7", "session_key": "s1",
                                 "deployment_id": DEP, "origin": "https://shop.example.com",
                                 "custom_attributes": {"tier": "gold"}, "first_message": "hello"},
    "guest.start/guestchat": {"type": "guest.start", "idempotency_key": "k8", "session_key": "s2",
                              "protocol": "guestchat", "organization_id": CID, "deployment_id": DEP,
                              "queue_name": "Support", "display_name": "Ada", "custom_fields": {"a": "b"}},
    "guest.send": {"type": "guest.send", "idempotency_key": "k9", "session_key": "s1", "text": "héllo"},
    "guest.typing": {"type": "guest.typing", "idempotency_key": "k10", "session_key": "s1"},
    "guest.end": {"type": "guest.end", "idempotency_key": "k11", "session_key": "s1"},
}


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_commands_parse(name: str) -> None:
    command = parse_command(json.dumps(VALID[name]))
    assert command.type == VALID[name]["type"]
    assert command.idempotency_key == VALID[name]["idempotency_key"]
    # targets never carry customer text
    assert "text" not in command.targets and "hello" not in json.dumps(command.targets)


def test_every_command_type_has_a_valid_example() -> None:
    assert {v["type"] for v in VALID.values()} == set(COMMAND_MODELS)


def _reject(body: Any) -> Rejection:
    with pytest.raises(Rejection) as info:
        parse_command(body if isinstance(body, str) else json.dumps(body))
    return info.value


def _with(name: str, **changes: Any) -> dict[str, Any]:
    body = dict(VALID[name])
    for key, value in changes.items():
        if value is ...:
            body.pop(key, None)
        else:
            body[key] = value
    return body


@pytest.mark.parametrize(
    ("body", "field", "fragment"),
    [
        (_with("cobrowse.start", idempotency_key=...), "idempotency_key", "required"),
        (_with("cobrowse.start", idempotency_key=""), "idempotency_key", "at least 1"),
        (_with("cobrowse.start", idempotency_key="x" * 257), "idempotency_key", "at most 256"),
        (_with("cobrowse.start", idempotency_key="a\nb"), "idempotency_key", "control characters"),
        (_with("cobrowse.start", conversation_id="not-a-uuid"), "conversation_id", "must be a Genesys id: a UUID"),
        (_with("cobrowse.start", colour="red"), "colour", "unknown field"),
        (_with("cobrowse.start", org="has space"), "org", "pattern"),
        (_with("cobrowse.start", expires_at="2030-01-01T00:00:00"), "expires_at", "timezone"),
        (_with("conversation.end", lane="urgent"), "lane", "'high', 'normal' or 'bulk'"),
        (_with("chat.create", lane=5), "lane", "'high', 'normal' or 'bulk'"),
        (_with("message.send/sms", channel="fax"), "channel", "webmessaging"),
        (_with("message.send/sms", text=""), "text", "at least 1"),
        (_with("chat.create", priority=-1), "priority", "greater than or equal"),
        (_with("chat.create", provider=...), "provider", "required"),
        (_with("conversation.end", wrapup={"code": DEP, "extra": 1}), "wrapup.extra", "unknown field"),
        (_with("guest.send", text=...), "text", "required"),
    ],
)
def test_invalid_fields_are_named(body: dict[str, Any], field: str, fragment: str) -> None:
    rejection = _reject(body)
    named = {e.field: e.message for e in rejection.errors}
    assert field in named, rejection.errors
    assert fragment in named[field]
    assert body["type"] in rejection.reason


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (_with("message.send/webmessaging", external_contact_id=...), "external_contact_id is required"),
        (_with("message.send/webmessaging", to_address="+1"), "to_address is not used for webmessaging"),
        (_with("message.send/sms", to_address=...), "to_address is required when channel is sms"),
        (_with("message.send/sms", text="x" * 766), "sms allows at most 765"),
        (_with("message.send/webmessaging", text="é" * 2049), "4098 bytes"),
        (_with("message.send/webmessaging", text="x" * 4000), "webmessaging allows at most 3999"),
        (_with("message.send/whatsapp", template=...), "template is required when channel is whatsapp"),
        (_with("message.send/whatsapp", text="hi"), "text is not used for whatsapp"),
        (_with("message.send/sms", template={"response_id": CID}), "template only applies to channel whatsapp"),
        (_with("message.send/sms", text=...), "text is required when channel is sms"),
        (_with("guest.send", text="€" * 1366), "bytes in UTF-8; the limit is 4096"),
        (_with("guest.start/guestchat", queue_name=...), "guestchat requires queue_name"),
        (_with("guest.start/webmessaging", queue_name="Support"), "only apply to protocol guestchat"),
        (_with("guest.start/webmessaging", custom_attributes={"k": "v" * 2100}), "exceed 2048 bytes"),
        (_with("guest.start/webmessaging", origin="shop.example.com"), "pattern"),
    ],
)
def test_cross_field_rules_explain_themselves(body: dict[str, Any], fragment: str) -> None:
    assert fragment in _reject(body).reason


def test_malformed_and_unknown_commands() -> None:
    assert "not valid JSON at line 1 column 2" in _reject("{oops").reason
    assert "must be a JSON object, got list" in _reject("[1]").reason
    unknown = _reject({"type": "message.shout", "idempotency_key": "k"})
    assert 'unknown command type "message.shout"' in unknown.reason
    assert "message.send" in unknown.reason  # lists what is known
    assert unknown.idempotency_key == "k"
    assert "missing field 'type'" in _reject({"idempotency_key": "k"}).reason


def test_oversized_command_is_rejected_before_parsing() -> None:
    body = _with("chat.create", attributes={f"k{i}": "v" * 2000 for i in range(40)})
    rejection = _reject(body)
    assert f"the limit is {COMMAND_MAX_BYTES} bytes" in rejection.reason


def test_json_schema_covers_every_command_and_event() -> None:
    schemas = json_schemas()
    command_refs = {ref["$ref"].rsplit("/", 1)[1] for ref in schemas["command"]["oneOf"]}
    assert command_refs == {m.__name__ for m in COMMAND_MODELS.values()}
    mapping = schemas["event"]["discriminator"]["mapping"]
    assert {"command.accepted", "command.succeeded", "command.retrying", "command.failed", "command.rejected",
            "command.expired", "guest.started", "guest.agent_joined", "guest.message", "guest.typing",
            "guest.ended"} <= set(mapping)


@pytest.mark.parametrize(
    "event",
    [
        {"type": "command.accepted", "idempotency_key": "k", "command_id": "c"},
        {"type": "command.succeeded", "result": {"conversation_id": CID, "reused": True}},
        {"type": "command.retrying", "attempt": 2, "delay_s": 1.5, "reason": "409 request.conflict",
         "error": {"status": 409, "code": "request.conflict", "contextId": "ctx"}},
        {"type": "command.failed", "reason": "permanent", "hint": "do X",
         "error": {"status": 400, "code": "not.a.user", "message": "m", "contextId": "ctx"}},
        {"type": "command.rejected", "reason": "bad", "errors": [{"field": "text", "message": "missing"}]},
        {"type": "command.expired", "expires_at": "2020-01-01T00:00:00Z"},
        {"type": "guest.message", "session_key": "s", "message_id": "m", "text": "hi"},
        {"type": "guest.ended", "session_key": "s", "by": "agent"},
    ],
)
def test_events_round_trip(event: dict[str, Any]) -> None:
    parsed = EVENT_ADAPTER.validate_python(event)
    again = EVENT_ADAPTER.validate_json(parsed.model_dump_json(by_alias=True))
    assert again == parsed
    assert parsed.id and parsed.at.tzinfo is not None


def test_events_reject_unknown_fields() -> None:
    with pytest.raises(ValueError, match="Extra inputs"):
        EVENT_ADAPTER.validate_python({"type": "guest.typing", "session_key": "s", "secret": "x"})


def test_the_published_schema_offers_the_three_lanes_on_every_command() -> None:
    schemas = json_schemas()["command"]
    assert schemas["$defs"]["Lane"]["enum"] == ["high", "normal", "bulk"]
    for model in COMMAND_MODELS.values():
        assert schemas["$defs"][model.__name__]["properties"]["lane"]["default"] == "normal"


def test_lane_defaults_to_normal_and_is_apart_from_chat_creates_routing_priority() -> None:
    assert parse_command(json.dumps(VALID["cobrowse.start"])).lane == "normal"
    chat = parse_command(json.dumps(_with("chat.create", lane="high")))
    assert chat.lane == "high" and chat.priority == 5  # type: ignore[union-attr]


def test_event_and_tracing_ids_are_random_version_4_uuids() -> None:
    import uuid

    from schemas.common import random_uuid, random_uuid_text
    from schemas.events import CommandAccepted

    ids = [random_uuid() for _ in range(2000)] + [CommandAccepted(command_id="c", idempotency_key="k").id]
    assert len(set(ids)) == len(ids)
    for value in [*ids, random_uuid_text()]:
        parsed = uuid.UUID(value)
        assert (parsed.version, parsed.variant) == (4, uuid.RFC_4122)
        assert value in (parsed.hex, str(parsed))
