"""Finding what a lost request did: the conversation detail query (with analytics' indexing lag) and the
message reads by id. Every answer here is held to the contract by the test client (``emu_api``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from emulator import EmulatorConfig
from emulator.fixtures import SEED
from emulator.runtime import Emulator
from tests.support.emulator_server import CONTACT, QUEUE, agentless_body, asgi_client

pytestmark = pytest.mark.anyio

QUERY = "/api/v2/analytics/conversations/details/query"
AGENTLESS = "/api/v2/conversations/messages/agentless"
SMS_NUMBER = SEED.sms_numbers[0]
OTHER_CONTACT = SEED.external_contacts[1].id
LAG_S = 2.0


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def around(emulator: Emulator, hours: float = 1) -> str:
    """An interval from ``hours`` ago to a minute ahead of the emulator's clock."""
    now = emulator.clock.now()
    return f"{iso(now - timedelta(hours=hours))}/{iso(now + timedelta(minutes=1))}"


def dim(dimension: str, value: str | None = None, operator: str | None = None) -> dict[str, Any]:
    predicate: dict[str, Any] = {"type": "dimension", "dimension": dimension}
    if value is not None:
        predicate["value"] = value
    if operator is not None:
        predicate["operator"] = operator
    return predicate


def segments(kind: str, *predicates: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"type": kind, "predicates": list(predicates)}]


async def query(api: httpx.AsyncClient, emulator: Emulator, **body: Any) -> dict[str, Any]:
    body.setdefault("interval", around(emulator))
    response = await api.post(QUERY, json=body)
    assert response.status_code == 200, response.text
    return dict(response.json())


def ids(answer: dict[str, Any]) -> list[str]:
    return [c["conversationId"] for c in answer.get("conversations", [])]


async def send(api: httpx.AsyncClient, **overrides: Any) -> dict[str, Any]:
    response = await api.post(AGENTLESS, json=agentless_body(**overrides))
    assert response.status_code == 200, response.text
    return dict(response.json())


async def send_sms(api: httpx.AsyncClient, to: str = "+15551230001") -> dict[str, Any]:
    return await send(api, fromAddress=SMS_NUMBER, toAddress=to, toAddressMessengerType="sms", externalContactId=None)


async def end(api: httpx.AsyncClient, conversation_id: str) -> None:
    response = await api.patch(f"/api/v2/conversations/messages/{conversation_id}", json={"state": "disconnected"})
    assert response.status_code == 200


def indexed(emulator: Emulator) -> None:
    """Let analytics catch up with everything that happened so far."""
    emulator.clock.advance(emulator.config.analytics_lag_s + 0.01)


# --- indexing lag ------------------------------------------------------------------------------------
async def test_a_new_conversation_is_found_only_after_the_lag(emu_api: httpx.AsyncClient, emulator: Emulator) -> None:
    assert emulator.config.analytics_lag_s == LAG_S
    sent = await send(emu_api)
    assert await query(emu_api, emulator) == {"totalHits": 0}
    emulator.clock.advance(LAG_S - 0.5)
    assert ids(await query(emu_api, emulator)) == []
    emulator.clock.advance(0.6)
    answer = await query(emu_api, emulator)
    assert ids(answer) == [sent["conversationId"]] and answer["totalHits"] == 1
    conversation = answer["conversations"][0]
    assert "conversationEnd" not in conversation
    customer = next(p for p in conversation["participants"] if p["purpose"] == "customer")
    assert customer["externalContactId"] == CONTACT
    assert customer["sessions"][0] | {"segments": None} == {
        "sessionId": customer["sessions"][0]["sessionId"],
        "mediaType": "message",
        "messageType": "webmessaging",
        "direction": "outbound",
        "addressFrom": SEED.deployments[0].id,
        "segments": None,
    }
    assert {p["purpose"] for p in conversation["participants"]} == {"customer", "api"}


async def test_an_end_shows_only_after_the_lag(emu_api: httpx.AsyncClient, emulator: Emulator) -> None:
    sent = await send(emu_api)
    indexed(emulator)
    await end(emu_api, sent["conversationId"])
    live = segments("and", dim("conversationEnd", operator="notExists"))
    ended = segments("and", dim("conversationEnd", operator="exists"))
    still_live = await query(emu_api, emulator, conversationFilters=live)
    assert ids(still_live) == [sent["conversationId"]]
    assert "conversationEnd" not in still_live["conversations"][0]
    assert ids(await query(emu_api, emulator, conversationFilters=ended)) == []
    indexed(emulator)
    assert ids(await query(emu_api, emulator, conversationFilters=live)) == []
    answer = await query(emu_api, emulator, conversationFilters=ended)
    assert ids(answer) == [sent["conversationId"]]
    conversation = answer["conversations"][0]
    assert conversation["conversationEnd"] >= conversation["conversationStart"]
    segment_ends = [s["segments"][0].get("segmentEnd") for p in conversation["participants"] for s in p["sessions"]]
    assert all(segment_ends)


