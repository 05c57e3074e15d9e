"""Standard Webhooks signatures (parley/webhook_signing.py), checked with the specification's own library."""

from __future__ import annotations

import base64
import time

import pytest
from pydantic import ValidationError
from standardwebhooks import Webhook, WebhookVerificationError

from parley.settings import Settings
from parley.startup import explain
from parley.webhook_signing import Signer, SigningKey, parse_secrets, verify_legacy

NEW = "whsec_" + base64.b64encode(b"n" * 32).decode()
OLD = "whsec_" + base64.b64encode(b"o" * 24).decode()
BODY = b'{"id":"0f4c","type":"command.accepted"}'


def signed(secret: str, msg_id: str = "0f4c", body: bytes = BODY) -> dict[str, str]:
    return Signer.of(secret).headers(msg_id, int(time.time()), body)


def test_a_whsec_secret_signs_what_the_standard_library_verifies() -> None:
    headers = signed(NEW)
    assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    assert headers["webhook-signature"].startswith("v1,")
    assert Webhook(NEW).verify(BODY, headers) == {"id": "0f4c", "type": "command.accepted"}


def test_the_signature_covers_body_id_and_timestamp() -> None:
    headers = signed(NEW)
    for tampered_body, tampered in [(BODY + b" ", headers), (BODY, {**headers, "webhook-id": "other"}),
                                    (BODY, {**headers, "webhook-timestamp": str(int(time.time()) - 1)})]:
        with pytest.raises(WebhookVerificationError):
            Webhook(NEW).verify(tampered_body, tampered)
    with pytest.raises(WebhookVerificationError):
        Webhook(OLD).verify(BODY, headers)


def test_during_a_rotation_both_secrets_sign_and_either_verifies() -> None:
    headers = signed(f"{NEW} {OLD}")
    assert len(headers["webhook-signature"].split(" ")) == 2
    assert Webhook(NEW).verify(BODY, headers) and Webhook(OLD).verify(BODY, headers)
    stranger = "whsec_" + base64.b64encode(b"x" * 24).decode()
    with pytest.raises(WebhookVerificationError):
        Webhook(stranger).verify(BODY, headers)


def test_a_plain_secret_keeps_the_deprecated_header_and_its_whsec_form_verifies_the_standard_one() -> None:
    headers = signed("s3cret with spaces")
    assert verify_legacy(b"s3cret with spaces", headers["X-Parley-Signature"], BODY)
    assert Webhook("whsec_" + base64.b64encode(b"s3cret with spaces").decode()).verify(BODY, headers)


def test_the_way_off_a_plain_secret_signs_with_both_and_keeps_the_deprecated_header() -> None:
    headers = signed(f"{NEW} s3cret")
    assert Webhook(NEW).verify(BODY, headers)
    assert verify_legacy(b"s3cret", headers["X-Parley-Signature"], BODY)
    assert "X-Parley-Signature" not in signed(NEW)


def test_the_deprecated_signature_refuses_stale_timestamps_and_garbage() -> None:
    header = Signer.of("k").headers("id", 1700000000, b"{}")["X-Parley-Signature"]
    assert header.startswith("t=1700000000,v1=")
    assert verify_legacy(b"k", header, b"{}", now=1700000000)
    assert not verify_legacy(b"k", header, b"{}", now=1700000000 + 3600)
    assert not verify_legacy(b"k", "garbage", b"{}")


@pytest.mark.parametrize(("secret", "why"), [
    ("whsec_" + base64.b64encode(b"short").decode(), "encodes 5"),
    ("whsec_" + base64.b64encode(b"x" * 65).decode(), "encodes 65"),
    ("whsec_not*base64", "followed by base64"),
    (f"{NEW} plain1 plain2", "at most one may be a plain"),
])
def test_a_bad_secret_is_refused_without_quoting_it(secret: str, why: str) -> None:
    with pytest.raises(ValueError, match=why) as refused:
        parse_secrets(secret)
    for part in secret.split():
        assert part.removeprefix("whsec_") not in str(refused.value)


def test_unpadded_base64_is_accepted() -> None:
    assert parse_secrets(NEW.rstrip("=")) == parse_secrets(NEW)
    assert SigningKey.parse(OLD).key == b"o" * 24


def test_keys_never_show_in_a_repr() -> None:
    signer = Signer.of(f"{NEW} s3cret")
    assert "s3cret" not in repr(signer) and "nnnn" not in repr(signer.keys)


def test_settings_refuse_a_bad_secret_and_a_url_without_one_in_one_sentence_each() -> None:
    with pytest.raises(ValidationError) as bad:
        Settings(webhook_secret="whsec_c2hvcnQ=")
    [sentence] = explain(bad.value)
    assert sentence.startswith("PARLEY_WEBHOOK_SECRET is not valid: a whsec_ secret must encode 24 to 64 bytes")
    assert "c2hvcnQ" not in sentence
    for missing in (None, "", "  "):
        with pytest.raises(ValidationError) as unset:
            Settings(webhook_url="http://127.0.0.1:9/hook", webhook_secret=missing)
        assert "PARLEY_WEBHOOK_URL needs it" in explain(unset.value)[0]
    assert Settings(webhook_secret="").webhook_secret is None
    assert Settings(webhook_url="http://127.0.0.1:9/hook", webhook_secret="legacy").webhook_secret is not None
