"""The claim-to-role mappings: what a claim matches, and their admin (a
clear error for a role without its department, every edit audited)."""

from __future__ import annotations

import pytest

from audit.models import AuditEvent
from sso.models import Role, RoleMapping

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("claim", "value", "claims", "matches"),
    [
        ("groups", "finance-leads", {"groups": ["staff", "finance-leads"]}, True),
        ("groups", "finance-leads", {"groups": ["Finance-Leads"]}, False),  # exact, case-sensitive
        ("groups", "finance-leads", {"groups": "finance-leads"}, True),  # a single value
        ("groups", "finance-leads", {}, False),
        ("realm_access.roles", "approver", {"realm_access": {"roles": ["approver"]}}, True),
        ("realm_access.roles", "approver", {"realm_access": ["approver"]}, False),
        ("is_admin", "true", {"is_admin": True}, True),
        ("is_admin", "true", {"is_admin": False}, False),
    ],
)
def test_what_a_mapping_matches(claim, value, claims, matches):
    assert RoleMapping(claim=claim, value=value, role=Role.ADMIN).matches(claims) is matches


def test_the_admin_refuses_a_lead_mapping_without_its_department_and_audits_an_edit(admin_client, department):
    url = "/admin/sso/rolemapping/add/"
    refused = admin_client.post(url, {"claim": "groups", "value": "finance-leads", "role": "lead", "department": ""})
    assert refused.status_code == 200
    assert "A lead or backup role needs its department" in refused.content.decode()
    assert not RoleMapping.objects.exists()

    data = {"claim": "groups", "value": "finance-leads", "role": "lead", "department": str(department.pk)}
    assert admin_client.post(url, data).status_code == 302
    mapping = RoleMapping.objects.get()
    event = AuditEvent.objects.get(verb="sso_role_mapping.created")
    assert event.object_id == str(mapping.pk) and event.department_id == department.pk