async def test_the_lag_is_tunable_at_runtime(
    emu_api: httpx.AsyncClient, emu_client: httpx.AsyncClient, emulator: Emulator
) -> None:
    response = await emu_client.patch("/__emulator/config", json={"analytics_lag_s": 0})
    assert response.status_code == 200 and response.json()["analytics_lag_s"] == 0
    sent = await send(emu_api)
    assert ids(await query(emu_api, emulator)) == [sent["conversationId"]]
    assert (await emu_client.patch("/__emulator/config", json={"analytics_lag_s": -1})).status_code == 400


def test_the_lag_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARLEY_EMULATOR_ANALYTICS_LAG_S", "7.5")
    assert EmulatorConfig().analytics_lag_s == 7.5


# --- the interval ------------------------------------------------------------------------------------
async def test_the_interval_selects_whole_days_of_conversation_starts(
    emu_api: httpx.AsyncClient, emulator: Emulator
) -> None:
    sent = await send(emu_api)
    indexed(emulator)
    started = datetime.fromisoformat(sent["timestamp"])
    midnight = started.replace(hour=0, minute=0, second=0, microsecond=0)
    # Touches the day it started on without containing the start: found ("a day touched by the interval").
    same_day = f"{iso(midnight)}/{iso(midnight + timedelta(microseconds=1000))}"
    assert ids(await query(emu_api, emulator, interval=same_day)) == [sent["conversationId"]]
    # Ends at that midnight: touches only the day before.
    day_before = f"{iso(midnight - timedelta(hours=1))}/{iso(midnight)}"
    assert ids(await query(emu_api, emulator, interval=day_before)) == []
    # Bounds without an offset are UTC.
    naive_midnight = midnight.replace(tzinfo=None)
    naive = f"{naive_midnight.isoformat()}/{(naive_midnight + timedelta(days=1)).isoformat()}"
    assert ids(await query(emu_api, emulator, interval=naive)) == [sent["conversationId"]]


DAY = "2024-05-01T00:00:00Z/2024-05-02T00:00:00Z"


def on_day(**fields: Any) -> dict[str, Any]:
    return {"interval": DAY, **fields}


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({}, "constraint.validation"),
        ({"interval": "garbage"}, "bad.request"),
        ({"interval": "2024-05-01T00:00:00Z"}, "bad.request"),
        ({"interval": "yesterday/today"}, "invalid.date"),
        ({"interval": "2024-05-02T00:00:00Z/2024-05-01T00:00:00Z"}, "bad.request"),
        ({"interval": "2024-05-01T00:00:00Z/2024-05-09T00:00:00Z"}, "bad.request"),  # > 7 days without a filter
        (
            {
                "interval": "2024-05-01T00:00:00Z/2024-06-02T00:00:00Z",
                "segmentFilters": segments("and", dim("purpose", "x")),
            },
            "bad.request",  # > 31 days with one
        ),
        (on_day(paging={"pageSize": 0, "pageNumber": 1}), "invalid.value"),
        (on_day(paging={"pageSize": 101, "pageNumber": 1}), "invalid.value"),
        (on_day(paging={"pageSize": 10, "pageNumber": 0}), "invalid.value"),
        (on_day(segmentFilters=segments("and", dim("purpose"))), "constraint.validation"),
        (on_day(segmentFilters=segments("and", {"type": "property", "value": "x"})), "constraint.validation"),
        (on_day(segmentFilters=segments("and", dim("wrapUpCode", "x"))), "invalid.value"),
        (on_day(segmentFilters=[{"predicates": []}]), "constraint.validation"),
        (on_day(conversationFilters=segments("and", dim("conversationId"))), "constraint.validation"),
        (on_day(aggregations=[{"type": "termFrequency"}]), "bad.request"),
        (on_day(interva1="x"), "invalid.property"),
    ],
)
async def test_bad_queries_are_400_error_bodies(emu_api: httpx.AsyncClient, body: dict[str, Any], code: str) -> None:
    response = await emu_api.post(QUERY, json=body)
    assert (response.status_code, response.json()["code"]) == (400, code), response.text


