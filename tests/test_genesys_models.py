"""Wire models: JSON names match the contract, bodies round-trip and validate against it."""

from __future__ import annotations

import inspect
from typing import Any

import jsonschema
import pytest
from pydantic import ValidationError

from genesys import models as m
from tests.support.contract import load, validate_definition

DEFINITIONS: dict[str, Any] = load()["definitions"]
WIRE_MODELS = [
    cls
    for _, cls in inspect.getmembers(m, inspect.isclass)
    if issubclass(cls, m.WireModel) and cls.DEFINITION and cls.__module__ == m.__name__
]
REQUEST_MODELS = [cls for cls in WIRE_MODELS if issubclass(cls, m.RequestModel)]
# The contract marks Conversation.participants/startTime required; a PATCH sends only ``state``.
REQUIRED_EXCEPTIONS = {"ConversationStateRequest": {"participants", "startTime"}}


def _aliases(cls: type[m.WireModel]) -> set[str]:
    return {f.alias or name for name, f in cls.model_fields.items()}


@pytest.mark.parametrize("cls", WIRE_MODELS, ids=lambda c: c.__name__)
def test_every_json_name_is_in_the_contract_definition(cls: type[m.WireModel]) -> None:
    props = set(DEFINITIONS[cls.DEFINITION]["properties"])
    assert _aliases(cls) <= props, f"{cls.__name__}: {_aliases(cls) - props} not in {cls.DEFINITION}"


@pytest.mark.parametrize("cls", REQUEST_MODELS, ids=lambda c: c.__name__)
def test_request_models_require_what_the_contract_requires(cls: type[m.RequestModel]) -> None:
    required = set(DEFINITIONS[cls.DEFINITION].get("required", [])) - REQUIRED_EXCEPTIONS.get(cls.__name__, set())
    ours = {f.alias or n for n, f in cls.model_fields.items() if f.is_required() or f.default is not None}
    assert required <= ours


REQUEST_SAMPLES: list[tuple[type[m.RequestModel], dict[str, Any]]] = [
    (
        m.SendAgentlessOutboundMessageRequest,
        {
            "fromAddress": "dep-1",
            "toAddressMessengerType": "webmessaging",
            "externalContactId": "ec-1",
            "textBody": "Your parcel is on its way",
            "useExistingActiveConversation": True,
        },
    ),
    (
        m.SendAgentlessOutboundMessageRequest,
        {
            "fromAddress": "+15550001",
            "toAddress": "15550002",
            "toAddressMessengerType": "whatsapp",
            "messagingTemplate": {
                "responseId": "r-1",
                "bodyParameters": [{"id": "name", "value": "Ada"}],
                "headerParameters": [{"id": "h", "value": "v"}],
                "buttonUrlParameters": [{"id": "b", "value": "u"}],
            },
        },
    ),
    (m.MediaParticipantRequest, {"state": "disconnected"}),
    (
        m.MediaParticipantRequest,
        {
            "state": "disconnected",
            "wrapup": {"code": "wc-1", "name": "Done", "notes": "n", "tags": ["a"], "durationSeconds": 3},
            "wrapupSkipped": False,
        },
    ),
    (
        m.CreateWebChatRequest,
        {
            "queueId": "q-1",
            "provider": "Acme CRM",
            "skillIds": ["s-1"],
            "languageId": "l-1",
            "priority": 5,
            "attributes": {"ticket": "42"},
            "customerName": "Ada",
        },
    ),
    (m.CreateWebChatMessageRequest, {"body": "hello", "bodyType": "standard"}),
    (
        m.CreateWebChatConversationRequest,
        {
            "organizationId": "org-1",
            "deploymentId": "dep-1",
            "routingTarget": {"targetType": "QUEUE", "targetAddress": "Support", "skills": ["x"]},
            "memberInfo": {"displayName": "Ada", "customFields": {"k": "v"}, "email": "a@example.com"},
            "memberAuthToken": "signed",
            "journeyContext": {
                "customer": {"id": "c-1", "idType": "cookie"},
                "customerSession": {"id": "s-1", "type": "web"},
                "triggeringAction": {"id": "a-1", "actionMap": {"id": "am-1", "version": 2}},
            },
        },
    ),
]


