"""Cobrowse inside a web messaging conversation: one live session per conversation.

Starting one adds a cobrowse leg to the live customer (the sharer) and agent (a viewer); a second
start while one is live is 409 ``request.conflict``. It ends when its legs do (ended here, or with
their participants: the store's disconnect cascade).
"""

from __future__ import annotations

import secrets
from datetime import timedelta

from emulator.errors import ApiError
from emulator.state.model import CobrowseSession, Communication, Conversation, Kind, Media, new_id
from emulator.state.store import Conversations


class Cobrowse:
    def __init__(self, conversations: Conversations) -> None:
        self._store = conversations

    def start(self, conv: Conversation, *, websocket_base: str, offer_s: int) -> CobrowseSession:
        """One live cobrowse per conversation: a second start while one is live is a 409 conflict."""
        store = self._store
        with store.lock:
            if not conv.live:
                raise ApiError(404, "not.found")
            if conv.kind != Kind.MESSAGING or conv.messenger_type != "webmessaging":
                raise ApiError(
                    400,
                    "bad.request",
                    message="Cobrowse can only be started in a web messaging or voice conversation.",
                )
            if conv.live_cobrowse is not None:
                raise ApiError(409, "request.conflict")
            now = store.clock.now()
            session_id = new_id()
            session = CobrowseSession(
                id=session_id,
                join_code=f"{secrets.randbelow(10**9):09d}",
                websocket_url=f"{websocket_base}/cobrowse/v1/sessions/{session_id}",
                started=now,
                offer_ends=now + timedelta(seconds=offer_s),
            )
            conv.cobrowse.append(session)
            for participant in conv.participants:
                if participant.live and participant.purpose in ("customer", "agent"):
                    role = "sharer" if participant.purpose == "customer" else "viewer"
                    participant.communications.append(
                        Communication(
                            media=Media.COBROWSE,
                            state="connected",
                            connected_time=now,
                            provider="Genesys Cloud Cobrowse",
                            cobrowse_session_id=session.id,
                            cobrowse_role=role,
                        )
                    )
            store.record("cobrowse.started", conv, cobrowse_session_id=session.id, by="client")
            return session

    def end(self, conv: Conversation, *, by: str) -> None:
        store = self._store
        with store.lock:
            for participant in conv.participants:
                store.end_legs(conv, participant, Media.COBROWSE, "client", by)
            store.end_if_idle(conv, by)