async def test_the_query_needs_a_client_token(emu_client: httpx.AsyncClient, emulator: Emulator) -> None:
    response = await emu_client.post(QUERY, json={"interval": around(emulator)})
    assert (response.status_code, response.json()["code"]) == (401, "authentication.required")


# --- filters -----------------------------------------------------------------------------------------
async def test_segment_filters_find_a_customers_conversations(emu_api: httpx.AsyncClient, emulator: Emulator) -> None:
    ada = await send(emu_api)
    alan = await send(emu_api, externalContactId=OTHER_CONTACT)
    sms = await send_sms(emu_api, to="+15551230001")
    other_sms = await send_sms(emu_api, to="+15551230002")
    indexed(emulator)

    async def found(*filters: dict[str, Any], conversation: list[dict[str, Any]] | None = None) -> set[str]:
        body: dict[str, Any] = {"segmentFilters": list(filters)}
        if conversation:
            body["conversationFilters"] = conversation
        return set(ids(await query(emu_api, emulator, **body)))

    by_contact = {"type": "and", "predicates": [dim("externalContactId", CONTACT), dim("messageType", "webmessaging")]}
    assert await found(by_contact) == {ada["conversationId"]}
    by_number = {"type": "and", "predicates": [dim("mediaType", "message"), dim("addressTo", "+15551230001")]}
    assert await found(by_number) == {sms["conversationId"]}
    either = {"type": "or", "predicates": [dim("externalContactId", CONTACT), dim("addressTo", "+15551230002")]}
    assert await found(either) == {ada["conversationId"], other_sms["conversationId"]}
    # Two filters must both match (each on some session); an "and" needs one session to satisfy all.
    assert await found(
        {"type": "and", "predicates": [dim("purpose", "customer")]},
        {"type": "and", "predicates": [dim("addressFrom", SMS_NUMBER)]},
    ) == {sms["conversationId"], other_sms["conversationId"]}
    api_with_contact = {"type": "and", "predicates": [dim("purpose", "api"), dim("externalContactId", CONTACT)]}
    assert await found(api_with_contact) == set()
    # Clauses combine like predicates; enumerations compare without case.
    clause = {
        "type": "and",
        "predicates": [dim("purpose", "Customer")],
        "clauses": [{"type": "or", "predicates": [dim("externalContactId", OTHER_CONTACT), dim("messageType", "sms")]}],
    }
    assert await found(clause) == {alan["conversationId"], sms["conversationId"], other_sms["conversationId"]}
    # exists / notExists: an sms customer has no externalContactId here.
    no_contact = {
        "type": "and",
        "predicates": [dim("purpose", "customer"), dim("externalContactId", operator="notExists")],
    }
    assert await found(no_contact) == {sms["conversationId"], other_sms["conversationId"]}
    # Conversation filters: by id, and or-ed predicates.
    by_id = [
        {
            "type": "or",
            "predicates": [dim("conversationId", ada["conversationId"]), dim("conversationId", sms["conversationId"])],
        }
    ]
    assert await found(conversation=by_id) == {ada["conversationId"], sms["conversationId"]}


async def test_a_third_party_chat_is_found_by_a_participant_attribute(
    emu_api: httpx.AsyncClient, emulator: Emulator
) -> None:
    body = {"queueId": QUEUE.id, "provider": "Acme CRM", "attributes": {"parley_command_id": "cmd-42", "n": "7"}}
    chat = (await emu_api.post("/api/v2/conversations/chats", json=body)).json()
    await emu_api.post("/api/v2/conversations/chats", json=body | {"attributes": {"parley_command_id": "cmd-43"}})
    indexed(emulator)

    def prop(name: str, value: str | None = None, **extra: str) -> dict[str, Any]:
        predicate: dict[str, Any] = {"type": "property", "property": name, **extra}
        if value is not None:
            predicate["value"] = value
        return predicate

    answer = await query(emu_api, emulator, segmentFilters=segments("and", prop("parley_command_id", "cmd-42")))
    assert ids(answer) == [chat["id"]]
    sessions = [s for p in answer["conversations"][0]["participants"] for s in p["sessions"]]
    assert {(s["mediaType"], s["provider"], s["roomId"]) for s in sessions} == {("chat", "Acme CRM", "NONE")}
    typed = segments("and", prop("n", "7.0", propertyType="real"))
    assert ids(await query(emu_api, emulator, segmentFilters=typed)) == [chat["id"]]
    exists = segments("and", prop("n", operator="exists"))
    assert ids(await query(emu_api, emulator, segmentFilters=exists)) == [chat["id"]]
    by_provider = segments("and", dim("provider", "Acme CRM"), dim("mediaType", "chat"))
    assert len(ids(await query(emu_api, emulator, segmentFilters=by_provider))) == 2


