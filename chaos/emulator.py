"""The emulator as the harness sees it: its admin API (fixtures, ledger, faults) and the few Genesys
calls the harness makes itself (setting up target conversations, reading conversations back).

Everything here is the outside of Genesys: the ledger is the record of what Genesys did, whatever
Parley believes.
"""

from __future__ import annotations

from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field

ADMIN = "/__emulator"


class LedgerEntry(BaseModel):
    """One side effect (the admin API's entry; only the fields the verdict reads are typed)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    seq: int
    at: str
    kind: str
    conversation_id: str | None = None
    message_id: str | None = None
    cobrowse_session_id: str | None = None
    session_id: str | None = None
    external_contact_id: str | None = None
    messenger_type: str | None = None
    participant_id: str | None = None
    purpose: str | None = None
    by: str | None = None
    text_length: int | None = None


class Fixtures(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    client_id: str
    client_secret: str
    organization_id: str
    deployments: list[dict[str, Any]]
    queues: list[dict[str, Any]]
    sms_numbers: list[str]
    messaging_integrations: list[dict[str, Any]] = Field(default_factory=list)

    def deployment(self, kind: str) -> str:
        return str(next(d["id"] for d in self.deployments if d["type"] == kind))

    def integration(self, messenger_type: str) -> str:
        return str(next(i["id"] for i in self.messaging_integrations if i["messenger_type"] == messenger_type))


class Emulator:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.http = httpx.Client(base_url=base_url, timeout=30.0)
        self._token: str | None = None

    def close(self) -> None:
        self.http.close()

    # --- admin -----------------------------------------------------------------------------------------
    def fixtures(self) -> Fixtures:
        return Fixtures.model_validate(self._ok(self.http.get(f"{ADMIN}/fixtures")).json())

    def ledger(self, after: int = 0) -> list[LedgerEntry]:
        reply = self._ok(self.http.get(f"{ADMIN}/ledger", params={"after": after}))
        return [LedgerEntry.model_validate(e) for e in reply.json()["entries"]]

    def last_seq(self, known: int = 0) -> int:
        """The ledger's latest entry (reading only what came after ``known``)."""
        entries = self.ledger(after=known)
        return entries[-1].seq if entries else known

    def add_faults(self, specs: list[dict[str, Any]]) -> None:
        for spec in specs:
            self._ok(self.http.post(f"{ADMIN}/faults", json=spec))

    def faults(self) -> list[dict[str, Any]]:
        return list(self._ok(self.http.get(f"{ADMIN}/faults")).json()["faults"])

    def clear_faults(self) -> None:
        self._ok(self.http.delete(f"{ADMIN}/faults"))

    def mix(self, enabled: bool) -> dict[str, int]:
        """Switch the chaos fault mix on or off (chaos.emulator_server); the calls it faulted, by kind."""
        reply = self._ok(self.http.post("/__chaos/mix", json={"enabled": enabled}))
        return {str(k): int(v) for k, v in reply.json()["counts"].items()}

    def patch_config(self, **fields: Any) -> None:
        self._ok(self.http.patch(f"{ADMIN}/config", json=fields))

    # --- Genesys calls of the harness's own (made while no fault is installed) ---------------------------
    def token(self) -> str:
        if self._token is None:
            f = self.fixtures()
            reply = self._ok(self.http.post("/oauth/token", data={"grant_type": "client_credentials"},
                                            auth=(f.client_id, f.client_secret)))
            self._token = str(reply.json()["access_token"])
        return self._token

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token()}"}
        return self.http.request(method, path, headers=headers, **kwargs)

    def send_agentless(self, deployment_id: str, external_contact_id: str, text: str) -> dict[str, Any]:
        body = {"fromAddress": deployment_id, "toAddressMessengerType": "webmessaging",
                "externalContactId": external_contact_id, "textBody": text}
        return dict(self._ok(self.api("POST", "/api/v2/conversations/messages/agentless", json=body)).json())

    def message_conversation(self, conversation_id: str) -> dict[str, Any] | None:
        reply = self.api("GET", f"/api/v2/conversations/messages/{conversation_id}")
        return None if reply.status_code == 404 else dict(self._ok(reply).json())

    def chat(self, conversation_id: str) -> dict[str, Any] | None:
        reply = self.api("GET", f"/api/v2/conversations/chats/{conversation_id}")
        return None if reply.status_code == 404 else dict(self._ok(reply).json())

    def conversation(self, conversation_id: str) -> dict[str, Any] | None:
        reply = self.api("GET", f"/api/v2/conversations/{conversation_id}")
        return None if reply.status_code == 404 else dict(self._ok(reply).json())

    @staticmethod
    def _ok(reply: httpx.Response) -> httpx.Response:
        reply.raise_for_status()
        return reply
