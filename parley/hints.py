"""Plain-language hints for Genesys Cloud error codes: what the code means and what to do.

The forum threads behind Parley waited days for these answers; ``command.failed`` events carry them
next to Genesys' ``status``, ``code``, ``message`` and ``contextId``. Sources: the ``x-inin-error-codes``
of every operation in ``contracts/genesys-platform-slice.swagger.json``, the codes named in
``reference/genesys-rest.md`` and the Web Messaging guest error codes in
``reference/genesys-websockets.md``.

Hints are keyed by ``code`` alone: Genesys codes are globally unique strings, and the two that appear
under two statuses (``credentials.expired``, ``not.found``) mean the same thing under both, so their
hints cover both. A code Parley does not know falls back to advice for its status class, so
:func:`hint_for` always returns something useful. Hints never quote the error's ``message``, which can
echo customer input.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

_RETRIED = (
    "Parley retries it with exponential backoff and jitter, and a command fails with it only when every "
    "attempt (PARLEY_RETRY_MAX_ATTEMPTS) got it"
)
_LOOKED_UP = (
    "Genesys may have applied the change, so Parley checks the conversation before each retry instead of "
    "sending it again blindly"
)
_CONTEXT = "quote the contextId to Genesys support"
_CLIENT_CREDS = "PARLEY_GENESYS_CLIENT_ID / PARLEY_GENESYS_CLIENT_SECRET"
_UNKNOWN_OUTCOME = (
    f"{_LOOKED_UP}. A command that still failed got this at every attempt (PARLEY_RETRY_MAX_ATTEMPTS), and the "
    f"last one may have taken effect: look in Genesys before submitting it again, and {_CONTEXT}."
)
_OWN_CLIENT = "the org's OAuth client (PARLEY_GENESYS_CLIENT_ID, or its entry in PARLEY_ORGS)"

_HINTS: dict[str, str] = {
    # --- 400: the request as sent is wrong; the same request fails the same way -----------------------
    "bad.request": (
        "Genesys could not accept the request as sent (malformed body, wrong type, or a field this endpoint "
        "does not have). Not retried; messageParams usually names the field. If the command passed "
        "Parley's validation, report it with the contextId."
    ),
    "invalid.value": (
        "A field holds a value Genesys does not accept (unknown enum value, an id of the wrong kind or "
        "format). messageParams names the field; fix the command and submit it again."
    ),
    "invalid.property": (
        "The body has a property this endpoint does not know. Parley sends only the fields of Genesys' "
        "published contract (none of the forum's previousConversationId, contactId, action:close), so a proxy "
        f"rewrote the request or Genesys changed this endpoint: {_CONTEXT}."
    ),
    "constraint.validation": (
        "A field breaks a constraint (required, length, pattern or range). messageParams names it; fix "
        "the command and submit it again."
    ),
    "invalid.date": "A date is not ISO-8601 with a time zone (e.g. 2026-05-14T10:00:00.000Z); fix the value.",
    "invalid.query.param.value": (
        "A query parameter is out of range (e.g. maxResults above 100, or an unknown sortOrder)."
    ),
    "max.length.exceeded": (
        "A text is too long for the channel: agentless messages allow 765 characters for SMS and 2000 "
        "otherwise. Shorten `text` or split it into several message.send commands."
    ),
    "client.failed.request": (
        "Genesys refused the request as a client error without a more specific code. Not retried; read "
        f"message and messageParams, and {_CONTEXT} if they do not explain it."
    ),
    "response.entity.too.large": (
        "The answer Genesys would return is too large; ask for fewer items (smaller pageSize or "
        "maxResults)."
    ),
    "not.a.user": (
        "This endpoint needs a user token and Parley uses client credentials: DELETE /conversations/{id} "
        "always answers this. Parley ends conversations with PATCH state=disconnected instead; there "
        "is nothing to change on your side."
    ),
    "not.a.client": (
        "This endpoint (agentless send) needs a client-credentials token, but a user token was used. "
        f"Configure {_CLIENT_CREDS} for an OAuth client whose grant type is Client Credentials."
    ),
    "parameters.missing": (
        "A required parameter is missing (web deployment token calls need deploymentId and the code or "
        "refresh token)."
    ),
    # --- 400: message sends ---------------------------------------------------------------------------
    "active.conversation": (
        "A conversation with this customer is already alerting or connected, and Genesys refused the message "
        "although Parley sends every message with useExistingActiveConversation (which puts it into that "
        "conversation). Check that the live conversation is on the deployment or number in `from_address`, "
        f"and {_CONTEXT}."
    ),
    "existing.conversation": (
        "The customer's last conversation is disconnected but still inside its conversation window, so "
        "Genesys will not open a new one. Queue outbound needs useExistingConversation=true; otherwise "
        "send into that conversation or wait until the window closes."
    ),
    "invalid.whatsapp.address": (
        "WhatsApp `to_address` must be digits only: country code and number, no '+', spaces or dashes."
    ),
    "response.missing.apple.invitation": (
        "Apple Messages for Business only lets a business message a customer who contacted it first; "
        "Genesys has no such invitation for this recipient."
    ),
    "invalid.webmessaging.text.body": "Web messaging `text` must be non-empty and under 4000 characters.",
    "invalid.phone.number": (
        "A phone number is not valid E.164: '+', country code, number, no spaces (e.g. +14155550100)."
    ),
    "invalid.phone.numbers": (
        "One of the phone numbers is not valid E.164: '+', country code, number, no spaces."
    ),
    "queue.address.required": (
        "The queue has no outbound address for this messenger type (SMS number or messaging integration). "
        "Set one on the queue in Genesys, or send agentless from an explicit `from_address`."
    ),
    "queue.membership.required": (
        "Sending from the user's own address (useUserFromAddress) needs that user to be a member of the "
        "queue; add the user to the queue or send without it."
    ),
    "conversation.message.limit.exceeded": (
        "The conversation reached the maximum number of messages Genesys allows in one conversation; "
        "end it and start a new one."
    ),
    "media.too.large": "An attachment is larger than the channel allows; send a smaller file or a link.",
    # --- 400: third-party chats (chat.create) ---------------------------------------------------------
    "chat.error.notnull.createconversationrequest.queueid": "chat.create needs `queue_id` (the queue's id).",
    "chat.error.notnull.createconversationrequest.provider": (
        "chat.create needs `provider`: the name of your own chat system, shown to agents."
    ),
    "chat.error.queue.not.found": (
        "`queue_id` names no queue Parley's OAuth client can see: check the id, the region and the "
        "client's divisions."
    ),
    # --- 400: chat state (third-party chat and Guest Chat) --------------------------------------------
    "chat.error.conversation.state": (
        "The chat is not active. Guest Chat: a chat is only routed once its event websocket is attached, "
        "so a message sent right after create is refused; Parley's guest worker attaches first. A "
        "third-party chat (chat.create) is routing only (roomId NONE): its text travels in your own chat "
        "system, so Parley refuses to post into it."
    ),
    "chat.error.member.state": (
        "The chat member cannot act in its state (not yet connected, or already left). A guest who left "
        "cannot send again; start a new guest session."
    ),
    "chat.error.bad.request": (
        "The chat service refused the request (bad body or bodyType). For a third-party chat "
        "(chat.create) there is no chat room to post into at all: messages travel in your own system."
    ),
    "chat.error.notnull.createconversationmessagerequest.body": (
        "A chat message needs a non-empty body of at most 4000 characters."
    ),
    # --- 400: disconnect, wrap-up, participant updates ------------------------------------------------
    "conversation.participant.update.invalid": (
        "The participant update is not allowed in its current state (e.g. disconnecting a participant that "
        "is already disconnected, or a state other than connected/disconnected). For conversation.end, "
        "read the conversation: if every participant is disconnected it has already ended."
    ),
    "conversation.error.participant.no.active.conversations": (
        "The participant has no active communication left: it is already disconnected. For "
        "conversation.end this means that leg is done."
    ),
    "conversation.error.wrapup.code.required": (
        "The queue requires a wrap-up code before the agent leg can end: send conversation.end again (a new "
        "idempotency key) with `wrapup` {`code`: one of the queue's wrap-up code ids, optional `notes`}."
    ),
    "conversation.error.wrapup.cannot.skip": (
        "The queue requires wrap-up and does not allow skipping it (ending the whole conversation would skip "
        "the agent's): send conversation.end again (a new idempotency key) with `wrapup` {`code`: one of the "
        "queue's wrap-up code ids}."
    ),
    "conversation.error.cannot.confine.party": (
        "Only a voice participant in a multi-party call can be confined; drop `confined` from the update."
    ),
    "conversation.error.cannot.disconnect.call": (
        "Genesys will not disconnect this call leg in its current state; read the conversation and end "
        "it once the leg is connected, or use POST /conversations/{id}/disconnect as a last resort."
    ),
    "conversation.error.hold.alerting": "A participant that is still alerting cannot be put on hold.",
    "conversation.error.participant.attribute.null": (
        "A participant attribute was null; attribute values must be strings (send \"\" to clear one)."
    ),
    "conversation.error.cannot.park.conversation.with.internal.message": (
        "A messaging conversation that has an internal-message leg cannot be parked."
    ),
    "communication.state.required": (
        "PATCH .../communications/{id} needs `state: disconnected` (its only allowed value); it does not "
        "update wrap-up."
    ),
    # --- 400: Guest Chat create (guest.start with protocol guestchat) ---------------------------------
    "chat.error.invalid.queue": (
        "routingTarget.targetAddress must be the queue's NAME, not its id: set `queue_name` on guest.start "
        "to the name exactly as it appears in Genesys."
    ),
    "chat.error.createconversationrequest.routingtarget": (
        "routingTarget must be {targetType: QUEUE, targetAddress: <queue name>}; check `queue_name`."
    ),
    "chat.error.notnull.createconversationrequest.routingtarget": (
        "Guest Chat create needs a routing target: set `queue_name` on guest.start."
    ),
    "chat.error.notnull.createconversationrequest.memberinfo.displayname": (
        "Guest Chat create needs the guest's display name: set `display_name` on guest.start."
    ),
    "chat.error.pattern.createconversationrequest.deploymentid": (
        "`deployment_id` is not a deployment id (a GUID); copy it from the widget deployment in Genesys."
    ),
    "chat.deployment.disabled": (
        "The Guest Chat (widget) deployment is disabled or deleted; enable it in Genesys or use another "
        "`deployment_id`."
    ),
    "chat.deployment.require.auth": (
        "The deployment only accepts authenticated guests (a memberAuthToken from POST /api/v2/signeddata). "
        "Parley's guest chats are unauthenticated: turn off 'require authentication' or use another "
        "deployment."
    ),
    "chat.deployment.bad.auth": (
        "The guest's memberAuthToken was rejected (expired, or signed for another deployment)."
    ),
    "chat.error.invalid.flow": (
        "The deployment's inbound chat flow is missing or unpublished; publish the flow the deployment "
        "routes through."
    ),
    # --- 401: the token -------------------------------------------------------------------------------
    "authentication.required": (
        "No valid bearer token reached Genesys. Parley refreshes its token on a 401 and sends once more, so "
        f"a fresh token was refused too: check {_OWN_CLIENT} and that PARLEY_GENESYS_REGION is the org's "
        "region (a token is only valid in the region that issued it)."
    ),
    "bad.credentials": (
        "Genesys rejected the token or the client id and secret ('Invalid login credentials'). Parley "
        f"refreshes its token on a 401 and sends once more, so a fresh one was refused too: check {_OWN_CLIENT} "
        "and PARLEY_GENESYS_REGION."
    ),
    "credentials.expired": (
        "The credential expired. Parley refreshes its OAuth token on a 401 and sends once more, so on a command "
        "it means a fresh token was refused too: check the OAuth client in Genesys. A Guest Chat JWT cannot be "
        "refreshed: the guest session must be started again. On token revoke it means the JWT had already "
        "expired: nothing is left to revoke."
    ),
    "ip.not.authorized": (
        "The org's IP allowlist does not include the address this worker calls from; a new token does not "
        "help. Add the worker's egress IP to the org's IP address authorization."
    ),
    # --- 403: permissions -----------------------------------------------------------------------------
    "missing.permissions": (
        "The OAuth client's roles lack permissions this call needs (all of them are required; "
        "messageParams lists them; agentless send needs conversation:message:create). Grant them to a role "
        "of the OAuth client, in the right divisions."
    ),
    "missing.any.permissions": (
        "The OAuth client has none of the permissions this call accepts. Cobrowse needs "
        "conversation:cobrowse:add (web messaging) or conversation:cobrowseVoice:add; disconnect needs "
        "conversation:communication:disconnect. Grant one to a role of the OAuth client."
    ),
    "not.authorized": (
        "The OAuth client may not act on this object (division, or an object it does not own). Check the "
        "client's roles and divisions."
    ),
    "missing.division.permission": (
        "The permission is granted, but not in the division of the queue or conversation: add that "
        "division to the OAuth client's role assignment."
    ),
    "missing.any.division.permissions": (
        "None of the accepted permissions is granted in the object's division: add the division to the "
        "OAuth client's role assignment."
    ),
    "authz.policy.denied": (
        "An authorization policy of the org denied the call although the role has the permission; review "
        "the org's access policies for this OAuth client."
    ),
    "app.not.authorized.for.scope": (
        "The OAuth client's scopes do not cover this call: writes need `conversations`, reads "
        "`conversations` or `conversations:readonly` (agentless send at least `messaging`). Add the scope "
        "to the OAuth client."
    ),
    "conversation.error.forbidden.not.active.participant": (
        "Only an active participant may change this chat; the participant is disconnected or not the "
        "caller's."
    ),
    "origin.not.allowed": (
        "The Guest Chat deployment only accepts the origins in its allowed domains: add Parley's origin to "
        "the deployment, or set `origin` on guest.start to an allowed one."
    ),
    # --- 404 ------------------------------------------------------------------------------------------
    "not.found": (
        "Genesys has no such object in this org and region: a wrong id, an id of another org or region (check "
        "the command's `org` and the org's region), or an object that is gone. cobrowse.start gets it for a "
        "conversation Genesys does not know or no longer has live; when Parley knows the conversation ended, "
        "the hint says that instead."
    ),
    "conversation.error.conversation.not.found": (
        "The conversation does not exist in this org and region: a wrong `conversation_id`, an id of another "
        "org or region (check the command's `org`), or a conversation Genesys no longer keeps. Parley forgets "
        "what it cached about it."
    ),
    "conversation.error.not.conversation.participant": (
        "The participant id is not part of this conversation; read the participants again from GET "
        "/conversations/{id} (a participant or communication id of another conversation will not work)."
    ),
    "chat.error.not.found": (
        "On a chat made by chat.create this is expected: a third-party chat is routing only (roomId NONE) "
        "and has no Genesys chat room to post into, so carry its messages in your own chat system; for a "
        "real Genesys chat use guest.start. For Guest Chat it means an unknown conversation or message id."
    ),
    "session.expired": (
        "The web messaging guest session expired (by default 72 h after its last message); start a new "
        "guest session."
    ),
    "session.not.found": (
        "No web messaging guest session exists for this token (cleared, or never configured); start a new "
        "guest session."
    ),
    # --- 408, 409, 413, 415, 429 ----------------------------------------------------------------------
    "client.timeout": (
        f"Genesys gave up waiting for the full request (a slow link). It was not processed; {_RETRIED}. Check "
        "the network path from the workers to Genesys."
    ),
    "request.conflict": (
        "Another change to the same conversation or cobrowse was in progress. Transient: "
        f"{_RETRIED}. Parley runs its own commands on one conversation one at a time, so conflicts that "
        "persist mean another system (or an agent) is changing the same conversation."
    ),
    "organization.outbound.usage.limit.exceeded": (
        "The org has used up its outbound messaging allowance. A retry is refused the same way, so Parley "
        "fails the command: ask Genesys to raise the limit, or wait until the allowance resets."
    ),
    "request.entity.too.large": "The request body is too large; shorten the text or attributes.",
    "payload.too.large": (
        "The request body is over Genesys' limit: on the analytics or bulk message reads Parley uses to check "
        "what a lost request did, the query or the list of message ids was too large. Parley pages these reads; "
        "report this with the command's id."
    ),
    "unsupported.media.type": (
        "Genesys did not accept the Content-Type. Parley sends JSON, so a proxy between Parley and Genesys "
        "probably rewrote the request."
    ),
    "too.many.requests.retry.after": (
        "Rate limited: 300 requests per minute per client-credentials token (also 300/min per app and "
        "user; some resources have their own limits). Parley waits Retry-After (up to PARLEY_RETRY_AFTER_MAX_S) "
        "and retries, and a command fails with it only when every attempt was limited. Parley paces its own "
        "requests (PARLEY_GENESYS_RATE_LIMIT_PER_MINUTE), so another application on the same OAuth client is "
        "the likely cause: give Parley its own client, lower the setting, or ask Genesys to raise the limit."
    ),
    "too.many.requests": (
        "Rate limited (legacy code): Parley waits Retry-After, or backs off when it is missing, and retries; a "
        "command fails with it only when every attempt was limited. The limit is 300 requests per minute per "
        "client-credentials token; another application on the same OAuth client is the likely cause."
    ),
    # --- 5xx: Genesys' side; the outcome may be unknown -----------------------------------------------
    "internal.server.error": f"Genesys failed internally. {_UNKNOWN_OUTCOME}",
    "general.internal.server.error": (
        "Genesys failed internally answering a read (analytics, or a conversation or message read), which "
        f"changes nothing. {_RETRIED}; if it persists, {_CONTEXT}."
    ),
    "conversation.participant.update.failed": (
        f"Genesys could not finish the participant update (disconnect or wrap-up). {_UNKNOWN_OUTCOME}"
    ),
    "chat.error": f"The chat service failed internally. {_UNKNOWN_OUTCOME}",
    # Genesys' own misspelling, as published for POST /webchat/guest/conversations.
    "caht.error": f"The chat service failed internally. {_UNKNOWN_OUTCOME}",
    "chat.error.internal": f"The chat service failed internally. {_UNKNOWN_OUTCOME}",
    "service.unavailable": (
        f"Genesys is temporarily unavailable (maintenance or overload). {_UNKNOWN_OUTCOME}"
    ),
    "chat.error.service.unavailable": f"The chat service is temporarily unavailable. {_RETRIED}.",
    "request.timeout": f"A Genesys gateway timed out waiting for its backend. {_UNKNOWN_OUTCOME}",
    "authentication.request.timeout": (
        f"Checking the token timed out inside Genesys. Transient: {_RETRIED}; if it persists, {_CONTEXT}."
    ),
    "chat.error.service.timeout": f"The chat service timed out. {_UNKNOWN_OUTCOME}",
    "division.authorization.timeout": (
        f"Checking division permissions timed out inside Genesys. Transient: {_RETRIED}; if it persists, "
        f"{_CONTEXT}."
    ),
    # --- OAuth token endpoint (RFC 6749 section 5.2 shape {error, description}) -----------------------
    "invalid_client": (
        f"The login server does not know this client id and secret (400 invalid_client): check {_CLIENT_CREDS} "
        "and PARLEY_GENESYS_REGION (OAuth clients exist in one region only). Not retried: every command "
        "fails the same way until the settings are fixed and the workers restarted."
    ),
    "unauthorized_client": (
        "This OAuth client may not use the client-credentials grant: create one whose grant type is "
        "Client Credentials."
    ),
    "unsupported_grant_type": (
        "The login server refused grant_type=client_credentials for this client; use an OAuth client of "
        "grant type Client Credentials."
    ),
}

# Guest Chat create names each missing journeyContext part in its code; one hint covers them all.
_JOURNEY_CONTEXT_PREFIX = "chat.error.notnull.createconversationrequest.journeycontext."

_BY_STATUS: dict[int, str] = {
    400: "Genesys refused the request as malformed or not allowed; it is not retried. Read message and "
    "messageParams for the field.",
    401: "Genesys did not accept Parley's token. Parley refreshes it on a 401 and sends once more, so a fresh "
    f"token was refused too: check {_OWN_CLIENT} and PARLEY_GENESYS_REGION.",
    403: "The OAuth client lacks a permission, scope or division for this call; messageParams usually names "
    "it. Grant it to a role of the OAuth client.",
    404: "The object does not exist in this org and region (a wrong id, one of another org or region, or "
    "already gone).",
    408: f"Genesys timed out waiting for the request; it was not processed. {_RETRIED}.",
    409: f"A conflicting change was in progress. {_RETRIED}.",
    413: "The request is too large; shorten the text or attributes.",
    415: "Genesys did not accept the Content-Type; check for a proxy rewriting requests.",
    429: "Rate limited at every attempt. Parley waits Retry-After (up to PARLEY_RETRY_AFTER_MAX_S) or backs off, "
    "and retries; another application on the same OAuth client is the likely cause.",
}
_CLIENT_ERROR = (
    "Genesys refused the request with a code Parley has no specific advice for; it is not retried. Read "
    f"message and messageParams, and {_CONTEXT} if they do not explain it."
)
_SERVER_ERROR = f"Genesys failed on its side. {_UNKNOWN_OUTCOME}"
_OTHER = f"Genesys answered with an unexpected status; {_CONTEXT}."

_WEBMESSAGING: dict[int, str] = {
    400: "The guest session refused the request as malformed.",
    401: "The authenticated guest's JWT was refused: refresh it and configure the session again.",
    403: (
        "The deployment refused this (origin not in its allowed domains, a feature turned off, or "
        "Conversation Clear not enabled for guest.end). Check the Messenger deployment's settings."
    ),
    404: "The guest session or resource was not found.",
    408: "The guest service timed out; the request can be sent again.",
    409: (
        "The session is read-only: the agent or flow ended the conversation (Conversation Disconnect with "
        "ReadOnly). Nothing more can be sent on it; start a new guest session (closeSession, then "
        "configureSession with startNew)."
    ),
    429: (
        "Message rate too high for this session (5 messages per second): wait retryAfter and send again."
    ),
    4000: "The feature is not available on this deployment.",
    4001: "The attachment's file type is not allowed by the deployment.",
    4002: "The attachment is larger than the deployment allows (10 MB by default).",
    4003: "The attachment's content was rejected.",
    4004: "The attachment's file name is not valid (it needs an extension).",
    4005: "The attachment's file name is too long (1024 characters at most).",
    4006: (
        "The guest session expired (by default 72 h after its last message): the session is over; start "
        "a new guest session with a new token."
    ),
    4007: "No guest session exists for this token: it was cleared or never configured; start a new one.",
    4008: "The attachment's signed URL expired; ask for a fresh one (getAttachment).",
    4009: "The attachment was not found.",
    4010: "The attachment was never uploaded; upload it before sending the message.",
    4011: (
        "The guest message is too long: inbound text is limited to 4096 bytes (not characters). Shorten "
        "`text` or split it; only this message failed, the session goes on."
    ),
    4013: "Custom attributes exceed 2048 bytes; send fewer or shorter `custom_attributes`.",
    4017: "An authenticated session cannot be downgraded to an unauthenticated one.",
    4020: "A required parameter of the guest request is missing.",
    4029: (
        "Message rate too high for this session (5 messages per second): wait retryAfter and send again; "
        "only this message failed."
    ),
    4102: "The attachment is empty (zero bytes).",
    5000: "The guest service failed unexpectedly; try again, and start a new session if it persists.",
}

HINTS: Mapping[str, str] = MappingProxyType(_HINTS)
WEBMESSAGING_HINTS: Mapping[int, str] = MappingProxyType(_WEBMESSAGING)


def specific_hint(code: str) -> str | None:
    """The hint written for ``code``, or None when only the status fallback applies."""
    if code in _HINTS:
        return _HINTS[code]
    if code.startswith(_JOURNEY_CONTEXT_PREFIX):
        part = code.removeprefix(_JOURNEY_CONTEXT_PREFIX)
        return (
            f"Guest Chat create got a journeyContext without its required `{part}`: a journey context, "
            "when sent, needs customer {id, idType}, and customerSession and triggeringAction complete "
            "if present. Send it complete or leave it out."
        )
    return None


def status_hint(status: int) -> str:
    """Advice for a status when the code is unknown or missing."""
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    if 400 <= status < 500:
        return _CLIENT_ERROR
    if 500 <= status < 600:
        return _SERVER_ERROR
    return _OTHER


CONVERSATION_ENDED = (
    "The conversation ended before this command ran (an earlier conversation.end, or the customer or agent "
    "left), so Genesys no longer has it to act on and answers 404. Nothing is misconfigured. A cobrowse needs "
    "a live conversation; to reach the customer again, send message.send (it opens a new conversation). "
    "Commands about one conversation run in the order they were submitted: check the producer's order."
)
"""A 404 about a conversation Parley ended or read ended (see the README's Order)."""


def quota_hint(retry_after_s: float, max_wait_s: float) -> str:
    """A 429 whose Retry-After is longer than Parley waits: a used-up quota, not the per-minute limit."""
    return (
        f"Genesys asked Parley to wait {retry_after_s:g} s before trying again, longer than "
        f"PARLEY_RETRY_AFTER_MAX_S ({max_wait_s:g} s): a daily or monthly quota of the org or OAuth client is "
        "used up (the per-minute rate limit never asks for that long). Parley does not hold a command for "
        "that long, so it failed and did nothing. Submit it again once the quota resets (`parley dead replay`), "
        "or ask Genesys to raise the quota."
    )


def hint_for(status: int, code: str) -> str:
    """What a Genesys REST error means and what to do; never empty."""
    return specific_hint(code) or status_hint(status)


def webmessaging_hint_for(code: int) -> str:
    """The same for an error ``code`` of a Web Messaging guest websocket frame (4006, 4029, 409...)."""
    return _WEBMESSAGING.get(code) or (
        "The Web Messaging guest service answered with an error code Parley has no specific advice for; "
        "see the frame's body text."
    )
