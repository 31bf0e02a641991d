"""approvals.rules.trust.assess, the rule, table-driven: a pure function of the
tier, the cap, the metrics and the policy (no database)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from agents.models import Tier
from approvals.models import PromotionPolicy
from approvals.rules.trust import Metrics, assess

DEFAULTS = {"min_decisions": 50, "promote_threshold": Decimal("0.950"), "demote_threshold": Decimal("0.900")}


def policy(**changes) -> PromotionPolicy:
    return PromotionPolicy(**{**DEFAULTS, "auto_promote": True, "require_lower_bound": False, **changes})


def decided(approved: int, against: int) -> Metrics:
    return Metrics(human_approved=approved, human_rejected=against)


def marked(would_approve: int, would_reject: int) -> Metrics:
    return Metrics(shadow_marks=would_approve + would_reject, shadow_would_approve=would_approve)


OBS, CON, EXE = Tier.OBSERVER, Tier.CONTRIBUTOR, Tier.EXECUTOR

CASES = [
    # (case, tier, cap, metrics, policy changes, new version, expected target, reason, automatic)
    ("exactly at 95 % promotes", CON, EXE, decided(95, 5), {}, False, EXE, "promoted", True),
    ("exactly at 95 % with the minimum", CON, EXE, decided(57, 3), {"min_decisions": 60}, False, EXE, "promoted", True),
    ("just under 95 % holds", CON, EXE, decided(94, 5), {}, False, None, "", True),
    ("one decision under the minimum holds", CON, EXE, decided(49, 0), {}, False, None, "", True),
    ("the minimum exactly promotes", CON, EXE, decided(50, 0), {}, False, EXE, "promoted", True),
    ("the tier cap: high risk stays contributor", CON, CON, decided(500, 0), {}, False, None, "", True),
    ("the tier cap: an executor over it drops", EXE, CON, decided(500, 0), {}, False, CON, "over_cap", True),
    ("observer promotes on shadow agreement", OBS, EXE, marked(50, 0), {}, False, CON, "promoted", True),
    ("observer ignores the approval rate", OBS, EXE, decided(500, 0), {}, False, None, "", True),
    ("observer to contributor under a contributor cap", OBS, CON, marked(60, 0), {}, False, CON, "promoted", True),
    ("a version change drops an executor", EXE, EXE, decided(100, 0), {}, True, CON, "new_version", True),
    ("a version change leaves a contributor", CON, EXE, decided(10, 0), {}, True, None, "", True),
    (
        "recommend-only offers the promotion",
        CON,
        EXE,
        decided(95, 5),
        {"auto_promote": False},
        False,
        EXE,
        "promoted",
        False,
    ),
    ("recommend-only still demotes", EXE, EXE, decided(80, 20), {"auto_promote": False}, False, CON, "demoted", True),
    ("demotion under 90 %", EXE, EXE, decided(89, 11), {}, False, CON, "demoted", True),
    ("contributor demotes to observer", CON, EXE, decided(44, 6), {}, False, OBS, "demoted", True),
    ("exactly at 90 % holds", EXE, EXE, decided(90, 10), {}, False, None, "", True),
    ("a small sample clearly under demotes", CON, EXE, decided(0, 3), {}, False, OBS, "demoted", True),
    ("a small sample maybe under holds", CON, EXE, decided(8, 2), {}, False, None, "", True),
    (
        "vetoes count against an executor",
        EXE,
        EXE,
        Metrics(human_approved=44, vetoed=3, rolled_back=3),
        {},
        False,
        CON,
        "demoted",
        True,
    ),
    ("an observer is never demoted", OBS, EXE, marked(0, 60), {}, False, None, "", True),
    (
        "lower-bound mode: 95 % is not enough",
        CON,
        EXE,
        decided(95, 5),
        {"require_lower_bound": True},
        False,
        None,
        "",
        True,
    ),
    (
        "lower-bound mode: a clear record promotes",
        CON,
        EXE,
        decided(300, 3),
        {"require_lower_bound": True},
        False,
        EXE,
        "promoted",
        True,
    ),
    ("the top tier holds", EXE, EXE, decided(100, 0), {}, False, None, "", True),
]


@pytest.mark.parametrize(
    ("tier", "cap", "found", "changes", "new_version", "target", "reason", "automatic"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_the_rule(tier, cap, found, changes, new_version, target, reason, automatic):
    assessment = assess(tier, cap, found, policy(**changes), new_version=new_version)
    assert (assessment.target, assessment.reason, assessment.automatic) == (target, reason, automatic)


def test_it_says_how_far_a_grant_is_from_promotion_and_demotion():
    assessment = assess(CON, EXE, decided(90, 6), policy())
    assert assessment.target is None
    assert assessment.decisions_short == 0
    assert assessment.approvals_short == 24  # 114 of 120 is 95 %
    assert assessment.rejections_to_demotion == 5  # 90 of 101 is under 90 %, 90 of 100 is not
    assert assessment.near_a_change


def test_it_counts_the_decisions_still_missing():
    assessment = assess(CON, EXE, decided(40, 0), policy())
    assert (assessment.decisions_short, assessment.approvals_short) == (10, 0)
    assert assessment.explanation == "40 of the 50 decisions a promotion needs."


def test_a_grant_at_its_cap_has_no_promotion_distance():
    assessment = assess(CON, CON, decided(40, 0), policy())
    assert assessment.approvals_short is None
    assert assessment.explanation == "At its cap (contributor)."


def test_the_explanation_gives_the_evidence():
    assessment = assess(CON, EXE, decided(95, 5), policy(require_lower_bound=False))
    assert assessment.explanation == (
        "Its approval rate of 95.0 % over 100 decisions meets the promote threshold of 95.0 %."
    )
