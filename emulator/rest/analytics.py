"""``POST /api/v2/analytics/conversations/details/query``: which conversations exist, as analytics sees them.

This is how a client finds out what a lost request did (which conversation it created), so the
emulator answers it as Genesys would, lag included (see :mod:`emulator.state.analytics`). The request is
validated here: a malformed interval, a predicate without what its type needs, or paging out of
range is a 400 ErrorBody; parts of the query the emulator does not evaluate (aggregations,
evaluation/survey/resolution filters) are refused rather than silently ignored.
"""

from __future__ import annotations

from starlette.responses import JSONResponse, Response

from emulator.errors import ApiError
from emulator.rest.api import Auth, Call, api_route
from emulator.rest.bodies import parse_body
from emulator.rest.wire_extra import ConversationQueryBody
from emulator.state import analytics
from genesys.models import (
    ConversationDetailQueryPredicate,
    PagingSpec,
    SegmentDetailQueryPredicate,
)


def _required(field: str) -> ApiError:
    return ApiError(400, "constraint.validation", message_params={"field": field})


def _check_segment_predicate(p: SegmentDetailQueryPredicate) -> None:
    if p.type == "property":
        if not p.property_name:
            raise _required("property")
    elif p.dimension is None:
        raise _required("dimension")
    if p.operator in (None, "matches") and p.value is None:
        raise _required("value")


def _check_conversation_predicate(p: ConversationDetailQueryPredicate) -> None:
    if p.dimension is None:
        raise _required("dimension")
    if p.operator in (None, "matches") and p.value is None:
        raise _required("value")


def _check_paging(paging: PagingSpec | None) -> None:
    if paging is None:
        return
    if not 1 <= paging.page_size <= analytics.MAX_PAGE_SIZE:
        raise ApiError(
            400,
            "invalid.value",
            message_params={
                "value": str(paging.page_size),
                "field": "paging.pageSize",
                "allowed": f"1 to {analytics.MAX_PAGE_SIZE}",
            },
        )
    if paging.page_number < 1:
        raise ApiError(
            400,
            "invalid.value",
            message_params={"value": str(paging.page_number), "field": "paging.pageNumber", "allowed": "1 or more"},
        )


def _check(body: ConversationQueryBody) -> None:
    for name in ("aggregations", "evaluation_filters", "survey_filters", "resolution_filters"):
        if getattr(body, name):
            field = ConversationQueryBody.model_fields[name].alias or name
            raise ApiError(400, "bad.request", message=f"The emulator does not evaluate {field}.")
    for segment_filter in body.segment_filters or []:
        clauses = segment_filter.clauses or []
        for sp in [*(segment_filter.predicates or []), *(p for c in clauses for p in c.predicates)]:
            _check_segment_predicate(sp)
    for conversation_filter in body.conversation_filters or []:
        clauses = conversation_filter.clauses or []
        for cp in [*(conversation_filter.predicates or []), *(p for c in clauses for p in c.predicates)]:
            _check_conversation_predicate(cp)
    _check_paging(body.paging)


async def post_conversation_details_query(call: Call) -> Response:
    body = await parse_body(call.request, ConversationQueryBody)
    _check(body)
    interval = analytics.parse_interval(body.interval, filtered=bool(body.segment_filters or body.conversation_filters))
    result = analytics.run_query(
        call.state.conversations.all(),
        body,
        interval,
        now=call.clock.now(),
        lag_s=call.config.analytics_lag_s,
    )
    wire = result.to_wire()
    if not result.conversations:
        del wire["conversations"]  # Genesys answers {"totalHits": 0}, without an empty list
    return JSONResponse(wire)


ROUTES = [
    api_route(
        "/api/v2/analytics/conversations/details/query",
        post_conversation_details_query,
        methods=["POST"],
        auth=Auth.CLIENT,
    ),
]
