"""Earned autonomy, applied: evaluating grants and moving their tiers.

The rule itself is approvals.rules.trust.assess (pure). Here: `evaluate`
applies it to many grants at once (the hourly beat task, or a lead on the agent
page); `promote_on_recommendation` is the lead's one click. Losing autonomy
never waits for a human; gaining it may. Every change, these and the admin's,
goes through `set_tier`: a TierChange row, an audit event and, after commit,
an email to the agent's owner and its department's leads.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import OuterRef, QuerySet, Subquery
from django.utils import timezone

from agents.models import Agent, AgentStatus, Grant, Tier
from approvals import enqueue
from approvals.autonomy import metrics
from approvals.autonomy.metrics import Metrics
from approvals.models import Action, ActionType, PromotionPolicy, TierChange, TierChangeReason
from approvals.rules.trust import Assessment, assess, rank
from audit import log
from audit.log import Actor
from audit.people import Person


def cap_of(action_type: ActionType) -> Tier:
    """The highest tier a grant of this action type may hold."""
    return Tier.CONTRIBUTOR if action_type.has_permanent_gate else Tier.EXECUTOR


# ---------------------------------------------------------------- the rule


# ---------------------------------------------------------------- the evidence, in bulk


def _record_missing_versions() -> None:
    """Grants never evaluated remember the agent's current version as their baseline."""
    current = Agent.objects.filter(pk=OuterRef("agent_id")).values("version")[:1]
    Grant.objects.filter(tier_agent_version__isnull=True).update(tier_agent_version=Subquery(current))


def new_versions(grants: Iterable[Grant]) -> set[int]:
    """Executor grants whose agent was released anew since their tier was set:
    the agent's version differs from the one recorded then, or its proposals
    at this tier report a context.agent_version other than the first one did.
    Two probes of the (grant, created_at) index per executor grant."""
    executors = [g for g in grants if g.tier == Tier.EXECUTOR]
    released = {g.pk for g in executors if g.tier_agent_version is not None and g.agent.version != g.tier_agent_version}
    at_this_tier = Action.objects.filter(grant_id=OuterRef("pk"), created_at__gte=OuterRef("tier_changed_at"))
    reported = (
        Grant.objects.filter(pk__in=[g.pk for g in executors])
        .annotate(
            first=Subquery(at_this_tier.order_by("created_at").values("context__agent_version")[:1]),
            latest=Subquery(at_this_tier.order_by("-created_at").values("context__agent_version")[:1]),
        )
        .values_list("pk", "first", "latest")
    )
    # Proposals that do not say their version tell nothing either way.
    released |= {pk for pk, first, latest in reported if first and latest and first != latest}
    return released


@dataclass(frozen=True)
class Evaluated:
    grant: Grant
    policy: PromotionPolicy
    metrics: Metrics
    assessment: Assessment


def assess_grants(grants: QuerySet[Grant], now: datetime | None = None) -> list[Evaluated]:
    """The rule applied to each grant, with the database doing the counting."""
    now = now or timezone.now()
    chosen = list(grants.select_related("agent", "action_type").order_by("pk"))
    policy_of = PromotionPolicy.by_department()
    policies = {g.pk: policy_of(g.agent.department_id) for g in chosen}
    records = metrics.for_grants({g.pk: policies[g.pk].window_start(now) for g in chosen})
    released = new_versions(chosen)
    return [
        Evaluated(
            g,
            policies[g.pk],
            records[g.pk],
            assess(g.tier, cap_of(g.action_type), records[g.pk], policies[g.pk], new_version=g.pk in released),
        )
        for g in chosen
    ]


# ---------------------------------------------------------------- changes


def evaluate(
    grants: QuerySet[Grant] | None = None, *, by: Person | None = None, now: datetime | None = None
) -> list[TierChange]:
    """Assess the grants (all of them by default) and make every automatic
    move. `by` is the person who asked for the evaluation, if any. Grants of
    retired agents are left alone: they propose nothing any more."""
    scope = Grant.objects.exclude(agent__status=AgentStatus.RETIRED) if grants is None else grants
    _record_missing_versions()
    changes = []
    for evaluated in assess_grants(scope, now):
        if evaluated.assessment.target is not None and evaluated.assessment.automatic:
            change = _change_tier(evaluated, by=by, automatic=True)
            if change is not None:
                changes.append(change)
    return changes


