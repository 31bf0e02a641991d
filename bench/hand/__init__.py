"""The agent API's intake written by hand: the anchor for bench/api_bench.py.

POST /bench/hand/actions/ (any path under /bench/hand/) does the job of POST /api/v1/actions/ (agents.authentication,
approvals.api.throttle, approvals.api.proposals, approvals.services.proposals)
as a plain ASGI app on the event loop: raw SQL through psycopg's async pool,
no ORM, no DRF, no thread per request. It is served by the same uvicorn
processes as the API (bench/asgi_bench.py routes the path here), so both pay
the same server, settings, database and Redis.

The same job, step by step:

- the key: looked up by its public prefix (with its agent and, in the same
  statement, the action type named by the body), hashes compared in constant
  time; wrong, expired and revoked keys get the same 401; `last_used_at`
  written at most once a minute;
- the per-agent sliding-window throttle: the same Lua script, counters and
  cache keys as approvals.api.throttle (so both paths share the counts), and
  the same fail-open when Redis does not answer;
- the body: the same fields, limits, error messages and field order as
  ProposalSerializer (unknown fields refused), the idempotency key from the
  body or the header, the same fingerprint;
- idempotency without a SELECT first: the unique constraint decides (an
  `INSERT … ON CONFLICT DO NOTHING`); only then, or on an error where the real
  path would have found the earlier action first, is the earlier action read:
  same body, a 200 replay; another body, a 409;
- one transaction in two round trips (psycopg pipelines): the grant locked
  `FOR UPDATE` with the gateway's pause, then the day's counters in their own
  statement (so they see what committed while the lock was awaited), counted
  only when the grant has a daily limit; then the action and its audit event
  in one statement, and COMMIT;
- the same rules: `approvals.rules.policy.decide`, `amounts.read_money`,
  `routing.priority` / `sla_deadline`, the JSON Schema (validators cached per
  schema), the amount check;
- after commit: the audit sequencer woken (audit.chain.request_seal, the
  process's own background sealer, as for the API), the routing task queued
  for a waiting action (a Celery protocol-2 message pushed to the queue, as
  `route_action.delay` does; the API gathers the routing of the proposals
  answered within 20 ms into one `route_actions` task, as queueing through
  Celery costs it far more than this prebuilt message's LPUSH), the action
  published to its department's and its own channel-layer groups;
- the answer: ActionSerializer's fields for a new action, built directly; a
  blocked proposal is stored and answered 403 with the action, as the API does.

Where it does less (none of it on the bench's path): action types carried out
by webhook are refused with 501 (the API schedules their dispatch); strings
holding NUL or unpaired surrogates are left to PostgreSQL to refuse (the API
names the field); a key's `last_used_at` is written with a proposal that
gets as far as the transaction (the API writes it on any authenticated
request). There is no middleware (security headers, request context,
sessions): that is part of what the comparison measures.
"""
