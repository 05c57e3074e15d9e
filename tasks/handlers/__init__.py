"""Command handlers: one module per concern; importing this package registers them all."""

from tasks.handlers import chat_create, cobrowse, conversation_end, message_send

__all__ = ["chat_create", "cobrowse", "conversation_end", "message_send"]
