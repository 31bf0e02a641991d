"""The yardstick for the agent API: a bare Django view that does the least an
intake endpoint can do on the same stack.

It parses the same JSON body as POST /api/v1/actions/, inserts one row of the
same width as an action (the same columns the proposal fills: key prefix,
action type, payload, reasoning, confidence, amount, context, idempotency
key), and answers 201 with a small JSON body. No authentication, no
validation, no policy, no audit event, no task, no re-read: everything the
API does on top of this is what the ratio measures.

The table has a primary key only; it is created by bench/api_bench.py.
"""

from __future__ import annotations

import json
import uuid

from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

TABLE = "bench_bare_row"
CREATE_TABLE = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    id uuid PRIMARY KEY,
    key_prefix varchar(16) NOT NULL,
    action_type varchar(100) NOT NULL,
    payload jsonb NOT NULL,
    reasoning text NOT NULL,
    confidence numeric(4, 3),
    amount numeric(14, 2),
    context jsonb NOT NULL,
    idempotency_key varchar(255),
    created_at timestamptz NOT NULL DEFAULT now()
)
"""
INSERT = (
    f"INSERT INTO {TABLE} (id, key_prefix, action_type, payload, reasoning, confidence, amount, context, "
    "idempotency_key) VALUES (%s, %s, %s, %s::jsonb, %s, %s, %s, %s::jsonb, %s)"
)


@csrf_exempt
@require_POST
def bare_insert(request: HttpRequest) -> JsonResponse:
    body = json.loads(request.body)
    row_id = uuid.uuid4()
    # The key's public prefix stands in for the agent: read, never looked up.
    prefix = request.headers.get("Authorization", "").removeprefix("Bearer ")[:13]
    with connection.cursor() as cursor:
        cursor.execute(
            INSERT,
            [
                row_id,
                prefix,
                body["action_type"],
                json.dumps(body["payload"]),
                body["reasoning"],
                body.get("confidence"),
                body.get("amount"),
                json.dumps(body.get("context") or {}),
                request.headers.get("Idempotency-Key"),
            ],
        )
    return JsonResponse({"id": str(row_id), "status": "recorded"}, status=201)
