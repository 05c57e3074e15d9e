"""Webhook signatures per the Standard Webhooks specification (https://www.standardwebhooks.com).

Every delivery carries three headers that a receiver in any language verifies with that
specification's libraries (in Python ``standardwebhooks.Webhook(secret).verify(body, headers)``):

* ``webhook-id``: the event ``id``; the same on every retry, so receivers dedupe on it;
* ``webhook-timestamp``: when this attempt was made, in unix seconds (receivers refuse an old one);
* ``webhook-signature``: ``v1,<base64 HMAC-SHA256>`` over ``"<id>.<timestamp>.<raw body>"``, one per
  secret, space-separated: during a rotation the new and the old secret both sign, so a receiver
  holding either one verifies.

``PARLEY_WEBHOOK_SECRET`` is a ``whsec_`` secret (the base64 of 24 to 64 random bytes, which are the
key), or during a rotation the new and the old one separated by a space. A plain secret from before
Standard Webhooks (text without ``whsec_``) is still accepted for one deprecation period: its UTF-8
bytes are the key (its ``whsec_`` form is ``whsec_`` + base64 of the text), and deliveries also carry
the deprecated ``X-Parley-Signature: t=<unix seconds>,v1=<hex>``, the HMAC-SHA256 with it over
``"<t>.<raw body>"``. A value holding no ``whsec_`` secret is one plain secret, spaces included, as
before; beside ``whsec_`` secrets (``whsec_<new> <old plain>``, the way off it) at most one may be plain.

No I/O and no secret in any message or repr; signing takes the attempt's time from the relay.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from dataclasses import dataclass, field

PREFIX = "whsec_"
MIN_KEY_BYTES = 24  # the specification's minimum (192 bits) and maximum (512 bits)
MAX_KEY_BYTES = 64
LEGACY_HEADER = "X-Parley-Signature"


@dataclass(frozen=True)
class SigningKey:
    """One secret's key; ``legacy`` for a plain secret, which also signs ``X-Parley-Signature``."""

    key: bytes = field(repr=False)
    legacy: bool = False

    @classmethod
    def parse(cls, secret: str) -> SigningKey:
        """A ``whsec_`` secret; ValueError says what is wrong with it without quoting it."""
        encoded = secret.removeprefix(PREFIX)
        try:
            key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("a whsec_ secret must be whsec_ followed by base64") from None
        if not MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES:
            raise ValueError(f"a whsec_ secret must encode {MIN_KEY_BYTES} to {MAX_KEY_BYTES} bytes, "
                             f"this one encodes {len(key)}")
        return cls(key)


def parse_secrets(value: str) -> tuple[SigningKey, ...]:
    """The keys of ``PARLEY_WEBHOOK_SECRET`` (see the module docstring); ValueError never quotes them."""
    if not value.strip():
        raise ValueError("it is empty")
    parts = value.split()
    if not any(part.startswith(PREFIX) for part in parts):
        return (SigningKey(value.encode(), legacy=True),)
    keys = tuple(SigningKey.parse(p) if p.startswith(PREFIX) else SigningKey(p.encode(), legacy=True) for p in parts)
    if sum(k.legacy for k in keys) > 1:
        raise ValueError("beside whsec_ secrets at most one may be a plain (legacy) secret")
    return keys


def standard_signature(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def legacy_signature(key: bytes, timestamp: int, body: bytes) -> str:
    """The deprecated ``X-Parley-Signature`` value."""
    digest = hmac.new(key, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify_legacy(key: bytes, header: str, body: bytes, *, tolerance_s: int = 300, now: float | None = None) -> bool:
    """What a receiver of the deprecated ``X-Parley-Signature`` does: recompute, refuse stale timestamps."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
    except (ValueError, KeyError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance_s:
        return False
    return hmac.compare_digest(legacy_signature(key, timestamp, body), header)


@dataclass(frozen=True)
class Signer:
    """Signs deliveries with every configured key."""

    keys: tuple[SigningKey, ...] = field(repr=False)

    @classmethod
    def of(cls, secret: str) -> Signer:
        return cls(parse_secrets(secret))

    @property
    def legacy(self) -> bool:
        """True while a plain secret is configured (deliveries also carry ``X-Parley-Signature``)."""
        return any(k.legacy for k in self.keys)

    def headers(self, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
        """The signature headers of one delivery attempt made at ``timestamp``."""
        headers = {
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": " ".join(standard_signature(k.key, msg_id, timestamp, body) for k in self.keys),
        }
        for key in self.keys:
            if key.legacy:
                headers[LEGACY_HEADER] = legacy_signature(key.key, timestamp, body)
        return headers
