"""Web Messaging guest REST: history and JWT revocation (the guest protocol itself is a websocket).

Both take the Web Messaging guest JWT (``getJwt`` on the guest socket; for now minted by
``POST /__emulator/webmessaging/sessions``).
"""

from __future__ import annotations

from starlette.responses import Response

from emulator.api import Auth, Call, api_route, no_content, ok
from emulator.bodies import query_int
from emulator.errors import ApiError
from genesys.models import WebMessagingMessageEntityList


async def get_history(call: Call) -> Response:
    page_size = query_int(call.request, "pageSize", 25, lo=1, hi=100)
    page_number = query_int(call.request, "pageNumber", 1, lo=1, hi=10_000)
    subject = call.guest_claims.data.sub
    if subject is None or call.emulator.state.webmessaging_session(subject) is None:
        raise ApiError(404, "session.not.found")
    # History arrives with the guest socket (later); an empty page is Genesys' answer for a new session.
    return ok(
        WebMessagingMessageEntityList(entities=[], page_size=page_size, page_number=page_number, total=0, page_count=0)
    )


async def revoke_token(call: Call) -> Response:
    emulator = call.emulator
    emulator.jwts.revoke(call.guest_claims)
    emulator.ledger.record(emulator.clock.now(), "token.revoked", by="guest")
    return no_content()


ROUTES = [
    api_route("/api/v2/webmessaging/messages", get_history, methods=["GET"], auth=Auth.WEBMESSAGING),
    api_route("/api/v2/webdeployments/token/revoke", revoke_token, methods=["DELETE"], auth=Auth.WEBMESSAGING),
]