# --- order and paging --------------------------------------------------------------------------------
async def test_paging_and_order(emu_api: httpx.AsyncClient, emulator: Emulator) -> None:
    sent = []
    for n in range(5):
        sent.append((await send_sms(emu_api, to=f"+1555123000{n}"))["conversationId"])
        emulator.clock.advance(1)
    indexed(emulator)
    pages = [
        await query(emu_api, emulator, orderBy="conversationStart", paging={"pageSize": 2, "pageNumber": n})
        for n in (1, 2, 3, 4)
    ]
    assert [ids(p) for p in pages] == [sent[0:2], sent[2:4], sent[4:5], []]
    assert {p["totalHits"] for p in pages} == {5}
    newest_first = await query(emu_api, emulator, order="desc", paging={"pageSize": 3, "pageNumber": 1})
    assert ids(newest_first) == sent[::-1][:3]
    assert ids(await query(emu_api, emulator)) == sent  # default: oldest first, 25 a page


# --- messages by id ----------------------------------------------------------------------------------
async def test_get_message_by_id(emu_api: httpx.AsyncClient, emulator_app: Starlette, emu_token: str) -> None:
    sent = await send(emu_api, textBody="parley:cmd-1 Your parcel ships today.")
    path = f"/api/v2/conversations/messages/{sent['conversationId']}/messages/{sent['id']}"
    message = (await emu_api.get(path)).json()
    assert message["id"] == sent["id"] and message["conversationId"] == sent["conversationId"]
    assert message["textBody"] == message["normalizedMessage"]["text"] == "parley:cmd-1 Your parcel ships today."
    assert (message["direction"], message["status"], message["messengerType"]) == ("outbound", "sent", "webmessaging")
    assert message["fromAddress"] == SEED.deployments[0].id and message["selfUri"] == path
    assert message["timestamp"] == sent["timestamp"]
    # useNormalizedMessage drops the deprecated textBody - which the contract marks required, so
    # this answer is read without the contract check.
    async with asgi_client(emulator_app, token=emu_token, check=False) as unchecked:
        normalized = (await unchecked.get(path, params={"useNormalizedMessage": "true"})).json()
    assert "textBody" not in normalized and normalized["normalizedMessage"]["text"]


@pytest.mark.parametrize("which", ["message", "conversation"])
async def test_an_unknown_message_is_404(emu_api: httpx.AsyncClient, which: str) -> None:
    sent = await send(emu_api)
    conversation = sent["conversationId"] if which == "message" else "00000000-0000-4000-8000-000000000000"
    message = "00000000-0000-4000-8000-000000000001" if which == "message" else sent["id"]
    response = await emu_api.get(f"/api/v2/conversations/messages/{conversation}/messages/{message}")
    assert (response.status_code, response.json()["code"]) == (404, "not.found")


async def test_bulk_messages(emu_api: httpx.AsyncClient) -> None:
    first = await send_sms(emu_api)
    second = await send(
        emu_api,
        fromAddress=SMS_NUMBER,
        toAddress="+15551230001",
        toAddressMessengerType="sms",
        externalContactId=None,
        textBody="second",
        useExistingActiveConversation=True,
    )
    assert second["conversationId"] == first["conversationId"]
    path = f"/api/v2/conversations/messages/{first['conversationId']}/messages/bulk"
    listing = (await emu_api.post(path, json=[second["id"], "unknown", first["id"], second["id"]])).json()
    assert [m["id"] for m in listing["entities"]] == [second["id"], first["id"]]
    assert listing["entities"][0]["textBody"] == "second"
    assert (await emu_api.post(path)).json() == {"entities": []}
    too_many = await emu_api.post(path, json=[f"id-{n}" for n in range(1001)])
    assert (too_many.status_code, too_many.json()["code"]) == (400, "bad.request")
    not_a_list = await emu_api.post(path, json={"ids": [first["id"]]})
    assert (not_a_list.status_code, not_a_list.json()["code"]) == (400, "bad.request")
    unknown = await emu_api.post("/api/v2/conversations/messages/nope/messages/bulk", json=[])
    assert (unknown.status_code, unknown.json()["code"]) == (404, "not.found")
