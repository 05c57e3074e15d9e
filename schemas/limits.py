"""Size limits of the command contract, in one place (producers read them in the JSON Schema)."""

COMMAND_MAX_BYTES = 64 * 1024
"""A whole command, as UTF-8 JSON text."""

KEY_MAX_CHARS = 256
"""idempotency_key, correlation_id, session_key, org."""

WEBMESSAGING_TEXT_MAX_BYTES = 4096
"""Genesys' guest websocket refuses longer inbound text (error 4011)."""

WEBMESSAGING_AGENTLESS_MAX_CHARS = 3999
"""Agentless web messaging text must be under 4000 characters (400 invalid.webmessaging.text.body)."""

SMS_TEXT_MAX_CHARS = 765
OTHER_TEXT_MAX_CHARS = 2000
GUESTCHAT_TEXT_MAX_CHARS = 4000
CUSTOM_ATTRIBUTES_MAX_BYTES = 2048
