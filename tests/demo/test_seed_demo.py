from __future__ import annotations

from io import StringIO

import jsonschema
import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from agents.models import Agent, Grant, Tier
from approvals import services
from approvals.demo import organisation as demo
from approvals.models import Action, ActionType, Decision, Department, Executor, Risk
from approvals.rules.lifecycle import Status
from audit.models import AuditEvent

User = get_user_model()


@pytest.fixture(autouse=True)
def fast_hashing(settings):
    # The real hasher is slow on purpose; these tests log in many times.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def seed(db):
    """Run seed_demo and return what it printed."""

    def _seed(*args: str) -> str:
        out = StringIO()
        call_command("seed_demo", "--history-days=0", *args, stdout=out, stderr=StringIO())
        return out.getvalue()

    return _seed


def _counts() -> dict[str, int]:
    return {
        "users": User.objects.count(),
        "departments": Department.objects.count(),
        "leads": Department.leads.through.objects.count(),
        "backups": Department.backup_approvers.through.objects.count(),
        "action_types": ActionType.objects.count(),
        "agents": Agent.objects.count(),
        "grants": Grant.objects.count(),
        "actions": Action.objects.count(),
        "proposed_events": AuditEvent.objects.filter(verb="action.proposed").count(),
    }


def _action(agent_slug: str, action_type_slug: str, status: str) -> Action:
    return Action.objects.get(agent__slug=agent_slug, action_type__slug=action_type_slug, status=status)


def test_it_creates_the_four_departments_with_leads_and_an_sla(seed):
    seed()
    departments = {d.slug: d for d in Department.objects.all()}
    assert set(departments) == {"finance", "support", "sales", "it"}
    for department in departments.values():
        assert 1 <= department.leads.count() <= 2
        assert department.decision_sla_minutes > 0
    assert departments["finance"].backup_approvers.filter(username="claire").exists()


def test_it_lets_every_demo_user_log_in_with_the_demo_password(seed, client):
    seed()
    for person in demo.PEOPLE:
        assert client.login(username=person.username, password=demo.DEFAULT_PASSWORD), person.username
        client.logout()


def test_it_makes_only_the_admin_a_superuser(seed):
    seed()
    assert list(User.objects.filter(is_superuser=True, is_staff=True).values_list("username", flat=True)) == ["admin"]


def test_it_sets_the_password_given_with_the_option(seed, client):
    seed("--password", "tea-and-biscuits")
    assert client.login(username="fiona", password="tea-and-biscuits")
    assert not client.login(username="fiona", password=demo.DEFAULT_PASSWORD)


def test_it_refuses_an_empty_password(seed):
    with pytest.raises(CommandError):
        seed("--password", "  ")
    assert not User.objects.exists()


def test_it_declares_action_types_at_every_risk_level_with_valid_schemas(seed, settings):
    settings.DEMO_TARGET = True  # as in the embedded run
    seed()
    action_types = ActionType.objects.all()
    assert {t.risk for t in action_types} == set(Risk.values)
    for action_type in action_types:
        assert action_type.payload_schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        jsonschema.Draft202012Validator.check_schema(action_type.payload_schema)
    # Two are dispatched by signed webhook to the built-in demo target; the agents execute the rest.
    wired = {t.slug: t.webhook_url for t in action_types if t.executor == Executor.WEBHOOK}
    assert wired == {
        "payments.refund": "http://localhost:8000/demo-target/ok/payments.refund/",
        "crm.update_lead_owner": "http://localhost:8000/demo-target/hiccup/crm.update_lead_owner/",
    }
    assert ActionType.objects.get(slug="payments.refund").rollback_url.endswith("/payments.refund/rollback/")
    assert all(t.webhook_url == "" for t in action_types if t.executor == Executor.AGENT)


def test_it_leaves_every_action_type_to_its_agents_without_the_demo_target(seed, settings):
    settings.DEMO_TARGET = False
    seed()
    assert set(ActionType.objects.values_list("executor", flat=True)) == {Executor.AGENT}
    refund = ActionType.objects.get(slug="payments.refund")
    assert (refund.risk, refund.reversible) == (Risk.MEDIUM, True)
    assert ActionType.objects.get(slug="records.delete").reversible is False


def test_its_schemas_refuse_a_malformed_payload(seed):
    seed()
    refund = ActionType.objects.get(slug="payments.refund")
    errors = services.payload_errors(refund, {"order_id": "42", "amount": -5, "currency": "EUR"})
    assert {"order_id", "amount", ""} <= set(errors)  # "" holds the missing required fields


def test_it_routes_capabilities_to_the_department_that_decides_them(seed):
    seed()
    assert ActionType.objects.get(slug="payments.refund").routing_department.slug == "finance"
    assert ActionType.objects.get(slug="records.delete").routing_department.slug == "it"
    # The refund bot lives in Support, but Finance decides its refunds.
    assert _action("refund-bot", "payments.refund", Status.PENDING).department.slug == "finance"
    assert _action("crm-janitor", "records.delete", Status.PENDING).department.slug == "it"