@pytest.mark.parametrize(("cls", "body"), REQUEST_SAMPLES, ids=lambda v: getattr(v, "__name__", ""))
def test_request_bodies_round_trip_and_validate(cls: type[m.RequestModel], body: dict[str, Any]) -> None:
    wire = cls.model_validate(body).to_wire()
    assert wire == body
    validate_definition(wire, cls.DEFINITION)


def test_conversation_state_request_is_state_only() -> None:
    wire = m.ConversationStateRequest().to_wire()
    assert wire == {"state": "disconnected"}
    with pytest.raises(jsonschema.ValidationError, match="required"):
        validate_definition(wire, "Conversation")  # the documented contract deviation


def test_request_models_forbid_unknown_fields_and_bad_enums() -> None:
    with pytest.raises(ValidationError):
        m.CreateWebChatRequest.model_validate({"queueId": "q", "provider": "p", "contactId": "x"})
    with pytest.raises(ValidationError):
        m.SendAgentlessOutboundMessageRequest(from_address="d", to_address_messenger_type="fax")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        m.MediaParticipantRequest(state="terminated")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        m.CreateWebChatMessageRequest(body="x" * 4001)


NOW = "2026-05-14T10:00:00Z"
MEMBER = {"id": "m-1", "displayName": "Ada", "role": "CUSTOMER", "state": "CONNECTED", "joinDate": NOW}
RESPONSE_SAMPLES: list[tuple[type[m.ResponseModel], dict[str, Any]]] = [
    (
        m.SendAgentlessOutboundMessageResponse,
        {
            "id": "msg-1",
            "conversationId": "c-1",
            "fromAddress": "dep-1",
            "messengerType": "webmessaging",
            "useExistingActiveConversation": True,
            "timestamp": NOW,
            "user": {"id": "u-1", "selfUri": "/api/v2/users/u-1"},
            "selfUri": "/api/v2/conversations/messages/agentless/msg-1",
            "message": {
                "id": "msg-1",
                "timestamp": NOW,
                "status": "sent",
                "textBody": "hi",
                "direction": "outbound",
                "messengerType": "webmessaging",
                "conversationId": "c-1",
                "normalizedMessage": {"type": "Text", "text": "hi", "direction": "Outbound"},
            },
        },
    ),
    (
        m.Conversation,
        {
            "id": "c-1",
            "startTime": NOW,
            "participants": [
                {
                    "id": "p-1",
                    "purpose": "customer",
                    "attributes": {"a": "b"},
                    "messages": [
                        {
                            "id": "comm-1",
                            "state": "connected",
                            "type": "webmessaging",
                            "fromAddress": {"name": "Ada"},
                            "messages": [{"messageId": "x", "messageURI": "https://x", "messageStatus": "sent"}],
                        }
                    ],
                    "cobrowsesessions": [{"id": "cb-1", "state": "connected", "cobrowseSessionId": "s"}],
                    "chats": [{"id": "ch-1", "state": "connected", "roomId": "NONE"}],
                    "wrapup": {"code": "wc", "durationSeconds": 1},
                }
            ],
            "divisions": [{"division": {"id": "d-1", "name": "Home"}, "entities": [{"id": "e"}]}],
            "recordingState": "NONE",
            "selfUri": "/api/v2/conversations/c-1",
        },
    ),
    (
        m.MessageConversation,
        {
            "id": "c-1",
            "participants": [
                {
                    "id": "p-1",
                    "purpose": "customer",
                    "state": "connected",
                    "type": "webmessaging",
                    "externalContact": {"id": "ec-1"},
                    "toAddress": {"addressNormalized": "dep-1"},
                    "messages": [{"messageId": "m", "messageStatus": "received"}],
                    "errorInfo": {"code": "x", "message": "y"},
                }
            ],
            "otherMediaUris": [],
            "selfUri": "/api/v2/conversations/messages/c-1",
        },
    ),
    (
        m.CobrowseWebMessagingSession,
        {
            "id": "cb-1",
            "joinCode": "123456",
            "websocketUrl": "wss://x",
            "dateOfferEnds": NOW,
            "communicationType": "Message",
            "selfUri": "/api/v2/x",
        },
    ),
    (
        m.CobrowseConversation,
        {"id": "c-1", "participants": [{"id": "p", "cobrowseSessionId": "s", "controlling": ["p"]}]},
    ),
    (
        m.ChatConversation,
        {"id": "chat-1", "otherMediaUris": [], "selfUri": "/api/v2/conversations/chats/chat-1"},
    ),
    (
        m.CreateWebChatConversationResponse,
        {"id": "c-1", "jwt": "eyJ.x.y", "eventStreamUri": "wss://stream/x", "member": MEMBER},
    ),
    (
        m.WebChatMessage,
        {
            "id": "wm-1",
            "conversation": {"id": "c-1"},
            "sender": MEMBER,
            "body": "hello",
            "bodyType": "standard",
            "timestamp": NOW,
        },
    ),
    (m.WebChatTyping, {"id": "t-1", "conversation": {"id": "c-1"}, "sender": MEMBER, "timestamp": NOW}),
    (
        m.WebChatMessageEntityList,
        {
            "entities": [
                {
                    "conversation": {"id": "c"},
                    "sender": MEMBER,
                    "body": "b",
                    "bodyType": "notice",
                    "timestamp": NOW,
                }
            ],
            "pageSize": 100,
            "next": "/next",
            "previousPage": "/prev",
        },
    ),
    (m.WebChatMemberInfoEntityList, {"entities": [MEMBER], "pageSize": 25, "pageNumber": 1, "total": 1}),
    (
        m.WebMessagingMessageEntityList,
        {
            "entities": [
                {
                    "id": "wm-1",
                    "type": "Text",
                    "text": "hi",
                    "direction": "Outbound",
                    "originatingEntity": "Human",
                    "channel": {"time": NOW, "messageId": "x", "from": {"nickname": "Agent"}},
                    "content": [{"contentType": "QuickReply", "quickReply": {"text": "Yes", "payload": "y"}}],
                },
                {"type": "Event", "events": [{"eventType": "Presence", "presence": {"type": "Disconnect"}}]},
            ],
            "pageSize": 25,
            "pageNumber": 1,
            "total": 2,
            "pageCount": 1,
        },
    ),
    (
        m.ErrorBody,
        {
            "message": "Conversation State",
            "code": "chat.error.conversation.state",
            "status": 400,
            "messageWithParams": "Conversation State",
            "messageParams": {"message": "The conversation is not active"},
            "contextId": "ctx",
            "details": [{"errorCode": "e", "fieldName": "f"}],
            "errors": [{"code": "inner", "status": 400}],
            "limit": {"key": "k", "namespace": "conversation", "value": 1},
        },
    ),
]


