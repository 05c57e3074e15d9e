"""Genesys' error answers: the ErrorBody every Platform API error carries, and its catalog of codes.

Handlers raise :class:`ApiError`; the app turns it into an ErrorBody whose ``contextId`` is the
request's ``ININ-Correlation-Id``. Default messages are Genesys' own texts for each code (from the
contract's ``x-inin-error-codes`` and captured responses), so a client matching on text sees what it
would see from Genesys - but clients should match on ``code``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from starlette.requests import Request
from starlette.responses import JSONResponse

from genesys.models import ErrorBody, ErrorDetail

CORRELATION_HEADER = "ININ-Correlation-Id"

RATE_LIMIT_MESSAGE = "Rate limit exceeded the maximum. Retry the request in [{seconds}] seconds"
MESSAGES: Mapping[str, str] = {
    "bad.request": "The request could not be understood by the server due to malformed syntax.",
    "invalid.property": "Value [{property}] is not a valid property for object [{object}]",
    "invalid.value": "Value [{value}] is not valid for field type [{field}]. Allowable values are: {allowed}",
    "invalid.query.param.value": "Value [{value}] is not valid for parameter [{parameter}]. "
    "Allowable values are: {allowed}",
    "constraint.validation": "{field} may not be null",
    "max.length.exceeded": "One or more attributes is longer than the maximum length allowed.",
    "not.a.user": "This request requires a user context. Client credentials cannot be used for requests "
    "to this resource.",
    "authentication.required": "No authentication bearer token specified in authorization header.",
    "bad.credentials": "Invalid login credentials.",
    "credentials.expired": "The supplied credentials are expired and cannot be used.",
    "not.authorized": "You are not authorized to perform the requested action.",
    "not.found": "The requested resource was not found.",
    "method.not.allowed": "HTTP 405 Method Not Allowed",
    "client.timeout": "The client did not produce a request within the server timeout limit. This can be "
    "caused by a slow network connection and/or large payloads.",
    "request.conflict": "The request conflicts with the current state of the target resource.",
    "unsupported.media.type": "Unsupported Media Type - Unsupported or incorrect media type, such as an "
    "incorrect Content-Type value in the header.",
    "too.many.requests.retry.after": RATE_LIMIT_MESSAGE,
    "too.many.requests": RATE_LIMIT_MESSAGE,
    "internal.server.error": "The server encountered an unexpected condition which prevented it from "
    "fulfilling the request.",
    "service.unavailable": "Service Unavailable - The server is currently unavailable (because it is "
    "overloaded or down for maintenance).",
    "request.timeout": "The request timed out.",
    # conversations
    "conversation.error.conversation.not.found": "The conversation does not exist.",
    "conversation.error.not.conversation.participant": "User is not a participant in the conversation.",
    "conversation.participant.update.invalid": "Failed to update all properties on conversation participant.",
    "conversation.error.participant.no.active.conversations": "The participant has no active conversation.",
    "active.conversation": "An alerting or connected conversation is already in progress.",
    "invalid.webmessaging.text.body": "The request needs a textBody not empty and under 4000 characters.",
    "invalid.whatsapp.address": "WhatsApp address must only contain numeric characters of destination phone number.",
    "invalid.phone.number": "The SMS phone number address is not a valid E.164 format.",
    "queue.address.required": "The queue does not have an outbound messaging address configured.",
    # chats (third-party and guest)
    "chat.error.queue.not.found": "The queue does not exist.",
    "chat.error.not.found": "Chat conversation message is not found.",
    "chat.error.invalid.queue": "The specified queue is not valid.",
    "chat.error.bad.request": "Error occurred due to invalid request.",
    "chat.error.conversation.state": "Conversation State",
    "chat.error.member.state": "The conversation member is in a state which does not permit this action.",
    "chat.error.notnull.createconversationrequest.queueid": "The queueId property may not be null.",
    "chat.error.notnull.createconversationrequest.provider": "The provider property may not be null.",
    "chat.error.notnull.createconversationrequest.routingtarget": "The routingtarget property may not be null.",
    "chat.error.notnull.createconversationrequest.memberinfo.displayname": "The displayname property may not be null.",
    "chat.error.notnull.createconversationrequest.organizationid": "The organizationid property may not be null.",
    "chat.error.pattern.createconversationrequest.deploymentid": "The deploymentid property may not be null.",
    "chat.error.notnull.createconversationmessagerequest.body": "The request body may not be null.",
    # web messaging
    "session.not.found": "Session was not found.",
    "session.expired": "The session has expired.",
}

# Used when a fault names only a status.
DEFAULT_CODE_FOR_STATUS: Mapping[int, str] = {
    400: "bad.request",
    401: "authentication.required",
    403: "not.authorized",
    404: "not.found",
    405: "method.not.allowed",
    408: "client.timeout",
    409: "request.conflict",
    415: "unsupported.media.type",
    429: "too.many.requests.retry.after",
    500: "internal.server.error",
    503: "service.unavailable",
    504: "request.timeout",
}


def default_message(code: str, params: Mapping[str, str] | None = None) -> str:
    template = MESSAGES.get(code, code)
    try:
        return template.format(**(params or {}))
    except (KeyError, IndexError):
        return template


@dataclass
class ApiError(Exception):
    """A Genesys error answer. ``message`` defaults to Genesys' text for ``code``."""

    status: int
    code: str
    message: str | None = None
    message_params: dict[str, str] | None = None
    message_with_params: str | None = None
    details: list[ErrorDetail] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.message is None:
            self.message = default_message(self.code, self.message_params)
        Exception.__init__(self, f"{self.status} {self.code}")

    def body(self, context_id: str) -> ErrorBody:
        return ErrorBody(
            message=self.message,
            code=self.code,
            status=self.status,
            message_with_params=self.message_with_params,
            message_params=self.message_params,
            context_id=context_id,
            details=self.details,
            errors=[],
        )


def rate_limited(retry_after_s: int) -> ApiError:
    """Genesys' normalized 429 (since 2021-11): code, text with the delay, and ``Retry-After``."""
    code = "too.many.requests.retry.after"
    return ApiError(
        429,
        code,
        message=default_message(code, {"seconds": str(retry_after_s)}),
        headers={"Retry-After": str(retry_after_s)},
    )


def correlation_id(request: Request) -> str:
    return str(request.scope.get("state", {}).get("correlation_id", ""))


def error_response(request: Request, error: ApiError) -> JSONResponse:
    body = error.body(correlation_id(request))
    return JSONResponse(body.to_wire(), status_code=error.status, headers=error.headers)
