"""Genesys guest-side protocols as sans-I/O state machines.

- ``guest.webmessaging``: Web Messaging guest websocket (current) -> ``WebMessagingSession``.
- ``guest.guestchat``: legacy Guest Chat REST + event stream -> ``GuestChatSession``.
- ``guest.events``: the events and intents both machines emit.
- ``guest.common``: dedup, reorder, backoff, throttle and outbox helpers they share.

The guest worker owns the sockets, HTTP calls and timers; these machines own the protocol rules.
"""
