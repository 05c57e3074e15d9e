"""Messaging conversations: agentless sends, the live-conversation rule, reads, disconnects."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from emulator.fixtures import SEED
from tests.support.emulator_server import CONTACT, WEBMESSAGING_DEPLOYMENT, agentless_body

pytestmark = pytest.mark.anyio

AGENTLESS = "/api/v2/conversations/messages/agentless"
SMS_NUMBER = SEED.sms_numbers[0]
WHATSAPP = next(i.id for i in SEED.messaging_integrations if i.messenger_type == "whatsapp")


async def send(api: httpx.AsyncClient, **overrides: Any) -> dict[str, Any]:
    response = await api.post(AGENTLESS, json=agentless_body(**overrides))
    assert response.status_code == 200, response.text
    return dict(response.json())


async def ledger(client: httpx.AsyncClient, *kinds: str) -> list[dict[str, Any]]:
    response = await client.get("/__emulator/ledger", params={"kind": list(kinds)})
    return list(response.json()["entries"])


async def error_of(response: httpx.Response) -> tuple[int, str]:
    return response.status_code, response.json()["code"]


# --- agentless ------------------------------------------------------------------------------------
async def test_agentless_webmessaging_creates_a_conversation_with_customer_and_api(
    emu_api: httpx.AsyncClient, emu_client: httpx.AsyncClient
) -> None:
    sent = await send(emu_api)
    assert sent["messengerType"] == "webmessaging"
    assert sent["message"]["textBody"] == "Your parcel ships today."

    conversation = (await emu_api.get(f"/api/v2/conversations/{sent['conversationId']}")).json()
    by_purpose = {p["purpose"]: p for p in conversation["participants"]}
    assert set(by_purpose) == {"customer", "api"}
    assert by_purpose["customer"]["externalContactId"] == CONTACT
    assert by_purpose["customer"]["messages"][0]["state"] == "connected"
    assert "endTime" not in conversation
    api_leg = by_purpose["api"]["messages"][0]
    assert [m["messageId"] for m in api_leg["messages"]] == [sent["id"]]

    entries = await ledger(emu_client, "conversation.created", "message.sent")
    assert [(e["kind"], e["conversation_id"]) for e in entries] == [
        ("conversation.created", sent["conversationId"]),
        ("message.sent", sent["conversationId"]),
    ]
    assert "Your parcel" not in str(entries)


async def test_a_second_send_while_live_is_active_conversation(emu_api: httpx.AsyncClient) -> None:
    await send(emu_api)
    response = await emu_api.post(AGENTLESS, json=agentless_body())
    assert response.status_code == 400
    assert response.json()["code"] == "active.conversation"
    assert response.json()["message"] == "An alerting or connected conversation is already in progress."


async def test_use_existing_active_conversation_sends_into_the_live_one(
    emu_api: httpx.AsyncClient, emu_client: httpx.AsyncClient
) -> None:
    first = await send(emu_api)
    second = await send(emu_api, useExistingActiveConversation=True, textBody="One more thing")
    assert second["conversationId"] == first["conversationId"]
    assert second["id"] != first["id"]
    assert len(await ledger(emu_client, "conversation.created")) == 1
    assert len(await ledger(emu_client, "message.sent")) == 2


async def test_use_existing_without_a_live_conversation_creates_one(emu_api: httpx.AsyncClient) -> None:
    sent = await send(emu_api, useExistingActiveConversation=True)
    assert sent["useExistingActiveConversation"] is True
    assert (await emu_api.get(f"/api/v2/conversations/{sent['conversationId']}")).status_code == 200


async def test_live_conversations_are_per_deployment_and_contact(emu_api: httpx.AsyncClient) -> None:
    first = await send(emu_api)
    other_contact = await send(emu_api, externalContactId=SEED.external_contacts[1].id)
    other_deployment = await send(emu_api, fromAddress=SEED.deployments[1].id)
    assert len({first["conversationId"], other_contact["conversationId"], other_deployment["conversationId"]}) == 3


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"externalContactId": None}, (400, "constraint.validation")),
        ({"textBody": None}, (400, "invalid.webmessaging.text.body")),
        ({"textBody": ""}, (400, "invalid.webmessaging.text.body")),
        ({"textBody": "x" * 4000}, (400, "invalid.webmessaging.text.body")),
        ({"toAddressMessengerType": None}, (400, "constraint.validation")),
        ({"toAddressMessengerType": "carrier-pigeon"}, (400, "invalid.value")),
        ({"fromAddress": "4f2d7a1b-0000-4000-8000-000000000000"}, (400, "invalid.value")),
        ({"externalContactId": "customer-42"}, (400, "invalid.value")),
        ({"to": [{"id": CONTACT}]}, (400, "invalid.property")),
    ],
    ids=[
        "no-contact",
        "no-text",
        "empty-text",
        "text-4000",
        "no-type",
        "bad-type",
        "unknown-deployment",
        "contact-not-an-id",
        "invented-property",
    ],
)
async def test_agentless_webmessaging_validation(
    emu_api: httpx.AsyncClient, emu_client: httpx.AsyncClient, overrides: dict[str, Any], expected: tuple[int, str]
) -> None:
    response = await emu_api.post(AGENTLESS, json=agentless_body(**overrides))
    assert await error_of(response) == expected
    assert await ledger(emu_client, "conversation.created") == []


async def test_webmessaging_text_just_under_the_limit_is_accepted(emu_api: httpx.AsyncClient) -> None:
    await send(emu_api, textBody="x" * 3999)


async def test_invalid_property_names_the_property(emu_api: httpx.AsyncClient) -> None:
    response = await emu_api.post(AGENTLESS, json=agentless_body(previousConversationId="abc"))
    body = response.json()
    assert body["code"] == "invalid.property"
    assert "previousConversationId" in body["message"]
    assert "SendAgentlessOutboundMessageRequest" in body["message"]


async def test_malformed_json_is_bad_request(emu_api: httpx.AsyncClient) -> None:
    response = await emu_api.post(AGENTLESS, content=b'{"fromAddress": ', headers={"Content-Type": "application/json"})
    assert await error_of(response) == (400, "bad.request")


async def test_a_json_array_is_bad_request(emu_api: httpx.AsyncClient) -> None:
    assert await error_of(await emu_api.post(AGENTLESS, json=[agentless_body()])) == (400, "bad.request")


async def test_a_form_body_is_an_unsupported_media_type(emu_api: httpx.AsyncClient) -> None:
    response = await emu_api.post(AGENTLESS, data={"fromAddress": WEBMESSAGING_DEPLOYMENT})
    assert await error_of(response) == (415, "unsupported.media.type")


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"toAddress": "+13175550199"}, None),
        ({"toAddress": "3175550199"}, (400, "invalid.value")),
        ({"toAddress": None}, (400, "constraint.validation")),
        ({"toAddress": "+13175550199", "textBody": None}, (400, "constraint.validation")),
        ({"toAddress": "+13175550199", "textBody": "x" * 766}, (400, "max.length.exceeded")),
        ({"toAddress": "+13175550199", "fromAddress": "+19995550100"}, (400, "invalid.value")),
    ],
    ids=["ok", "not-e164", "no-to", "no-text", "too-long", "unknown-number"],
)
async def test_agentless_sms(
    emu_api: httpx.AsyncClient, overrides: dict[str, Any], expected: tuple[int, str] | None
) -> None:
    sms = {"fromAddress": SMS_NUMBER, "toAddressMessengerType": "sms", "externalContactId": None}
    body = agentless_body(**(sms | overrides))
    response = await emu_api.post(AGENTLESS, json=body)
    if expected is None:
        assert response.status_code == 200
        assert response.json()["toAddress"] == "+13175550199"
    else:
        assert await error_of(response) == expected


async def test_whatsapp_addresses_are_digits_only(emu_api: httpx.AsyncClient) -> None:
    body = agentless_body(fromAddress=WHATSAPP, toAddressMessengerType="whatsapp", externalContactId=None,
                          messagingTemplate={"responseId": TEMPLATE_ID})
    assert await error_of(await emu_api.post(AGENTLESS, json=body | {"toAddress": "+44 7700"})) == (
        400,
        "invalid.whatsapp.address",
    )
    assert (await emu_api.post(AGENTLESS, json=body | {"toAddress": "447700900123"})).status_code == 200


TEMPLATE_ID = "4f1d2c3b-5a69-4e7f-8d0c-1b2a3c4d5e6f"


@pytest.mark.parametrize(
    ("template", "field"),
    [
        (None, "messagingTemplate"),
        ({"bodyParameters": [{"id": "name", "value": "Ada"}]}, "messagingTemplate.responseId"),
    ],
    ids=["text-only", "no-response-id"],
)
async def test_whatsapp_needs_a_messaging_template(
    emu_api: httpx.AsyncClient, emu_client: httpx.AsyncClient, template: dict[str, Any] | None, field: str
) -> None:
    body = agentless_body(fromAddress=WHATSAPP, toAddressMessengerType="whatsapp", externalContactId=None,
                          toAddress="447700900123", messagingTemplate=template)
    response = await emu_api.post(AGENTLESS, json={k: v for k, v in body.items() if v is not None})
    assert await error_of(response) == (400, "constraint.validation")
    assert response.json()["messageParams"] == {"field": field}
    assert await ledger(emu_client, "conversation.created", "message.sent") == []


async def test_a_whatsapp_template_send_reads_back_as_notification_content(emu_api: httpx.AsyncClient) -> None:
    template = {"responseId": TEMPLATE_ID, "bodyParameters": [{"id": "name", "value": "Ada"}]}
    body = agentless_body(fromAddress=WHATSAPP, toAddressMessengerType="whatsapp", externalContactId=None,
                          toAddress="447700900123", messagingTemplate=template, textBody=None)
    sent = await send(emu_api, **body)
    assert sent["messengerType"] == "whatsapp"
    assert sent["messagingTemplate"] == template
    read = (await emu_api.get(f"/api/v2/conversations/messages/{sent['conversationId']}/messages/{sent['id']}")).json()
    assert read["textBody"] == ""  # required by the contract; a template has no text of its own
    assert "text" not in read["normalizedMessage"]
    assert read["normalizedMessage"]["content"] == [{
        "contentType": "Notification",
        "template": {"id": f"cannedresponse@{TEMPLATE_ID}", "body": {"parameters": [{"name": "name", "text": "Ada"}]}},
    }]


async def test_use_normalized_message_drops_the_deprecated_text_body(emu_api: httpx.AsyncClient) -> None:
    response = await emu_api.post(AGENTLESS, params={"useNormalizedMessage": "true"}, json=agentless_body())
    assert "textBody" not in response.json()
    assert response.json()["message"]["normalizedMessage"]["text"] == "Your parcel ships today."
    bad = await emu_api.post(AGENTLESS, params={"useNormalizedMessage": "yes"}, json=agentless_body())
    assert await error_of(bad) == (400, "invalid.query.param.value")


# --- reading --------------------------------------------------------------------------------------
async def test_message_conversation_view_has_no_communication_ids(emu_api: httpx.AsyncClient) -> None:
    sent = await send(emu_api)
    view = (await emu_api.get(f"/api/v2/conversations/messages/{sent['conversationId']}")).json()
    customer = next(p for p in view["participants"] if p["purpose"] == "customer")
    assert customer["externalContact"]["id"] == CONTACT
    assert customer["state"] == "connected"
    assert customer["type"] == "webmessaging"


async def test_unknown_conversations_are_not_found(emu_api: httpx.AsyncClient) -> None:
    unknown = "0b9f6d3e-0000-4000-8000-000000000000"
    for path in (f"/api/v2/conversations/{unknown}", f"/api/v2/conversations/messages/{unknown}"):
        assert await error_of(await emu_api.get(path)) == (404, "conversation.error.conversation.not.found")


# --- ending it ------------------------------------------------------------------------------------
async def test_patch_state_disconnected_ends_the_conversation(
    emu_api: httpx.AsyncClient, emu_client: httpx.AsyncClient
) -> None:
    sent = await send(emu_api)
    cid = sent["conversationId"]
    response = await emu_api.patch(f"/api/v2/conversations/messages/{cid}", json={"state": "disconnected"})
    assert response.status_code == 200
    assert response.json()["endTime"]
    assert all(p["messages"][0]["state"] == "disconnected" for p in response.json()["participants"])

    kinds = [e["kind"] for e in await ledger(emu_client, "participant.disconnected", "conversation.disconnected")]
    assert kinds == ["participant.disconnected", "participant.disconnected", "conversation.disconnected"]
    # Ending an ended conversation is a success and changes nothing.
    again = await emu_api.patch(f"/api/v2/conversations/messages/{cid}", json={"state": "disconnected"})
    assert again.status_code == 200
    assert len(await ledger(emu_client, "conversation.disconnected")) == 1
    # No longer live: the next send starts a new conversation.
    assert (await send(emu_api))["conversationId"] != cid


async def test_patch_without_state_answers_200_and_changes_nothing(emu_api: httpx.AsyncClient) -> None:
    sent = await send(emu_api)
    response = await emu_api.patch(f"/api/v2/conversations/messages/{sent['conversationId']}", json={})
    assert response.status_code == 200
    assert "endTime" not in response.json()


@pytest.mark.parametrize(
    ("body", "expected"),
    [({"state": "connected"}, (400, "invalid.value")), ({"status": "offline"}, (400, "invalid.property"))],
)
async def test_patch_conversation_refuses_other_states(
    emu_api: httpx.AsyncClient, body: dict[str, str], expected: tuple[int, str]
) -> None:
    sent = await send(emu_api)
    response = await emu_api.patch(f"/api/v2/conversations/messages/{sent['conversationId']}", json=body)
    assert await error_of(response) == expected


async def test_patch_conversation_takes_any_property_of_conversation(emu_api: httpx.AsyncClient) -> None:
    cid = (await send(emu_api))["conversationId"]
    read = (await emu_api.get(f"/api/v2/conversations/{cid}")).json()
    # The contract's body is Conversation: a client may send back what it read, with the new state.
    body = read | {"name": "order 42", "externalTag": "crm-42", "recordingState": "NONE", "state": "disconnected"}
    response = await emu_api.patch(f"/api/v2/conversations/messages/{cid}", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["endTime"]


async def participants(api: httpx.AsyncClient, cid: str) -> dict[str, dict[str, Any]]:
    conversation = (await api.get(f"/api/v2/conversations/{cid}")).json()
    return {p["purpose"]: p for p in conversation["participants"]}


async def test_disconnecting_the_api_participant_leaves_the_customer(emu_api: httpx.AsyncClient) -> None:
    cid = (await send(emu_api))["conversationId"]
    api_participant = (await participants(emu_api, cid))["api"]["id"]
    path = f"/api/v2/conversations/messages/{cid}/participants/{api_participant}"
    response = await emu_api.patch(path, json={"state": "disconnected"})
    assert response.status_code == 202
    assert response.content == b""
    after = await participants(emu_api, cid)
    assert after["api"]["messages"][0]["state"] == "disconnected"
    assert after["customer"]["messages"][0]["state"] == "connected"
    # Already disconnected.
    again = await emu_api.patch(path, json={"state": "disconnected"})
    assert await error_of(again) == (400, "conversation.error.participant.no.active.conversations")


async def test_disconnecting_the_customer_ends_the_conversation(emu_api: httpx.AsyncClient) -> None:
    cid = (await send(emu_api))["conversationId"]
    customer = (await participants(emu_api, cid))["customer"]["id"]
    response = await emu_api.patch(
        f"/api/v2/conversations/{cid}/participants/{customer}", json={"state": "disconnected"}
    )
    assert response.status_code == 202
    conversation = (await emu_api.get(f"/api/v2/conversations/{cid}")).json()
    assert conversation["endTime"]
    api_leg = next(p for p in conversation["participants"] if p["purpose"] == "api")["messages"][0]
    assert api_leg["disconnectType"] == "peer"


async def test_participant_patch_of_an_unknown_participant(emu_api: httpx.AsyncClient) -> None:
    cid = (await send(emu_api))["conversationId"]
    path = f"/api/v2/conversations/{cid}/participants/7d1f5c2a-0000-4000-8000-000000000000"
    response = await emu_api.patch(path, json={"state": "disconnected"})
    assert await error_of(response) == (404, "conversation.error.not.conversation.participant")


async def test_post_disconnect_tears_down_with_202(emu_api: httpx.AsyncClient) -> None:
    cid = (await send(emu_api))["conversationId"]
    response = await emu_api.post(f"/api/v2/conversations/{cid}/disconnect")
    assert response.status_code == 202
    conversation = (await emu_api.get(f"/api/v2/conversations/{cid}")).json()
    assert conversation["endTime"]
    assert {p["messages"][0]["disconnectType"] for p in conversation["participants"]} == {"system"}


async def test_delete_conversation_with_client_credentials_is_not_a_user(emu_api: httpx.AsyncClient) -> None:
    cid = (await send(emu_api))["conversationId"]
    assert await error_of(await emu_api.delete(f"/api/v2/conversations/{cid}")) == (400, "not.a.user")
    assert "endTime" not in (await emu_api.get(f"/api/v2/conversations/{cid}")).json()


# --- sending on a communication ---------------------------------------------------------------------
async def test_send_on_the_api_communication(emu_api: httpx.AsyncClient, emu_client: httpx.AsyncClient) -> None:
    cid = (await send(emu_api))["conversationId"]
    comm = (await participants(emu_api, cid))["api"]["messages"][0]["id"]
    base = f"/api/v2/conversations/messages/{cid}/communications/{comm}"
    response = await emu_api.post(f"{base}/messages", json={"textBody": "Anything else?"})
    assert response.status_code == 200
    assert response.json()["conversationId"] == cid
    assert len(await ledger(emu_client, "message.sent")) == 2
    typing = await emu_api.post(f"{base}/typing", json={"typing": {"type": "On", "duration": 5000}})
    assert typing.status_code == 204


async def test_send_on_the_customer_communication_is_refused(emu_api: httpx.AsyncClient) -> None:
    cid = (await send(emu_api))["conversationId"]
    comm = (await participants(emu_api, cid))["customer"]["messages"][0]["id"]
    response = await emu_api.post(
        f"/api/v2/conversations/messages/{cid}/communications/{comm}/messages", json={"textBody": "hi"}
    )
    assert await error_of(response) == (400, "bad.request")


async def test_send_on_an_unknown_communication_is_not_found(emu_api: httpx.AsyncClient) -> None:
    cid = (await send(emu_api))["conversationId"]
    path = f"/api/v2/conversations/messages/{cid}/communications/1e2d3c4b-0000-4000-8000-000000000000/messages"
    assert await error_of(await emu_api.post(path, json={"textBody": "hi"})) == (404, "not.found")


# --- queue outbound -------------------------------------------------------------------------------
async def test_queue_outbound_sms(emu_api: httpx.AsyncClient) -> None:
    body = {"queueId": SEED.queues[0].id, "toAddress": "+13175550142", "toAddressMessengerType": "sms"}
    response = await emu_api.post("/api/v2/conversations/messages", json=body)
    assert response.status_code == 200
    again = await emu_api.post("/api/v2/conversations/messages", json=body | {"useExistingConversation": True})
    assert await error_of(again) == (400, "active.conversation")
    no_address = body | {"queueId": SEED.queues[1].id}
    assert await error_of(await emu_api.post("/api/v2/conversations/messages", json=no_address)) == (
        400,
        "queue.address.required",
    )
    bad_number = body | {"toAddress": "555"}
    assert await error_of(await emu_api.post("/api/v2/conversations/messages", json=bad_number)) == (
        400,
        "invalid.phone.number",
    )


# --- mandatory wrap-up (issue 13.7) ---------------------------------------------------------------
CLAIMS = next(q for q in SEED.queues if q.wrapup_required)
WRAPUP_CODE = "0e9d8c7b-6a5f-4e3d-8c2b-1a0f9e8d7c6b"


async def claims_conversation_with_agent(emu_api: httpx.AsyncClient, emu_client: httpx.AsyncClient) -> tuple[str, str]:
    body = {"queueId": CLAIMS.id, "toAddress": "+13175550177", "toAddressMessengerType": "sms"}
    created = await emu_api.post("/api/v2/conversations/messages", json=body)
    assert created.status_code == 200, created.text
    cid = created.json()["id"]
    joined = await emu_client.post(f"/__emulator/conversations/{cid}/agent/join", json={"agent_id": SEED.agents[0].id})
    return cid, joined.json()["participant_id"]


async def test_a_mandatory_wrapup_queue_refuses_ending_without_a_code(
    emu_api: httpx.AsyncClient, emu_client: httpx.AsyncClient
) -> None:
    cid, agent = await claims_conversation_with_agent(emu_api, emu_client)
    view = (await emu_api.get(f"/api/v2/conversations/{cid}")).json()
    agent_view = next(p for p in view["participants"] if p["id"] == agent)
    assert agent_view["wrapupRequired"] is True and agent_view["queueId"] == CLAIMS.id

    whole = await emu_api.patch(f"/api/v2/conversations/messages/{cid}", json={"state": "disconnected"})
    assert await error_of(whole) == (400, "conversation.error.wrapup.cannot.skip")
    leave = f"/api/v2/conversations/{cid}/participants/{agent}"
    assert await error_of(await emu_api.patch(leave, json={"state": "disconnected"})) == (
        400, "conversation.error.wrapup.code.required")
    assert await error_of(await emu_api.patch(leave, json={"state": "disconnected", "wrapupSkipped": True})) == (
        400, "conversation.error.wrapup.cannot.skip")
    assert await error_of(await emu_api.patch(leave, json={"state": "disconnected", "wrapup": {"notes": "x"}})) == (
        400, "conversation.error.wrapup.code.required")
    assert (await emu_api.get(f"/api/v2/conversations/{cid}")).json().get("endTime") is None  # nothing changed

    wrapped = await emu_api.patch(leave, json={"state": "disconnected", "wrapup": {"code": WRAPUP_CODE}})
    assert wrapped.status_code == 202
    ended = await emu_api.patch(f"/api/v2/conversations/messages/{cid}", json={"state": "disconnected"})
    assert ended.status_code == 200 and ended.json()["endTime"]
    agent_view = next(p for p in ended.json()["participants"] if p["id"] == agent)
    assert agent_view["wrapup"]["code"] == WRAPUP_CODE


async def test_other_queues_let_the_agent_leave_without_a_code(
    emu_api: httpx.AsyncClient, emu_client: httpx.AsyncClient
) -> None:
    body = {"queueId": SEED.queues[0].id, "toAddress": "+13175550178", "toAddressMessengerType": "sms"}
    cid = (await emu_api.post("/api/v2/conversations/messages", json=body)).json()["id"]
    await emu_client.post(f"/__emulator/conversations/{cid}/agent/join", json={"agent_id": SEED.agents[0].id})
    ended = await emu_api.patch(f"/api/v2/conversations/messages/{cid}", json={"state": "disconnected"})
    assert ended.status_code == 200 and ended.json()["endTime"]


# --- eventual consistency (issue 13.6) ------------------------------------------------------------
async def test_a_delayed_disconnect_answers_200_and_applies_later(
    emu_api: httpx.AsyncClient, emu_client: httpx.AsyncClient
) -> None:
    await emu_client.patch("/__emulator/config", json={"disconnect_delay_s": 5})
    cid = (await send(emu_api))["conversationId"]
    patched = await emu_api.patch(f"/api/v2/conversations/messages/{cid}", json={"state": "disconnected"})
    assert patched.status_code == 200 and "endTime" not in patched.json()
    again = await emu_api.patch(f"/api/v2/conversations/messages/{cid}", json={"state": "disconnected"})
    assert again.status_code == 200  # a second disconnect keeps the first one's time
    await emu_client.post("/__emulator/clock", json={"advance_s": 4})
    assert "endTime" not in (await emu_api.get(f"/api/v2/conversations/{cid}")).json()
    await emu_client.post("/__emulator/clock", json={"advance_s": 1})
    assert (await emu_api.get(f"/api/v2/conversations/{cid}")).json()["endTime"]
    assert len(await ledger(emu_client, "conversation.disconnected")) == 1


async def test_a_no_effect_fault_answers_200_and_changes_nothing(
    emu_api: httpx.AsyncClient, emu_client: httpx.AsyncClient
) -> None:
    fault = {"method": "PATCH", "path": "/api/v2/conversations/messages/{id}", "no_effect": True, "times": 1}
    assert (await emu_client.post("/__emulator/faults", json=fault)).status_code in (200, 201)
    cid = (await send(emu_api))["conversationId"]
    lost = await emu_api.patch(f"/api/v2/conversations/messages/{cid}", json={"state": "disconnected"})
    assert lost.status_code == 200 and "endTime" not in lost.json()
    assert "endTime" not in (await emu_api.get(f"/api/v2/conversations/{cid}")).json()
    applied = await emu_api.patch(f"/api/v2/conversations/messages/{cid}", json={"state": "disconnected"})
    assert applied.json()["endTime"]
