"""Web Messaging guest REST: history and JWT revocation (the guest protocol itself is a websocket).

Both take the Web Messaging guest JWT (``getJwt`` on the guest socket, or
``POST /__emulator/webmessaging/sessions``). History is the JWT's session: its messages both ways and
its presence events, across its conversations, newest first, ``pageSize``/``pageNumber`` paged; each
entity is the StructuredMessage the socket carried (same ``id`` and ``channel.messageId``). History
checks ``Origin`` as the socket's upgrade does (403 outside the deployment's allowed domains).
"""

from __future__ import annotations

from starlette.responses import Response

from emulator.errors import ApiError
from emulator.rest.api import Auth, Call, api_route, no_content, ok
from emulator.rest.bodies import query_int
from emulator.ws.webmessaging_frames import history_entity
from genesys.models import WebMessagingMessageEntityList


async def get_history(call: Call) -> Response:
    page_size = query_int(call.request, "pageSize", 25, lo=1, hi=100)
    page_number = query_int(call.request, "pageNumber", 1, lo=1, hi=10_000)
    subject = call.guest_claims.data.sub
    state = call.state
    session = state.webmessaging.get(subject) if subject else None
    if session is None:
        raise ApiError(404, "session.not.found")
    deployment = call.fixtures.deployment(session.deployment_id, "webmessaging")
    require = call.config.webmessaging_require_origin
    if deployment is None or not deployment.allows_origin(call.request.headers.get("origin"), require=require):
        # The same check as the socket's upgrade: the deployment's allowed domains.
        raise ApiError(403, "origin.not.allowed")
    items = state.webmessaging.history(session)
    start = (page_number - 1) * page_size
    return ok(
        WebMessagingMessageEntityList(
            entities=[history_entity(item) for item in items[start : start + page_size]],
            page_size=page_size,
            page_number=page_number,
            total=len(items),
            page_count=(len(items) + page_size - 1) // page_size,
        )
    )


async def revoke_token(call: Call) -> Response:
    call.jwts.revoke(call.guest_claims)
    call.ledger.record(call.clock.now(), "token.revoked", by="guest")
    return no_content()


ROUTES = [
    api_route("/api/v2/webmessaging/messages", get_history, methods=["GET"], auth=Auth.WEBMESSAGING),
    # Revoking an expired JWT is 400 credentials.expired (the contract lists it under 400), not 401.
    api_route("/api/v2/webdeployments/token/revoke", revoke_token, methods=["DELETE"], auth=Auth.WEBMESSAGING,
              expired_status=400),
]
