"""Cobrowse inside a web messaging conversation, and the legacy cobrowsesessions views.

``POST /api/v2/conversations/{id}/cobrowse`` takes no body and answers a join code and websocket
URL for the customer. One cobrowse may be live per conversation: starting a second while one is live
is 409 ``request.conflict`` (the duplicate-start conflict of the forum thread); start again after it
ended and a fresh session with a fresh join code is created.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from emulator import views
from emulator.errors import ApiError
from emulator.rest.api import Auth, Call, api_route, ok
from emulator.rest.conversations import conversation_of, patch_conversation, patch_participant
from emulator.rest.wire_extra import CobrowseConversationEntityListing
from emulator.state.model import Conversation, Media


def websocket_base(request: Request) -> str:
    """``ws(s)://host:port`` of this server as the caller reached it."""
    scheme = "wss" if request.url.scheme in ("https", "wss") else "ws"
    return f"{scheme}://{request.url.netloc}"


async def post_cobrowse(call: Call) -> Response:
    conv = conversation_of(call, code="not.found")
    session = call.state.cobrowse.start(
        conv, websocket_base=websocket_base(call.request), offer_s=call.config.cobrowse_offer_s
    )
    return ok(views.cobrowse_session(conv, session))


async def list_cobrowse(call: Call) -> Response:
    # The logged-in *user's* cobrowse conversations: a client-credentials token has no user.
    return ok(CobrowseConversationEntityListing(entities=[], page_size=25, page_number=1, total=0, page_count=0))


def _with_cobrowse(call: Call) -> Conversation:
    conv = conversation_of(call, code="not.found")
    if not conv.cobrowse:
        raise ApiError(404, "not.found")
    return conv


async def get_cobrowse(call: Call) -> Response:
    return ok(views.cobrowse_conversation(_with_cobrowse(call)))


async def patch_cobrowse(call: Call) -> Response:
    return await patch_conversation(call, _with_cobrowse(call), Media.COBROWSE)


async def patch_cobrowse_participant(call: Call) -> Response:
    return await patch_participant(call, _with_cobrowse(call), Media.COBROWSE, body_required=False)


_SESSION = "/api/v2/conversations/cobrowsesessions/{conversationId}"
ROUTES = [
    api_route("/api/v2/conversations/{conversationId}/cobrowse", post_cobrowse, methods=["POST"], auth=Auth.CLIENT),
    api_route("/api/v2/conversations/cobrowsesessions", list_cobrowse, methods=["GET"], auth=Auth.CLIENT),
    api_route(_SESSION, get_cobrowse, methods=["GET"], auth=Auth.CLIENT),
    api_route(_SESSION, patch_cobrowse, methods=["PATCH"], auth=Auth.CLIENT),
    api_route(
        _SESSION + "/participants/{participantId}",
        patch_cobrowse_participant,
        methods=["PATCH"],
        auth=Auth.CLIENT,
    ),
]
