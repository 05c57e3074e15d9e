"""The guest websockets: the Web Messaging guest socket (``/v1``) and the Guest Chat event stream
(``/v1/token/<jwt>``).

:mod:`~emulator.ws.links` owns the live sockets (one :class:`~emulator.ws.links.Link` each: an
ordered writer, drops and frame shaping); :mod:`~emulator.ws.limits` the sliding windows of the
Web Messaging limits. Each protocol has its endpoint, its frames, and a ledger listener that turns
what happened in a conversation into frames for its sockets: :mod:`~emulator.ws.webmessaging`
(+ ``_frames``, ``_sessions``: a guest session across its sockets) and
:mod:`~emulator.ws.guestchat` (+ ``_frames``).
"""
