"""`api_bench.py --check`: the hand-written intake (bench/hand/)
answers as POST /api/v1/actions/ does, and stores the same rows.

Each case posts the same body to both paths, with its own idempotency key per
path (both write to the same tables), and compares the status, the answer's
keys and values (an action's id, times, URL and idempotency key apart; times
compared relative to created_at), the error's code, message and fields, and,
for a stored proposal, the action row and its audit event (ids and times
apart). Prints one line per case and exits 1 if any differs.
"""

from __future__ import annotations

import http.client
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from api_bench import ENDPOINTS, KINDS

API, HAND = ENDPOINTS["api"][1], ENDPOINTS["hand"][1]
VOLATILE_ANSWER = {"id", "url", "idempotency_key", "created_at", "decided_at", "dispatch_after", "expires_at"}
VOLATILE_ROW = {"id", "idempotency_key", "created_at", "decided_at", "dispatch_after", "expires_at", "updated_at",
                "sla_deadline"}  # fmt: skip
VOLATILE_EVENT = {"id", "created_at", "object_id", "seq", "prev_hash", "hash"}


@dataclass(frozen=True)
class Case:
    name: str
    body: Callable[[], Any]  # a fresh body (a str is sent as it is)
    key: str = "agent"  # which key signs: agent, suspended, wrong, none, scheme
    replay: bool = False  # send it twice under one key; compare the second answers
    conflict: bool = False  # send a second, different body under the first's key


def cases() -> list[Case]:
    refund, lead, over_auto = (lambda n=n: KINDS[n](n) for n in (0, 1, 2))

    def changed(make: Callable[[], dict[str, Any]], **fields: Any) -> Callable[[], dict[str, Any]]:
        return lambda: {**make(), **fields}

    def payload_changed(declared: str = "42.00", **fields: Any) -> Callable[[], dict[str, Any]]:
        return lambda: {**refund(), "payload": {**refund()["payload"], **fields}, "amount": declared}

    return [
        Case("refund, executor within limits: approved", refund),
        Case("lead reassignment, contributor: pending", lead),
        Case("refund over the auto-approve limit: pending", over_auto),
        Case("refund over the per-action limit: blocked, 403", payload_changed("900.00", amount=900.0)),
        Case("low confidence: pending", changed(refund, confidence=0.5)),
        Case("no grant for the type: blocked, 403", changed(lead, action_type="bench.check.ungranted")),
        Case("suspended agent: blocked, 403", refund, key="suspended"),
        Case("replay: same key and body, 200", refund, replay=True),
        Case("same key, another body: 409", refund, conflict=True),
        Case("payload against the schema: 400", payload_changed(currency="JPY", order_id="x")),
        Case("amount declared otherwise: 400", changed(refund, amount="41.00")),
        Case("amount declared the same", changed(refund, amount="42.00")),
        Case("unknown action type: 400", changed(refund, action_type="bench.nope")),
        Case("fields missing: 400", lambda: {"payload": {}}),
        Case("wrong field types: 400", changed(refund, reasoning=["x"], confidence="high", context=[1])),
        Case("confidence out of range: 400", changed(refund, confidence=1.5)),
        Case("unknown field: 400", changed(refund, colour="blue")),
        Case("not an object: 400", lambda: [1, 2]),
        Case("malformed JSON: 400", lambda: '{"action_type": '),
        Case("wrong key: 401", refund, key="wrong"),
        Case("no key: 401", refund, key="none"),
        Case("another scheme: 401", refund, key="scheme"),
    ]


def run(port: int, keys: list[str]) -> int:
    signers = {"agent": keys[0], "suspended": _suspended_agent_key(), "wrong": keys[0][:-4] + "abcd"}
    _ungranted_type()
    differences = 0
    for case in cases():
        answers = {path: _exchange(port, path, case, signers) for path in (API, HAND)}
        found = _differences(*answers.values())
        differences += bool(found)
        status = answers[API][0]
        print(f"  {'same' if not found else 'DIFFERS'}  {status}  {case.name}")
        for line in found:
            print(f"      {line}")
    print(f"{len(cases()) - differences} of {len(cases())} cases answered alike")
    return 1 if differences else 0


def _exchange(port: int, path: str, case: Case, signers: dict[str, str]) -> tuple[int, Any, Any]:
    """(status, answer, stored rows) of the case's last request on `path`."""
    idempotency_key = f"check-{secrets.token_hex(6)}"
    body = case.body()
    status, answer = _post(port, path, body, case.key, signers, idempotency_key)
    if case.replay:
        status, answer = _post(port, path, body, case.key, signers, idempotency_key)
    if case.conflict:
        status, answer = _post(port, path, KINDS[3](3), case.key, signers, idempotency_key)
    return status, answer, _stored(answer)