@pytest.mark.parametrize(("cls", "body"), RESPONSE_SAMPLES, ids=lambda v: getattr(v, "__name__", ""))
def test_response_bodies_round_trip_and_validate(cls: type[m.ResponseModel], body: dict[str, Any]) -> None:
    validate_definition(body, cls.DEFINITION)
    wire = cls.model_validate(body).to_wire()
    assert {k: wire[k] for k in body} == body  # list fields may gain an empty default
    validate_definition(wire, cls.DEFINITION)


def test_response_models_ignore_fields_genesys_adds() -> None:
    conv = m.MessageConversation.model_validate(
        {"id": "c", "participants": [{"id": "p", "purpose": "workflow", "brandNewField": 1}], "future": True}
    )
    assert conv.participants[0].purpose == "workflow"
    assert "brandNewField" not in conv.to_wire()["participants"][0]


def test_secrets_and_customer_text_stay_out_of_reprs() -> None:
    shown = repr(m.CreateWebChatConversationResponse(jwt="eyJ-SECRET", member=m.WebChatMemberInfo(role="X")))
    shown += repr(
        m.SendAgentlessOutboundMessageRequest(
            from_address="d", to_address_messenger_type="sms", text_body="CUSTOMER-TEXT"
        )
    )
    shown += str(m.CreateWebChatMessageRequest(body="CUSTOMER-TEXT"))
    shown += repr(m.OAuthToken(access_token="TOKEN-SECRET", expires_in=60))
    for secret in ("eyJ-SECRET", "CUSTOMER-TEXT", "TOKEN-SECRET"):
        assert secret not in shown


def test_oauth_models_use_snake_case_wire_names() -> None:
    token = m.OAuthToken.model_validate({"access_token": "t", "token_type": "Bearer", "expires_in": 86399})
    assert (token.access_token, token.expires_in) == ("t", 86399)
    err = m.OAuthError.model_validate({"error": "invalid_client", "description": "bad"})
    assert err.error == "invalid_client"
