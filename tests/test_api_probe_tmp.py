import json
import pytest
from django.test import Client
from agents.services import issue_key
from audit.log import Actor
from tests.factories import ActionTypeFactory, GrantFactory


@pytest.mark.parametrize("body", [
    '{"action_type": "t.x", "payload": {"note": 1e400}, "reasoning": "r"}',
    '{"action_type": "t.x", "payload": {"n": "a\\u0000b"}, "reasoning": "r"}',
    '{"action_type": "t.x", "payload": {"n": "\\ud800"}, "reasoning": "r"}',
    '{"action_type": "t.x", "payload": {}, "reasoning": "\\ud800"}',
    '{"action_type": "t.x", "payload": {}, "reasoning": "a\\u0000"}',
    '{"action_type": "t.x", "payload": {}, "reasoning": "r", "context": {"a\\u0000": 1}}',
    '{"action_type": "t.x", "payload": {}, "reasoning": "r", "confidence": true}',
    '{"action_type": "t.x", "payload": {}, "reasoning": "r", "amount": 1e400}',
    '{"action_type": "t.x", "payload": {}, "reasoning": "r", "amount": "1e5"}',
    '{"action_type": "t.x", "payload": {}, "reasoning": "r", "idempotency_key": 5}',
    '{"action_type": "t.x", "payload": {}, "reasoning": "r", "idempotency_key": ""}',
    '{"action_type": "t.x\\u0000", "payload": {}, "reasoning": "r"}',
    '{"action_type": ["t.x"], "payload": {}, "reasoning": "r"}',
    '{"action_type": {"a":1}, "payload": {}, "reasoning": "r"}',
    '[' * 100000 + ']' * 100000,
    '{"action_type": "t.x", "payload": {}, "reasoning": "r", "context": ' + '[' * 5000 + ']' * 5000 + '}',
    '"str"',
    'null',
    '\xff',
])
def test_probe(db, agent, body):
    at = ActionTypeFactory(slug="t.x", payload_schema={})
    GrantFactory(agent=agent, action_type=at)
    _, raw = issue_key(agent, actor=Actor.system())
    c = Client(headers={"Authorization": f"Bearer {raw}"}, raise_request_exception=False)
    r = c.post("/api/v1/actions/", body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body, content_type="application/json")
    print(r.status_code, r.content[:300])
