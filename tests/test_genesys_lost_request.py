"""The client's three reads for finding what a lost request did, end to end against the emulator in
process (every request and answer held to the contract), and the query builders Parley uses."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import fakeredis
import pytest
from starlette.applications import Starlette

from emulator.fixtures import SEED
from emulator.runtime import Emulator
from genesys import models as m
from genesys.client import AsyncGenesysClient
from genesys.errors import GenesysError
from tests.support.contract import validate_definition
from tests.test_genesys_emulator import CONTACT, QUEUE, SETTINGS, WEBMESSAGING, ContractTransport

pytestmark = pytest.mark.anyio

SMS_NUMBER = SEED.sms_numbers[0]


@pytest.fixture
async def genesys(emulator_app: Starlette) -> AsyncIterator[AsyncGenesysClient]:
    transport = ContractTransport(emulator_app)
    async with AsyncGenesysClient(SETTINGS, fakeredis.FakeAsyncRedis(), transport=transport) as client:
        yield client


def window(emulator: Emulator, hours: float = 2) -> tuple[datetime, datetime]:
    now = emulator.clock.now()
    return now - timedelta(hours=hours), now + timedelta(seconds=1)


def catch_up(emulator: Emulator) -> None:
    emulator.clock.advance(emulator.config.analytics_lag_s + 0.01)


async def test_a_lost_webmessaging_send_is_found_and_recognised(
    genesys: AsyncGenesysClient, emulator: Emulator
) -> None:
    sent = await genesys.send_agentless(
        from_address=WEBMESSAGING,
        messenger_type="webmessaging",
        external_contact_id=CONTACT,
        text="parley:cmd-7 Your parcel ships today.",
    )
    since, until = window(emulator)
    query = m.ConversationQuery.customer_conversations(
        messenger_type="webmessaging", recipient=CONTACT, since=since, until=until, live_only=True
    )
    # Not indexed yet: an empty answer right after the send proves nothing.
    assert (await genesys.query_conversation_details(query)).conversations == []
    catch_up(emulator)
    since, until = window(emulator)
    query = m.ConversationQuery.customer_conversations(
        messenger_type="webmessaging",
        recipient=CONTACT,
        since=since,
        until=until,
        from_address=WEBMESSAGING,
        live_only=True,
    )
    found = await genesys.query_conversation_details(query)
    assert found.total_hits == 1
    assert [c.conversation_id for c in found.started_between(since, until)] == [sent.conversation_id]
    conversation = found.conversations[0]
    assert conversation.conversation_end is None
    customer = next(p for p in conversation.participants or [] if p.purpose == "customer")
    assert customer.external_contact_id == CONTACT
    assert customer.sessions and customer.sessions[0].message_type == "webmessaging"

    assert sent.conversation_id and sent.id
    message = await genesys.get_message(sent.conversation_id, sent.id)
    assert message.text_body == "parley:cmd-7 Your parcel ships today."
    assert message.normalized_message and message.normalized_message.text == message.text_body
    listing = await genesys.get_messages_bulk(sent.conversation_id, [sent.id, "not-a-message"])
    assert [e.id for e in listing.entities] == [sent.id]

    with pytest.raises(GenesysError) as caught:
        await genesys.get_message(sent.conversation_id, "not-a-message")
    assert (caught.value.status, caught.value.code) == (404, "not.found")


async def test_the_customer_query_addresses_other_channels_by_number(
    genesys: AsyncGenesysClient, emulator: Emulator
) -> None:
    sms = await genesys.send_agentless(
        from_address=SMS_NUMBER, messenger_type="sms", to_address="+15551230009", text="hello"
    )
    await genesys.send_agentless(from_address=SMS_NUMBER, messenger_type="sms", to_address="+15551230008", text="hi")
    assert sms.conversation_id
    await genesys.patch_message_conversation(sms.conversation_id)
    catch_up(emulator)
    since, until = window(emulator)

    def query(live_only: bool) -> m.ConversationQuery:
        return m.ConversationQuery.customer_conversations(
            messenger_type="sms", recipient="+15551230009", since=since, until=until, live_only=live_only
        )

    assert (await genesys.query_conversation_details(query(live_only=True))).conversations == []
    ended = await genesys.query_conversation_details(query(live_only=False))
    assert [c.conversation_id for c in ended.conversations] == [sms.conversation_id]
    assert ended.conversations[0].conversation_end is not None


async def test_a_third_party_chat_is_found_by_its_command_id(genesys: AsyncGenesysClient, emulator: Emulator) -> None:
    chat = await genesys.create_third_party_chat(
        m.CreateWebChatRequest(queue_id=QUEUE.id, provider="Acme CRM", attributes={"parley_command_id": "cmd-9"})
    )
    catch_up(emulator)
    since, until = window(emulator)
    found = await genesys.query_conversation_details(
        m.ConversationQuery.with_participant_attribute("parley_command_id", "cmd-9", since=since, until=until)
    )
    assert [c.conversation_id for c in found.conversations] == [chat.id]
    sessions = [s for p in found.conversations[0].participants or [] for s in p.sessions or []]
    assert {(s.provider, s.room_id) for s in sessions} == {("Acme CRM", "NONE")}
    other = await genesys.query_conversation_details(
        m.ConversationQuery.with_participant_attribute("parley_command_id", "cmd-10", since=since, until=until)
    )
    assert other.conversations == [] and other.total_hits == 0


# --- the builders --------------------------------------------------------------------------------
SINCE = datetime(2026, 5, 14, 9, 30, tzinfo=UTC)
UNTIL = datetime(2026, 5, 14, 11, 0, 0, 123456, tzinfo=UTC)


def test_customer_query_body() -> None:
    query = m.ConversationQuery.customer_conversations(
        messenger_type="sms", recipient="+15551230009", since=SINCE, until=UNTIL, from_address=SMS_NUMBER
    )
    wire = query.to_wire()
    validate_definition(wire, "ConversationQuery")
    assert wire == {
        "interval": "2026-05-14T09:30:00.000Z/2026-05-14T11:00:00.123Z",
        "segmentFilters": [
            {
                "type": "and",
                "predicates": [
                    {"type": "dimension", "dimension": "mediaType", "operator": "matches", "value": "message"},
                    {"type": "dimension", "dimension": "messageType", "operator": "matches", "value": "sms"},
                    {"type": "dimension", "dimension": "addressTo", "operator": "matches", "value": "+15551230009"},
                    {"type": "dimension", "dimension": "addressFrom", "operator": "matches", "value": SMS_NUMBER},
                ],
            }
        ],
        "order": "asc",
        "orderBy": "conversationStart",
        "paging": {"pageSize": 100, "pageNumber": 1},
    }
    assert m.ConversationQuery.model_validate(wire) == query


def test_attribute_query_body() -> None:
    wire = m.ConversationQuery.with_participant_attribute(
        "parley_command_id", "cmd-9", since=SINCE, until=UNTIL, live_only=True
    ).to_wire()
    validate_definition(wire, "ConversationQuery")
    assert wire["segmentFilters"] == [
        {
            "type": "and",
            "predicates": [
                {
                    "type": "property",
                    "property": "parley_command_id",
                    "propertyType": "string",
                    "operator": "matches",
                    "value": "cmd-9",
                }
            ],
        }
    ]
    assert wire["conversationFilters"] == [
        {"type": "and", "predicates": [{"type": "dimension", "dimension": "conversationEnd", "operator": "notExists"}]}
    ]


def test_intervals_need_aware_ordered_bounds() -> None:
    assert m.format_interval(SINCE.astimezone(UTC), UNTIL) == "2026-05-14T09:30:00.000Z/2026-05-14T11:00:00.123Z"
    with pytest.raises(ValueError, match="timezone"):
        m.format_interval(SINCE.replace(tzinfo=None), UNTIL.replace(tzinfo=None))
    with pytest.raises(ValueError, match="end after"):
        m.format_interval(UNTIL, SINCE)


def test_bulk_ids_are_a_bare_array() -> None:
    assert m.MessageIdList(message_ids=["a", "b"]).to_wire() == ["a", "b"]
    with pytest.raises(ValueError):
        m.MessageIdList(message_ids=[str(n) for n in range(1001)])
