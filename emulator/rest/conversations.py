"""Conversation lifecycle: read, disconnect, participant updates - generic and per media.

The same two updates exist under several paths (``/conversations/messages/{id}``,
``/conversations/chats/{id}``, ``/conversations/cobrowsesessions/{id}`` and their participants);
:func:`patch_conversation` and :func:`patch_participant` implement them once, scoped to a media.
"""

from __future__ import annotations

from starlette.responses import Response

from emulator import views
from emulator.errors import ApiError
from emulator.faults import NO_EFFECT
from emulator.rest.api import Auth, Call, accepted, api_route, ok
from emulator.rest.bodies import parse_body
from emulator.rest.wire_extra import ConversationPatchRequest
from emulator.state.model import Conversation, Kind, Media
from genesys.models import MediaParticipantRequest

NOT_FOUND = "conversation.error.conversation.not.found"


def no_effect(call: Call) -> bool:
    """An injected ``no_effect`` fault: answer as if done, change nothing."""
    return bool(call.request.scope.get("state", {}).get(NO_EFFECT))


async def patch_conversation(call: Call, conv: Conversation, media: Media | None) -> Response:
    """PATCH ``{"state": "disconnected"}`` → 200 Conversation.

    The body is the contract's ``Conversation``: any of its properties is accepted (an unknown one is
    400 ``invalid.property``, another ``state`` 400 ``invalid.value``), and only ``state: disconnected``
    acts. Without ``state`` nothing changes and the answer is still 200, as with Genesys (the trap of a
    PATCH that "succeeds" but changes nothing). Ending an ended conversation is a success.
    """
    body = await parse_body(call.request, ConversationPatchRequest)
    if body.state not in (None, "disconnected"):
        raise ApiError(400, "invalid.value", message_params={"field": "state"})
    state = call.state
    if body.state == "disconnected":
        if media is not Media.COBROWSE and any(p.owes_wrapup for p in conv.participants):
            # A mandatory wrap-up queue: ending the whole conversation would skip the agent's wrap-up.
            raise ApiError(400, "conversation.error.wrapup.cannot.skip")
        if no_effect(call):
            pass  # an injected fault: 200 and nothing changes (seed 002)
        elif media is Media.COBROWSE:
            state.cobrowse.end(conv, by="client")
        elif call.config.disconnect_delay_s > 0:
            state.conversations.disconnect_later(conv, call.config.disconnect_delay_s, disconnect_type="client",
                                                 by="client")
        else:
            state.conversations.disconnect_conversation(conv, disconnect_type="client", by="client")
    return ok(views.conversation(conv))


async def patch_participant(call: Call, conv: Conversation, media: Media | None, *, body_required: bool) -> Response:
    """PATCH a participant (``{"state": "disconnected"}``, wrap-up) → 202 with no body."""
    body = await parse_body(call.request, MediaParticipantRequest, required=body_required)
    participant = conv.participant(call.param("participantId"))
    if participant is None:
        raise ApiError(404, "conversation.error.not.conversation.participant")
    live = any(c.live for c in participant.comms(media))
    if body.wrapup is not None and not body.wrapup.code:
        raise ApiError(400, "conversation.error.wrapup.code.required")
    if body.wrapup_skipped and participant.owes_wrapup:
        raise ApiError(400, "conversation.error.wrapup.cannot.skip")
    if body.state == "disconnected":
        if not live:
            raise ApiError(400, "conversation.error.participant.no.active.conversations")
        if participant.owes_wrapup and body.wrapup is None:
            raise ApiError(400, "conversation.error.wrapup.code.required")
        if body.wrapup is not None:  # the code is recorded with the leave, as Genesys does
            call.state.conversations.wrap_up(participant, body.wrapup.code)
        if not no_effect(call):
            call.state.conversations.disconnect_participant(
                conv, participant, disconnect_type="client", by="client", media=media
            )
    elif body.state == "connected" and not live:
        raise ApiError(400, "conversation.participant.update.invalid")
    elif body.wrapup is not None:
        call.state.conversations.wrap_up(participant, body.wrapup.code)
    return accepted()


def conversation_of(call: Call, *, code: str = NOT_FOUND, kinds: tuple[Kind, ...] = tuple(Kind)) -> Conversation:
    return call.state.conversations.require(call.param("conversationId"), code=code, kinds=kinds)


# --- /api/v2/conversations/{conversationId} ----------------------------------------------------------
async def get_conversation(call: Call) -> Response:
    return ok(views.conversation(conversation_of(call)))


async def delete_conversation(call: Call) -> Response:
    # Genesys refuses this for client-credentials tokens, whatever the conversation.
    raise ApiError(400, "not.a.user")


async def post_disconnect(call: Call) -> Response:
    """Full teardown (Genesys: a recovery tool with a system wrap-up) → 202."""
    conv = conversation_of(call)
    call.state.conversations.disconnect_conversation(conv, disconnect_type="system", by="client")
    return accepted()


async def patch_conversation_participant(call: Call) -> Response:
    return await patch_participant(call, conversation_of(call), None, body_required=True)


ROUTES = [
    api_route("/api/v2/conversations/{conversationId}", get_conversation, methods=["GET"], auth=Auth.CLIENT),
    api_route("/api/v2/conversations/{conversationId}", delete_conversation, methods=["DELETE"], auth=Auth.CLIENT),
    api_route(
        "/api/v2/conversations/{conversationId}/disconnect",
        post_disconnect,
        methods=["POST"],
        auth=Auth.CLIENT,
    ),
    api_route(
        "/api/v2/conversations/{conversationId}/participants/{participantId}",
        patch_conversation_participant,
        methods=["PATCH"],
        auth=Auth.CLIENT,
    ),
]
