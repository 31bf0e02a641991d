"""The simulated demo fleet: realistic proposals, made through the real HTTP
API with the demo agents' own (temporary) keys."""

from __future__ import annotations

import random
from datetime import timedelta
from io import StringIO

import jsonschema
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from agents.models import AgentKey
from approvals.demo import fleet as simulation
from approvals.demo import organisation as demo
from approvals.demo import scenarios
from approvals.management.commands.serve import start_simulator
from approvals.models import Action, ActionType, Executor
from approvals.rules.lifecycle import Status
from audit.models import AuditEvent
from tests.support.servers import free_port, wait_for

SCHEMAS = {capability.slug: capability.schema for capability in demo.CAPABILITIES}
GRANTS = {bot.slug: {permit.action_type for permit in bot.grants} for bot in demo.BOTS}
STRAYS = {("reply-drafter", "payments.refund"), ("crm-janitor", "crm.update_lead_owner")}


def simulated_keys() -> list[AgentKey]:
    return list(AgentKey.objects.filter(label=simulation.KEY_LABEL))


def proposed_with(keys: list[AgentKey]) -> list[AuditEvent]:
    prefixes = {key.prefix for key in keys}
    events = AuditEvent.objects.filter(verb="action.proposed")
    return [event for event in events if event.context.get("key_prefix") in prefixes]


@pytest.mark.parametrize("weight, agent, scenario", scenarios.SCENARIOS)
def test_it_writes_payloads_that_match_the_action_types_schema(weight, agent, scenario):
    rng = random.Random(7)
    for _ in range(200):
        plan = scenario(rng)
        validator = jsonschema.Draft202012Validator(SCHEMAS[plan.action_type])
        assert not list(validator.iter_errors(plan.payload)), plan.payload
        assert plan.agent == agent
        assert plan.action_type in GRANTS[agent] or (agent, plan.action_type) in STRAYS
        assert 0 <= plan.confidence <= 1 and plan.reasoning and plan.key


def test_it_mostly_proposes_within_grants():
    rng = random.Random(3)
    plans = [scenarios.next_plan(rng, set(GRANTS)) for _ in range(1000)]

    stray = sum((plan.agent, plan.action_type) in STRAYS for plan in plans)
    assert 0 < stray < 60
    assert {plan.agent for plan in plans} == set(GRANTS)


def test_it_proposes_through_the_api_and_revokes_its_keys_afterwards(asgi_server):
    call_command("seed_demo", "--history-days=0", stdout=StringIO())
    before = Action.objects.count()
    out = StringIO()

    call_command("simulate_agents", "--count=12", "--rate=50", "--seed=1", f"--url={asgi_server.url}", stdout=out)

    assert Action.objects.count() == before + 12
    keys = simulated_keys()
    assert sorted(key.agent.slug for key in keys) == sorted(bot.slug for bot in demo.BOTS)
    assert all(key.revoked_at is not None for key in keys)
    events = proposed_with(keys)
    assert len(events) == 12  # every one came in over HTTP with a simulator's key
    assert {event.actor_label for event in events} <= set(GRANTS)
    assert "12 proposals" in out.getvalue()
    assert " error " not in out.getvalue()


def test_it_carries_out_approved_actions_and_reports_their_results(asgi_server, monkeypatch, settings):
    monkeypatch.setattr(simulation, "SETTLE_EVERY_SECONDS", 0)
    settings.DEMO_TARGET = True  # as in the embedded run: some demo action types are webhooks
    call_command("seed_demo", "--history-days=0", stdout=StringIO())
    # The agents carry out agent-executed action types; the gateway dispatches the others itself.
    ActionType.objects.filter(slug="crm.update_lead_owner").update(executor=Executor.AGENT)
    dispatched_by_gateway = list(
        Action.objects.filter(status=Status.APPROVED, action_type__executor=Executor.WEBHOOK).values_list(
            "pk", flat=True
        )
    )
    approved = list(
        Action.objects.filter(status=Status.APPROVED, action_type__executor=Executor.AGENT).values_list("pk", flat=True)
    )
    Action.objects.filter(pk__in=approved).update(dispatch_after=timezone.now() - timedelta(seconds=1))

    call_command("simulate_agents", "--count", "1", "--url", asgi_server.url, stdout=StringIO())

    assert approved
    assert dispatched_by_gateway
    for action in Action.objects.filter(pk__in=approved):
        assert action.status in (Status.SUCCEEDED, Status.FAILED)
        assert action.executions.get().finished_at is not None
    assert not Action.objects.filter(pk__in=dispatched_by_gateway, executions__isnull=False).exists()


def test_it_gives_up_with_a_clear_message_when_the_server_does_not_answer(db):
    call_command("seed_demo", "--history-days=0", stdout=StringIO())
    out = StringIO()

    with pytest.raises(CommandError, match="did not answer"):
        call_command(
            "simulate_agents", "--url", f"http://127.0.0.1:{free_port()}", "--connect-timeout", "1", stdout=out
        )

    assert "is not answering" in out.getvalue()
    assert simulated_keys() and all(key.revoked_at is not None for key in simulated_keys())


def test_it_asks_for_the_demo_organisation_when_it_is_missing(db):
    with pytest.raises(CommandError, match="seed_demo"):
        call_command("simulate_agents", "--count", "1", stdout=StringIO())


def test_it_runs_beside_the_embedded_server_and_stops_with_it(asgi_server):
    call_command("seed_demo", "--history-days=0", stdout=StringIO())
    before = Action.objects.count()

    thread, stop = start_simulator(asgi_server.url, 20.0, listening=lambda: True)
    try:
        wait_for(lambda: Action.objects.count() >= before + 2, what="simulated proposals")
    finally:
        stop.set()
        thread.join(timeout=15)

    assert not thread.is_alive()
    keys = simulated_keys()
    assert keys and all(key.revoked_at is not None for key in keys)
    assert len(proposed_with(keys)) >= 2


def test_it_keeps_the_embedded_server_up_when_the_simulation_fails(db, caplog):
    # No demo agents: the simulation cannot start; the thread says so and ends.
    thread, _ = start_simulator("http://127.0.0.1:9", 1.0, listening=lambda: True)
    thread.join(timeout=15)

    assert not thread.is_alive()
    assert "The simulated agents stopped: No demo agents" in caplog.text
