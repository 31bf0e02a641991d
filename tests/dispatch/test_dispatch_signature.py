"""The webhook signature: agents.client.sign and verify_signature, which
receivers use, and the executor's requests, which they check."""

from __future__ import annotations

import hashlib
import hmac
import time

import pytest

from agents.client import sign, verify_signature

SECRET = "whsec-of-one-action-type"
BODY = b'{"id":"3f1c","action_type":"payments.refund","payload":{"amount":45}}'


def test_it_signs_the_timestamp_and_the_body_with_hmac_sha256():
    header = sign(SECRET, BODY, timestamp=1_800_000_000)

    expected = hmac.new(SECRET.encode(), b"1800000000." + BODY, hashlib.sha256).hexdigest()
    assert header == f"t=1800000000,v1={expected}"


def test_it_accepts_a_fresh_signature_of_the_same_bytes():
    assert verify_signature(SECRET, BODY, sign(SECRET, BODY))


@pytest.mark.parametrize(
    ("what", "body", "header"),
    [
        ("a tampered body", BODY.replace(b"45", b"4500"), sign(SECRET, BODY)),
        ("a tampered signature", BODY, sign(SECRET, BODY)[:-1] + ("0" if sign(SECRET, BODY)[-1] != "0" else "1")),
        ("another secret", BODY, sign("someone-elses-secret", BODY)),
        ("a timestamp moved after signing", BODY, sign(SECRET, BODY).replace("t=", "t=1")),
        ("no signature", BODY, None),
        ("an empty header", BODY, ""),
        ("no timestamp", BODY, "v1=" + "0" * 64),
        ("a timestamp that is not a number", BODY, "t=soon,v1=" + "0" * 64),
        ("no v1", BODY, f"t={int(time.time())}"),
    ],
)
def test_it_refuses(what, body, header):
    assert not verify_signature(SECRET, body, header), what


def test_it_refuses_a_replay_past_the_tolerance():
    signed_long_ago = sign(SECRET, BODY, timestamp=int(time.time()) - 301)

    assert not verify_signature(SECRET, BODY, signed_long_ago)
    assert verify_signature(SECRET, BODY, signed_long_ago, tolerance=600)


def test_it_refuses_a_timestamp_from_the_future_past_the_tolerance():
    assert not verify_signature(SECRET, BODY, sign(SECRET, BODY, timestamp=int(time.time()) + 301))


def test_it_accepts_any_of_several_signatures_during_a_secret_rotation():
    timestamp = int(time.time())
    old, new = sign("old-secret", BODY, timestamp=timestamp), sign(SECRET, BODY, timestamp=timestamp)
    both = f"{new},v1={old.split('v1=')[1]}"

    assert verify_signature(SECRET, BODY, both)
    assert verify_signature("old-secret", BODY, both)
    assert not verify_signature("third-secret", BODY, both)


def test_it_compares_in_constant_time(monkeypatch):
    compared = []
    real = hmac.compare_digest
    monkeypatch.setattr(hmac, "compare_digest", lambda a, b: compared.append((a, b)) or real(a, b))

    verify_signature(SECRET, BODY, sign(SECRET, BODY))

    assert len(compared) == 1
