"""The seeded organization: credentials, deployments, queues, contacts, agents, addresses.

Fixed values (never random) so a README, a test or a `.env` can name them. They look like a real
org's (UUIDs, a 43-character secret) so that code which validates shapes treats them as real.
"""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict

from genesys.regions import EMULATOR_CLIENT_ID, EMULATOR_CLIENT_SECRET


class _Fixture(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Deployment(_Fixture):
    id: str
    name: str
    # webmessaging: Messenger deployment (agentless fromAddress, Web Messaging guest socket);
    # guestchat: legacy widget deployment used by the Guest Chat API.
    type: Literal["webmessaging", "guestchat"]
    # Web Messaging: the "allowed domains" the guest socket's Origin header is checked against (a
    # host matches a domain or any subdomain of it; ports are ignored). Empty: any origin.
    allowed_domains: tuple[str, ...] = ()
    # Web Messaging: the queue the deployment's inbound message flow routes guest conversations to.
    queue_id: str | None = None
    # Web Messaging: the Messenger configuration's conversation settings. Genesys' defaults are both off:
    # no Presence Disconnect frame when the agent ends (the guest cannot tell), and Presence Clear refused
    # with 403 "Presence events Conversation Clear are not supported".
    conversation_disconnect: bool = False
    disconnect_type: Literal["ReadOnly", "Send"] | None = None
    """With conversation_disconnect: None lets the emulator's ``webmessaging_disconnect_read_only`` decide."""
    conversation_clear: bool = False
    # Web Messaging guest limits: new guest sockets per minute (more are refused with HTTP 429 on the
    # upgrade) and messages per second per session (more get TooManyRequestsErrorMessage with retryAfter).
    # Genesys: 1,000 connections a minute per deployment; 5 messages a second in its reference, 2 for
    # guest messages since December 2023.
    connections_per_minute: int = 1000
    messages_per_second: int = 5

    def allows_origin(self, origin: str | None, *, require: bool) -> bool:
        """Is a guest socket (or history read) with this ``Origin`` header allowed here? A missing
        ``Origin`` is, unless ``require``: browsers always send one, server-side clients often do not."""
        if not self.allowed_domains:
            return True
        if not origin:
            return not require
        host = (urlsplit(origin).hostname or "").lower()
        return any(host == domain or host.endswith("." + domain) for domain in self.allowed_domains)


class Queue(_Fixture):
    id: str
    name: str
    # Address the queue sends outbound SMS from (POST /api/v2/conversations/messages); None = none
    # configured, which is Genesys' 400 queue.address.required.
    outbound_sms_address: str | None = None
    # Mandatory wrap-up: an agent leaving a conversation of this queue must give a wrap-up code (else
    # 400 conversation.error.wrapup.code.required, or wrapup.cannot.skip for a whole-conversation PATCH).
    wrapup_required: bool = False


class ExternalContact(_Fixture):
    id: str
    first_name: str
    last_name: str


class Agent(_Fixture):
    """A user that the admin helpers can make join and answer a conversation."""

    id: str
    name: str


class MessagingIntegration(_Fixture):
    """``fromAddress`` of agentless sends on open/whatsapp/apple: the integration id."""

    id: str
    name: str
    messenger_type: Literal["open", "whatsapp", "apple"]


class Fixtures(_Fixture):
    client_id: str
    client_secret: str
    organization_id: str
    deployments: tuple[Deployment, ...]
    queues: tuple[Queue, ...]
    external_contacts: tuple[ExternalContact, ...]
    agents: tuple[Agent, ...]
    sms_numbers: tuple[str, ...]
    messaging_integrations: tuple[MessagingIntegration, ...]

    def deployment(self, deployment_id: str, type_: str) -> Deployment | None:
        return next((d for d in self.deployments if d.id == deployment_id and d.type == type_), None)

    def queue_by_id(self, queue_id: str) -> Queue | None:
        return next((q for q in self.queues if q.id == queue_id), None)

    def queue_by_name(self, name: str) -> Queue | None:
        return next((q for q in self.queues if q.name == name), None)

    def agent(self, agent_id: str | None) -> Agent | None:
        """The agent with that id; the first one when no id is given."""
        if agent_id is None:
            return self.agents[0]
        return next((a for a in self.agents if a.id == agent_id), None)

    def integration(self, integration_id: str, messenger_type: str) -> MessagingIntegration | None:
        return next(
            (i for i in self.messaging_integrations if i.id == integration_id and i.messenger_type == messenger_type),
            None,
        )


def _messenger(deployment_id: str, configuration: str, **settings: Any) -> Deployment:
    """A web messaging deployment of the seeded org on the loopback domains, routed to Support, with one
    Messenger configuration (what its name says)."""
    return Deployment(id=deployment_id, name=f"Parley Messenger ({configuration})", type="webmessaging",
                      allowed_domains=("localhost", "127.0.0.1", "parley.example.com"),
                      queue_id="5b7e1d9a-3c2f-4e81-9a6b-d4f08c2e7a13", **settings)


SEED = Fixtures(
    client_id=EMULATOR_CLIENT_ID,  # what Parley uses when no Genesys is configured
    client_secret=EMULATOR_CLIENT_SECRET,
    organization_id="4a9e2c71-8b3d-4f06-a5e2-c17d90b3f6e8",
    deployments=(
        Deployment(
            id="e1b6f3a8-52c9-4d7e-8a10-b4c3d2e5f607",
            name="Parley Web Messaging",
            type="webmessaging",
            allowed_domains=("localhost", "127.0.0.1", "parley.example.com"),
            queue_id="5b7e1d9a-3c2f-4e81-9a6b-d4f08c2e7a13",
            conversation_disconnect=True,
            conversation_clear=True,
        ),
        Deployment(
            id="3d8a1c5e-96f2-4b0a-8e7d-52c4a9b1f3e0",
            name="Parley Web Messaging (EU)",
            type="webmessaging",
            allowed_domains=("parley.example.eu",),
            queue_id="c2a94f6e-7b15-4d3c-8e29-1f6a0b5d8c47",
            conversation_disconnect=True,
            conversation_clear=True,
        ),
        # The same Messenger with each conversation configuration an admin can choose.
        _messenger("7a1d4e92-5c3b-4f08-9e6a-2b8d1f5c7e30", "Genesys defaults: Disconnect off, Clear off"),
        _messenger("c4e8b1f7-2d6a-4a93-8b5e-9f0c3d7a1e62", "Disconnect on as ReadOnly, Clear off",
                   conversation_disconnect=True, disconnect_type="ReadOnly"),
        _messenger("5f9b2c6d-8e1a-4d73-a0f4-6c2e8b9d3a15", "Disconnect on as Send, Clear off",
                   conversation_disconnect=True, disconnect_type="Send"),
        # Genesys' guest message limit as announced in December 2023, and a connection limit small enough
        # for a test to pass it in seconds.
        _messenger("b3f1c8e5-4a27-4d69-9e0b-7c2d5a8f1e46", "2 guest messages/s, 120 new connections/min",
                   conversation_disconnect=True, conversation_clear=True, connections_per_minute=120,
                   messages_per_second=2),
        Deployment(id="9f2d7b4c-1a6e-4c38-b5d9-e08f3a2c6b71", name="Parley Guest Chat Widget", type="guestchat"),
    ),
    queues=(
        Queue(id="5b7e1d9a-3c2f-4e81-9a6b-d4f08c2e7a13", name="Support", outbound_sms_address="+13175550100"),
        Queue(id="c2a94f6e-7b15-4d3c-8e29-1f6a0b5d8c47", name="Sales"),
        Queue(id="81f3e6b2-4d9a-4a57-b0c8-6e2d7f1a9b35", name="Billing"),
        Queue(id="e7d4a2c9-6b1f-4f83-9c5e-0a8b3d2f7e14", name="Claims", outbound_sms_address="+13175550101",
              wrapup_required=True),
    ),
    external_contacts=(
        ExternalContact(id="2e6b9d14-7f3a-4c85-a1e0-5d8c3b7f9a26", first_name="Ada", last_name="Lovelace"),
        ExternalContact(id="b8d3f7a1-5c2e-4b96-8d04-a9e1c6f2b758", first_name="Alan", last_name="Turing"),
        ExternalContact(id="f41c8e27-9a3b-4d6f-b2e5-07a9d3c1e864", first_name="Grace", last_name="Hopper"),
    ),
    agents=(
        Agent(id="6d2f8b3e-0a4c-4e97-9b1d-c5a7e3f8d209", name="Emma Agent"),
        Agent(id="a7c1e5d9-3b8f-4f20-8c6a-2d9e4b7f1c53", name="Noah Agent"),
    ),
    sms_numbers=("+13175550100", "+13175550101"),
    messaging_integrations=(
        MessagingIntegration(
            id="0c5e9a3d-7b1f-4a62-9e8d-b3f6c2a4d715", name="Parley Open Messaging", messenger_type="open"
        ),
        MessagingIntegration(
            id="d93b6f1e-2c8a-4e05-a7d4-5f1b9c3e6a28", name="Parley WhatsApp", messenger_type="whatsapp"
        ),
    ),
)

SECOND = Fixtures(
    client_id="6698d039-c58a-4de4-8e9d-9f97b17613e6",
    client_secret="goWGBdH79xHprU0RaxaCToHeTSK6aftnCbRmTGS9RjA",
    organization_id="aef100cb-3153-4c86-b726-b9d34657f4c5",
    deployments=(
        Deployment(
            id="2e021521-6e91-4f21-87fb-246e8d7b962e",
            name="Northwind Web Messaging",
            type="webmessaging",
            allowed_domains=("localhost", "127.0.0.1", "northwind.example.com"),
            queue_id="9aa92af9-f7e5-4c55-8260-9bebc49156bb",
            conversation_disconnect=True,
            conversation_clear=True,
        ),
        Deployment(id="161db3e3-8c80-46f2-95cb-5f350b6be52f", name="Northwind Guest Chat Widget", type="guestchat"),
    ),
    queues=(
        Queue(id="9aa92af9-f7e5-4c55-8260-9bebc49156bb", name="Support", outbound_sms_address="+442079460100"),
        Queue(id="792729cc-a2fc-4d5b-8cad-0640c5d041c7", name="Returns"),
    ),
    external_contacts=(
        ExternalContact(id="246f53f4-9c66-40ce-bcac-1bed7be7422f", first_name="Mary", last_name="Somerville"),
    ),
    agents=(Agent(id="548b4c30-3637-473a-8638-4da627e71b3e", name="Olivia Agent"),),
    sms_numbers=("+442079460100",),
    messaging_integrations=(
        MessagingIntegration(
            id="35cbcc72-a20b-405d-9e6b-1a4eedf75f4c", name="Northwind Open Messaging", messenger_type="open"
        ),
    ),
)
"""A second org (another customer of an ISV, another region): its own client, deployments, queues and
contacts, none shared with :data:`SEED`. An emulator started with ``PARLEY_EMULATOR_ORG=second``
serves it instead of the default one."""

SEEDED_ORGS: dict[str, Fixtures] = {"default": SEED, "second": SECOND}
"""``PARLEY_EMULATOR_ORG`` -> the org that emulator serves."""