class NotRecommended(Exception):
    """The promotion a lead clicked is not (or no longer) what the rule recommends."""


def promote_on_recommendation(grant: Grant, user: Person) -> TierChange:
    """A lead's (or admin's) one click on a recommended promotion. The rule is
    asked again now, so a stale page cannot promote a grant whose record has
    changed since. The caller checks that the user may act on the grant."""
    _record_missing_versions()
    (evaluated,) = assess_grants(Grant.objects.filter(pk=grant.pk))
    assessment = evaluated.assessment
    if assessment.reason != TierChangeReason.PROMOTED:
        raise NotRecommended(f"No promotion is recommended for {grant.action_type.slug} now: {assessment.explanation}")
    change = _change_tier(evaluated, by=user, automatic=False)
    if change is None:
        raise NotRecommended(f"The tier of {grant.action_type.slug} changed meanwhile; look again.")
    return change


def _change_tier(evaluated: Evaluated, *, by: Person | None, automatic: bool) -> TierChange | None:
    """Move one grant, if it still holds the tier it was assessed at."""
    assessment = evaluated.assessment
    assert assessment.target is not None
    return set_tier(
        evaluated.grant,
        assessment.target,
        from_tier=assessment.tier,
        reason=assessment.reason,
        explanation=assessment.explanation,
        metrics=evaluated.metrics.snapshot(),
        automatic=automatic,
        by=by,
    )


def set_tier(
    grant: Grant,
    to_tier: str,
    *,
    reason: str,
    explanation: str,
    by: Person | None = None,
    automatic: bool = False,
    metrics: dict[str, Any] | None = None,
    from_tier: str | None = None,
) -> TierChange | None:
    """The one writer of a grant's tier: the evaluation, the one-click
    promotion and the admin all come here. In one transaction:

    1. Claim the move with one conditional update on `from_tier` (the tier
       the change was decided on; the grant's tier as loaded by default): of
       two changes at once, one moves it, the other gets None.
    2. Restart the evidence window (tier_changed_at) and note the agent's version.
    3. Write the TierChange row (the agent's tier history) and its audit event.
    4. After commit, tell the agent's owner and its department's leads.
    """
    from_tier = grant.tier if from_tier is None else from_tier
    if to_tier == from_tier:
        return None
    with transaction.atomic():
        now = timezone.now()
        claimed = Grant.objects.filter(pk=grant.pk, tier=from_tier).update(
            tier=to_tier, tier_changed_at=now, tier_agent_version=grant.agent.version
        )
        if not claimed:
            return None
        change = TierChange.objects.create(
            grant=grant,
            from_tier=from_tier,
            to_tier=to_tier,
            reason=reason,
            explanation=explanation,
            metrics=metrics or {},
            automatic=automatic,
            changed_by=by,
            created_at=now,
        )
        grant.tier, grant.tier_changed_at, grant.tier_agent_version = to_tier, now, grant.agent.version
        log.record(
            f"grant.{reason}",
            grant,
            actor=Actor.user(by) if by is not None else Actor.system("trust evaluation"),
            before={"tier": from_tier},
            after={
                "tier": to_tier,
                "reason": reason,
                "explanation": explanation,
                "automatic": automatic,
                "metrics": change.metrics,
            },
            department_id=grant.agent.department_id,
            agent_id=grant.agent_id,
        )
        enqueue.delay_on_commit("notify_tier_change", change.pk)
    return change


def set_tier_by_hand(grant: Grant, to_tier: str, *, by: Person, from_tier: str) -> TierChange | None:
    """A tier set by a person in the admin: a promotion or a demotion, not automatic, in their name."""
    up = rank(to_tier) > rank(from_tier)
    return set_tier(
        grant,
        to_tier,
        from_tier=from_tier,
        reason=TierChangeReason.PROMOTED if up else TierChangeReason.DEMOTED,
        explanation=f"Set by {by.get_username()} in the admin.",
        by=by,
    )


def tier_history(agent: Agent, limit: int = 20) -> QuerySet[TierChange]:
    return (
        TierChange.objects.filter(grant__agent=agent)
        .select_related("grant__action_type", "changed_by")
        .order_by("-created_at", "-id")[:limit]
    )
