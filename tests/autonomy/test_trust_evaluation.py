"""approvals.autonomy.trust.evaluate and the hourly task: tiers move on the record,
each move is a TierChange with its evidence, audited and emailed to the owner
and the department's leads; a new agent version restarts an executor."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.conf import settings
from django.core import mail
from django.utils import timezone

from agents.models import Tier
from approvals import tasks
from approvals.autonomy import trust
from approvals.models import PromotionPolicy, Risk, TierChange
from audit.models import AuditEvent
from tests.support.factories import ActionTypeFactory, DepartmentFactory, GrantFactory, UserFactory
from tests.support.trust_records import actions, approvals, rejections, shadow_marks

pytestmark = pytest.mark.django_db

A_MONTH_AGO = timezone.now() - timedelta(days=30)


def grant_of(agent, slug="payments.refund", tier=Tier.CONTRIBUTOR, risk=Risk.MEDIUM, version="1.0"):
    return GrantFactory(
        agent=agent,
        action_type=ActionTypeFactory(slug=slug, risk=risk),
        tier=tier,
        tier_changed_at=A_MONTH_AGO,
        tier_agent_version=version,
    )


@pytest.fixture
def evaluate(eager_tasks, django_capture_on_commit_callbacks):
    """trust.evaluate, with its after-commit emails sent."""

    def _evaluate(*args, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return trust.evaluate(*args, **kwargs)

    return _evaluate


def tier_of(grant) -> str:
    grant.refresh_from_db()
    return grant.tier


def test_it_promotes_a_contributor_at_95_percent_and_records_why(agent, owner, lead, other_lead, evaluate):
    grant = grant_of(agent)
    approvals(grant, 95)
    rejections(grant, 5)

    [change] = evaluate()

    assert tier_of(grant) == Tier.EXECUTOR
    assert grant.tier_changed_at > timezone.now() - timedelta(minutes=1)
    assert (change.from_tier, change.to_tier, change.reason, change.automatic) == (
        "contributor",
        "executor",
        "promoted",
        True,
    )
    assert change.changed_by is None
    assert change.metrics["approval"]["successes"] == 95 and change.metrics["approval"]["trials"] == 100
    event = AuditEvent.objects.get(verb="grant.promoted")
    assert (event.before, event.after["tier"], event.agent_id) == ({"tier": "contributor"}, "executor", agent.pk)
    assert event.actor_label == "trust evaluation"
    recipients = sorted(address for message in mail.outbox for address in message.to)
    assert recipients == sorted(user.email for user in (owner, lead, other_lead))
    assert "payments.refund is now executor" in mail.outbox[0].subject
    assert "95.0 %" in mail.outbox[0].body


def test_a_promoted_grant_starts_a_fresh_window(agent):
    grant = grant_of(agent)
    approvals(grant, 60)
    assert len(trust.evaluate()) == 1
    rejections(grant, 1, created_at=timezone.now() - timedelta(minutes=10))  # before the promotion: not counted
    assert trust.evaluate() == []
    assert tier_of(grant) == Tier.EXECUTOR


def test_it_holds_one_decision_under_the_minimum(agent):
    grant = grant_of(agent)
    approvals(grant, 49)
    assert trust.evaluate() == []
    assert tier_of(grant) == Tier.CONTRIBUTOR


def test_a_department_override_replaces_the_global_default(agent, department):
    PromotionPolicy.objects.create(department=department, min_decisions=10)
    grant = grant_of(agent)
    approvals(grant, 10)
    assert len(trust.evaluate()) == 1
    assert tier_of(grant) == Tier.EXECUTOR


def test_it_never_promotes_past_the_cap_of_a_high_risk_action_type(agent):
    grant = grant_of(agent, risk=Risk.HIGH)
    approvals(grant, 200)
    assert trust.evaluate() == []
    assert tier_of(grant) == Tier.CONTRIBUTOR


def test_it_promotes_an_observer_on_shadow_agreement(agent, lead):
    grant = grant_of(agent, tier=Tier.OBSERVER)
    shadow_marks(grant, lead, would_approve=50, would_reject=2)
    [change] = trust.evaluate()
    assert (change.to_tier, tier_of(grant)) == ("contributor", Tier.CONTRIBUTOR)
    assert "shadow agreement of 96.2 %" in change.explanation


def test_it_demotes_one_tier_under_the_demote_threshold(agent):
    grant = grant_of(agent, tier=Tier.EXECUTOR)
    approvals(grant, 40)
    actions(grant, 6, status="rejected", verdict="approved")  # vetoed auto-approvals
    actions(grant, 4, status="rolled_back", verdict="approved")
    [change] = trust.evaluate()
    assert (change.reason, tier_of(grant)) == ("demoted", Tier.CONTRIBUTOR)
    assert AuditEvent.objects.filter(verb="grant.demoted").count() == 1
    assert trust.evaluate() == []  # the window restarted: no second step down on the same evidence


def test_a_new_agent_version_drops_executors_to_contributor(agent):
    executor = grant_of(agent, tier=Tier.EXECUTOR)
    contributor = grant_of(agent, slug="email.send")
    approvals(executor, 100)
    agent.version = "2.0"
    agent.save()

    [change] = trust.evaluate()

    assert change.grant == executor and change.reason == "new_version"
    assert tier_of(executor) == Tier.CONTRIBUTOR
    assert tier_of(contributor) == Tier.CONTRIBUTOR
    executor.refresh_from_db()
    assert executor.tier_agent_version == "2.0"
    assert trust.evaluate() == []  # its earlier approvals belong to the old window


def test_a_new_agent_version_in_the_proposals_context_counts_too(agent):
    grant = grant_of(agent, tier=Tier.EXECUTOR)
    approvals(grant, 10, version="1.0", created_at=timezone.now() - timedelta(hours=3))
    approvals(grant, 1, version="1.1", created_at=timezone.now() - timedelta(hours=1))
    [change] = trust.evaluate()
    assert change.reason == "new_version"
    assert tier_of(grant) == Tier.CONTRIBUTOR


def test_the_first_evaluation_records_the_version_a_grant_holds_its_tier_under(agent):
    grant = grant_of(agent, tier=Tier.EXECUTOR, version=None)
    assert trust.evaluate() == []
    grant.refresh_from_db()
    assert (grant.tier, grant.tier_agent_version) == (Tier.EXECUTOR, "1.0")


def test_recommend_only_leaves_the_tier_for_a_lead_to_promote(agent, lead):
    PromotionPolicy.objects.create(department=None, auto_promote=False)
    grant = grant_of(agent)
    approvals(grant, 95)
    rejections(grant, 5)

    assert trust.evaluate() == []
    [evaluated] = trust.assess_grants(agent.grants.all())
    assert evaluated.assessment.is_recommendation

    change = trust.promote_on_recommendation(grant, lead)
    assert (change.automatic, change.changed_by, tier_of(grant)) == (False, lead, Tier.EXECUTOR)
    assert AuditEvent.objects.get(verb="grant.promoted").actor_label == "lena-lead"


def test_a_promotion_no_longer_recommended_is_refused(agent, lead):
    PromotionPolicy.objects.create(department=None, auto_promote=False)
    grant = grant_of(agent)
    approvals(grant, 90)
    rejections(grant, 10)
    with pytest.raises(trust.NotRecommended, match=re.escape("No promotion is recommended for payments.refund now")):
        trust.promote_on_recommendation(grant, lead)
    assert not TierChange.objects.exists()


def test_lower_bound_mode_wants_the_interval_above_the_threshold(agent):
    PromotionPolicy.objects.create(department=None, require_lower_bound=True)
    grant = grant_of(agent)
    approvals(grant, 95)
    rejections(grant, 5)
    assert trust.evaluate() == []
    approvals(grant, 300)  # 395 of 400: the interval's lower bound is now 97.1 %
    assert len(trust.evaluate()) == 1


def test_retired_agents_are_left_alone(agent):
    grant = grant_of(agent)
    approvals(grant, 60)
    agent.status = "retired"
    agent.save()
    assert trust.evaluate() == []
    assert tier_of(grant) == Tier.CONTRIBUTOR


def test_the_owner_is_told_even_when_they_lead_nothing(agent, owner, evaluate):
    lone = DepartmentFactory(slug="lonely")
    agent.department = lone
    agent.save()
    grant = grant_of(agent)
    approvals(grant, 60)
    evaluate()
    assert [message.to for message in mail.outbox] == [[owner.email]]


def test_the_hourly_task_evaluates_every_grant(agent):
    grant = grant_of(agent)
    approvals(grant, 50)
    [entry] = [e for e in settings.CELERY_BEAT_SCHEDULE.values() if e["task"].endswith(".evaluate_trust")]
    assert entry["schedule"] == timedelta(hours=1)
    assert tasks.evaluate_trust() == 1
    assert tier_of(grant) == Tier.EXECUTOR


def test_a_person_who_asked_for_the_evaluation_is_recorded(agent, lead, evaluate):
    grant = grant_of(agent)
    approvals(grant, 50)
    [change] = evaluate(agent.grants.all(), by=lead)
    assert (change.automatic, change.changed_by) == (True, lead)
    assert "run by lena-lead" in mail.outbox[0].body


def test_it_does_not_email_people_without_an_address(agent, owner, lead, other_lead, evaluate):
    for person in (owner, lead, other_lead):
        person.email = ""
        person.save()
    UserFactory(username="quiet")
    grant = grant_of(agent)
    approvals(grant, 50)
    assert len(evaluate()) == 1
    assert mail.outbox == []


def test_limits_are_kept_when_the_tier_moves(agent):
    grant = grant_of(agent)
    grant.max_amount_per_action = Decimal("100.00")
    grant.save()
    approvals(grant, 50)
    trust.evaluate()
    grant.refresh_from_db()
    assert (grant.tier, grant.max_amount_per_action) == (Tier.EXECUTOR, Decimal("100.00"))