def _post(port: int, path: str, body: Any, key: str, signers: dict[str, str], idempotency_key: str) -> tuple[int, Any]:
    headers = {
        "Content-Type": "application/json",
        "X-Forwarded-Proto": "https",
        "Idempotency-Key": idempotency_key,
        "User-Agent": "countersign-check/1.0",
    }
    if key == "scheme":
        headers["Authorization"] = f"Token {signers['agent']}"
    elif key != "none":
        headers["Authorization"] = f"Bearer {signers[key]}"
    content = body if isinstance(body, str) else json.dumps(body)
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("POST", path, content.encode(), headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        connection.close()


def _differences(api: tuple[int, Any, Any], hand: tuple[int, Any, Any]) -> list[str]:
    (api_status, api_answer, api_rows), (hand_status, hand_answer, hand_rows) = api, hand
    found = [] if api_status == hand_status else [f"status: API {api_status}, hand-written {hand_status}"]
    found += _compare("answer", _comparable(api_answer), _comparable(hand_answer))
    found += _compare("stored", api_rows, hand_rows)
    return found


def _compare(where: str, api: Any, hand: Any) -> list[str]:
    if isinstance(api, dict) and isinstance(hand, dict):
        lines = []
        for key in sorted(set(api) | set(hand)):
            if key not in hand or key not in api:
                lines.append(f"{where}.{key}: only in the {'API' if key in api else 'hand-written'} answer")
            else:
                lines += _compare(f"{where}.{key}", api[key], hand[key])
        return lines
    return [] if api == hand else [f"{where}: API {api!r:.160}, hand-written {hand!r:.160}"]


def _comparable(answer: Any) -> Any:
    """The answer without what differs by nature: ids, keys, clock times (kept relative to created_at)."""
    if not isinstance(answer, dict):
        return answer
    if "error" in answer:
        error = {k: v for k, v in answer["error"].items() if k != "action_id"}
        return {**answer, "error": error, **({"action": _comparable(answer["action"])} if "action" in answer else {})}
    created = datetime.fromisoformat(answer["created_at"])
    relative = {
        name: None if answer[name] is None else (datetime.fromisoformat(answer[name]) - created).total_seconds()
        for name in ("decided_at", "dispatch_after", "expires_at")
    }
    return {**{k: v for k, v in answer.items() if k not in VOLATILE_ANSWER}, **relative}


def _stored(answer: Any) -> Any:
    """The action row and its audit event, as the database holds them."""
    from django.forms.models import model_to_dict

    from approvals.models import Action
    from audit.models import AuditEvent

    if not isinstance(answer, dict):
        return None
    action_id = answer.get("id") or answer.get("action", {}).get("id")
    if action_id is None:
        return None
    action = Action.objects.get(pk=action_id)
    row = {k: v for k, v in model_to_dict(action).items() if k not in VOLATILE_ROW}
    row["sla_after_s"] = (
        None if action.sla_deadline is None else (action.sla_deadline - action.created_at).total_seconds()
    )
    events = AuditEvent.objects.filter(object_id=str(action_id)).order_by("id")
    row["events"] = [{k: v for k, v in model_to_dict(e).items() if k not in VOLATILE_EVENT} for e in events]
    return row


def _suspended_agent_key() -> str:
    from agents import services
    from agents.models import Agent, AgentStatus, Grant
    from audit.log import Actor

    template = Agent.objects.get(slug="apibench-0")
    agent, _ = Agent.objects.update_or_create(
        slug="apibench-suspended",
        defaults={"name": "API bench suspended", "owner": template.owner, "department": template.department,
                  "purpose": "Benchmark check.", "status": AgentStatus.SUSPENDED},
    )  # fmt: skip
    for grant in Grant.objects.filter(agent=template):
        Grant.objects.update_or_create(agent=agent, action_type=grant.action_type, defaults={"tier": grant.tier})
    return services.issue_key(agent, actor=Actor.system("api_bench"), label="check")[1]


def _ungranted_type() -> None:
    from approvals.models import ActionType, Department, Risk

    department = Department.objects.get(slug="apibench")
    lead_owner = ActionType.objects.get(slug="bench.crm.update_lead_owner")
    ActionType.objects.update_or_create(
        slug="bench.check.ungranted",
        defaults={"name": "Not granted", "risk": Risk.LOW, "payload_schema": lead_owner.payload_schema,
                  "routing_department": department},
    )  # fmt: skip
