"""A scripted Genesys Cloud for ``httpx.MockTransport``: the OAuth token endpoint, a contract-valid
default answer for every operation the client uses, queued answers/exceptions per route, and a
record of every request (for contract validation of what the client sent).
"""

from __future__ import annotations

import json
import re
import threading
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.support.contract import validate_response

NOW = "2026-05-14T10:00:00Z"
MEMBER = {"id": "member-1", "displayName": "Ada", "role": "CUSTOMER", "state": "CONNECTED"}
CONVERSATION = {
    "id": "conv-1",
    "startTime": NOW,
    "participants": [{"id": "part-1", "purpose": "customer", "messages": [{"id": "comm-1", "state": "connected"}]}],
}
WEBCHAT_MESSAGE = {
    "id": "wm-1",
    "conversation": {"id": "conv-1"},
    "sender": MEMBER,
    "body": "hello",
    "bodyType": "standard",
    "timestamp": NOW,
}

# (method, path template) -> (status, body). Templates use {x} like the contract.
DEFAULTS: dict[tuple[str, str], tuple[int, Any]] = {
    ("POST", "/api/v2/conversations/messages/agentless"): (
        200,
        {
            "id": "msg-1",
            "conversationId": "conv-1",
            "messengerType": "webmessaging",
            "timestamp": NOW,
            "message": {"id": "msg-1", "status": "sent", "textBody": "hi", "timestamp": NOW},
        },
    ),
    ("GET", "/api/v2/conversations/{id}"): (200, CONVERSATION),
    ("POST", "/api/v2/analytics/conversations/details/query"): (
        200,
        {
            "conversations": [
                {
                    "conversationId": "conv-1",
                    "conversationStart": NOW,
                    "participants": [
                        {
                            "participantId": "part-1",
                            "purpose": "customer",
                            "externalContactId": "ec-1",
                            "sessions": [{"mediaType": "message", "messageType": "webmessaging"}],
                        }
                    ],
                }
            ],
            "totalHits": 1,
        },
    ),
    ("GET", "/api/v2/conversations/messages/{id}/messages/{mid}"): (
        200,
        {"id": "msg-1", "status": "sent", "textBody": "hi", "timestamp": NOW, "conversationId": "conv-1"},
    ),
    ("POST", "/api/v2/conversations/messages/{id}/messages/bulk"): (
        200,
        {"entities": [{"id": "msg-1", "status": "sent", "textBody": "hi", "timestamp": NOW}]},
    ),
    ("DELETE", "/api/v2/conversations/{id}"): (204, None),
    ("GET", "/api/v2/conversations/messages/{id}"): (
        200,
        {"id": "conv-1", "participants": [{"id": "part-1", "purpose": "customer", "state": "connected"}]},
    ),
    ("PATCH", "/api/v2/conversations/messages/{id}"): (200, {**CONVERSATION, "endTime": NOW}),
    ("PATCH", "/api/v2/conversations/messages/{id}/participants/{pid}"): (202, None),
    ("PATCH", "/api/v2/conversations/{id}/participants/{pid}"): (202, None),
    ("POST", "/api/v2/conversations/{id}/disconnect"): (202, "accepted"),
    ("POST", "/api/v2/conversations/{id}/cobrowse"): (
        200,
        {
            "id": "cb-1",
            "joinCode": "482913",
            "websocketUrl": "wss://cobrowse/x",
            "communicationType": "Message",
        },
    ),
    ("GET", "/api/v2/conversations/cobrowsesessions/{id}"): (200, {"id": "conv-1", "participants": []}),
    ("PATCH", "/api/v2/conversations/cobrowsesessions/{id}"): (200, CONVERSATION),
    ("PATCH", "/api/v2/conversations/cobrowsesessions/{id}/participants/{pid}"): (202, None),
    ("POST", "/api/v2/conversations/chats"): (200, {"id": "chat-1", "otherMediaUris": [], "selfUri": "/x"}),
    ("POST", "/api/v2/webchat/guest/conversations"): (
        200,
        {"id": "conv-1", "jwt": "guest.jwt.value", "eventStreamUri": "wss://stream/conv-1", "member": MEMBER},
    ),
    ("POST", "/api/v2/webchat/guest/conversations/{id}/members/{mid}/messages"): (200, WEBCHAT_MESSAGE),
    ("POST", "/api/v2/webchat/guest/conversations/{id}/members/{mid}/typing"): (
        200,
        {"id": "t-1", "conversation": {"id": "conv-1"}, "sender": MEMBER, "timestamp": NOW},
    ),
    ("GET", "/api/v2/webchat/guest/conversations/{id}/members"): (
        200,
        {"entities": [MEMBER], "pageSize": 25},
    ),
    ("GET", "/api/v2/webchat/guest/conversations/{id}/members/{mid}"): (200, MEMBER),
    ("DELETE", "/api/v2/webchat/guest/conversations/{id}/members/{mid}"): (204, None),
    ("GET", "/api/v2/webchat/guest/conversations/{id}/messages"): (
        200,
        {"entities": [WEBCHAT_MESSAGE], "pageSize": 100},
    ),
    ("GET", "/api/v2/webchat/guest/conversations/{id}/messages/{msg}"): (200, WEBCHAT_MESSAGE),
    ("GET", "/api/v2/webmessaging/messages"): (
        200,
        {"entities": [{"id": "x", "type": "Text", "text": "hi", "direction": "Outbound"}], "pageSize": 25},
    ),
}
_TEMPLATES = [
    (method, template, re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$")) for method, template in DEFAULTS
]


@dataclass
class Recorded:
    method: str
    path: str
    template: str
    params: dict[str, str]
    headers: httpx.Headers
    body: Any

    @property
    def authorization(self) -> str | None:
        return self.headers.get("authorization")


@dataclass
class FakeGenesys:
    """Call it as a MockTransport handler. Thread-safe (the multi-thread tests share one)."""

    expires_in: int = 86399
    requests: list[Recorded] = field(default_factory=list)
    token_requests: int = 0
    revoked: set[str] = field(default_factory=set)
    _queued: dict[tuple[str, str], deque[httpx.Response | Exception]] = field(
        default_factory=lambda: defaultdict(deque)
    )
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)

    def queue(self, method: str, template: str, *answers: httpx.Response | Exception) -> None:
        """Answer the next calls of a route with these (then fall back to the default)."""
        self._queued[(method, template)].extend(answers)

    def revoke_all(self) -> None:
        """Tokens issued so far get 401 from now on (expired or revoked early)."""
        with self._lock:
            self.revoked.update(f"token-{n}" for n in range(1, self.token_requests + 1))

    @property
    def api_requests(self) -> list[Recorded]:
        return [r for r in self.requests if r.path != "/oauth/token"]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.raw_path.decode().split("?")[0]  # still percent-encoded, as sent
        body = json.loads(request.content) if request.content and path != "/oauth/token" else None
        template = self._template(request.method, path) if path != "/oauth/token" else path
        with self._lock:
            self.requests.append(
                Recorded(request.method, path, template, dict(request.url.params), request.headers, body)
            )
            queued = self._queued.get((request.method, template))
            answer = queued.popleft() if queued else None
        if isinstance(answer, Exception):
            raise answer
        if answer is not None:
            return answer
        if path == "/oauth/token":
            return self._token()
        bearer = request.headers.get("authorization", "").removeprefix("Bearer ")
        if bearer in self.revoked:
            return error(401, "credentials.expired", "The supplied credentials are expired.")
        status, payload = DEFAULTS[(request.method, template)]
        if payload is None:
            return httpx.Response(status)
        validate_response(request.method, path, status, payload)  # the fake stays faithful
        return httpx.Response(status, json=payload)

    def _token(self) -> httpx.Response:
        with self._lock:
            self.token_requests += 1
            token = f"token-{self.token_requests}"
        return httpx.Response(200, json={"access_token": token, "token_type": "bearer", "expires_in": self.expires_in})

    @staticmethod
    def _template(method: str, path: str) -> str:
        for m, template, pattern in _TEMPLATES:
            if m == method and pattern.match(path):
                return template
        raise AssertionError(f"unexpected request {method} {path}")


def error(
    status: int, code: str, message: str, *, headers: dict[str, str] | None = None, **extra: Any
) -> httpx.Response:
    """A Genesys ErrorBody answer."""
    body = {
        "message": message,
        "code": code,
        "status": status,
        "contextId": "ctx-1",
        "details": [],
        "errors": [],
    }
    body.update(extra)
    all_headers = {"ININ-Correlation-Id": "ctx-1", **(headers or {})}
    return httpx.Response(status, json=body, headers=all_headers)