def test_it_gives_agents_grants_at_every_tier(seed):
    seed()
    assert set(Grant.objects.values_list("tier", flat=True)) == set(Tier.values)
    for agent in Agent.objects.all():
        assert agent.owner_id and agent.purpose and agent.version
        assert agent.grants.exists()


def test_it_never_grants_executor_tier_on_high_or_critical_action_types(seed):
    seed()
    assert not Grant.objects.filter(tier=Tier.EXECUTOR, action_type__risk__in=[Risk.HIGH, Risk.CRITICAL]).exists()
    for grant in Grant.objects.all():
        grant.full_clean()


def test_it_fills_the_queue_with_pending_shadowed_approved_and_blocked_actions(seed):
    seed()
    statuses = set(Action.objects.values_list("status", flat=True))
    assert {Status.PENDING, Status.SHADOWED, Status.APPROVED, Status.BLOCKED} <= statuses
    assert _action("refund-bot", "payments.refund", Status.BLOCKED).verdict_code == "limit_exceeded"
    assert _action("reply-drafter", "payments.refund", Status.BLOCKED).verdict_code == "not_granted"
    assert _action("refund-bot", "payments.refund", Status.APPROVED).verdict_code == "executor"


def test_its_actions_get_the_status_the_demo_expects(seed):
    seed()
    for proposal in demo.PROPOSALS:
        action = Action.objects.get(agent__slug=proposal.agent, idempotency_key=proposal.key)
        assert action.status == proposal.expect, proposal.key


def test_its_actions_went_through_the_service_layer(seed):
    seed()
    assert AuditEvent.objects.filter(verb="action.proposed").count() == Action.objects.count() == len(demo.PROPOSALS)


def test_running_it_twice_changes_no_counts(seed):
    seed()
    first = _counts()
    seed()
    assert _counts() == first


def test_it_adds_no_actions_once_the_demo_agents_have_acted(seed):
    seed()
    Action.objects.filter(status=Status.BLOCKED).delete()  # fewer than seeded, but not none
    remaining = Action.objects.count()
    output = seed()
    assert Action.objects.count() == remaining
    assert "no demo actions added" in output


def test_it_keeps_a_grant_tier_changed_since_it_was_seeded(seed):
    seed()
    Grant.objects.filter(agent__slug="reply-drafter", action_type__slug="support.draft_reply").update(
        tier=Tier.CONTRIBUTOR
    )
    seed()
    grant = Grant.objects.get(agent__slug="reply-drafter", action_type__slug="support.draft_reply")
    assert grant.tier == Tier.CONTRIBUTOR


def test_it_records_the_seeding_in_the_audit_trail(seed):
    seed()
    event = AuditEvent.objects.get(verb="demo.seeded")
    assert (event.actor_kind, event.actor_label) == ("system", "seed_demo")
    assert event.after["actions_proposed"] == len(demo.PROPOSALS)


def test_an_owner_who_leads_the_department_may_not_approve_their_own_agent(seed):
    seed()
    email = _action("reply-drafter", "email.send_external", Status.PENDING)
    with pytest.raises(services.DecisionRefused):
        services.approve(email.pk, User.objects.get(username="nadia"))
    services.approve(email.pk, User.objects.get(username="sam"))
    email.refresh_from_db()
    assert email.status == Status.APPROVED


def test_the_vendor_payment_needs_both_finance_leads(seed):
    seed()
    payment = _action("payables-agent", "payments.vendor_payment", Status.PENDING)
    services.approve(payment.pk, User.objects.get(username="fiona"))
    payment.refresh_from_db()
    assert payment.status == Status.PENDING
    services.approve(payment.pk, User.objects.get(username="marcus"))
    payment.refresh_from_db()
    assert payment.status == Status.APPROVED
    assert Decision.objects.filter(action=payment).count() == 2


def test_its_output_lists_every_login_and_where_to_log_in(seed, settings):
    settings.SITE_URL = "https://gate.example.com/"
    output = seed("--password", "tea-and-biscuits")
    for person in demo.PEOPLE:
        line = next(line for line in output.splitlines() if line.split()[:1] == [person.username])
        assert "tea-and-biscuits" in line
    assert "admin (superuser)" in output
    assert "https://gate.example.com/login/" in output


def test_it_keeps_a_webhook_an_admin_wired_since(seed):
    seed()
    ActionType.objects.filter(slug="payments.refund").update(
        executor=Executor.WEBHOOK, webhook_url="https://payments.example.com/refunds"
    )
    seed()
    refund = ActionType.objects.get(slug="payments.refund")
    assert (refund.executor, refund.webhook_url) == (Executor.WEBHOOK, "https://payments.example.com/refunds")
