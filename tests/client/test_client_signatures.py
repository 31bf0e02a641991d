"""The webhook signature is written three times (docs/architecture.md): the gateway's agents/signing.py
(dispatches, rollbacks, alerts), audit/witness.py (anchors; audit may not import upward) and the agents'
package (countersign_client.signatures). Whatever one signs, the others accept, and nothing else."""

from __future__ import annotations

import pytest

from agents import signing
from audit import witness
from countersign_client import SIGNATURE_HEADER, sign, verify_signature

SECRET = "whsec-of-one-action-type"
BODY = b'{"id":"3f1c","action_type":"payments.refund","payload":{"amount":45}}'


@pytest.mark.parametrize("signer", [signing.sign, witness._sign, sign], ids=["gateway", "witness", "client"])
def test_what_any_of_them_signs_the_others_accept(signer):
    header = signer(SECRET, BODY)

    assert verify_signature(SECRET, BODY, header)
    assert signing.verify_signature(SECRET, BODY, header)
    assert not verify_signature(SECRET, BODY + b" ", header)
    assert not signing.verify_signature("another-secret", BODY, header)


def test_they_agree_on_the_header_and_on_the_exact_value():
    assert SIGNATURE_HEADER == signing.SIGNATURE_HEADER == witness.SIGNATURE_HEADER == "X-Countersign-Signature"
    assert sign(SECRET, BODY, timestamp=1_800_000_000) == signing.sign(SECRET, BODY, timestamp=1_800_000_000)
