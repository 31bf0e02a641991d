"""Every model registered in the admin has pages that open; the ones written
only by services are view-only. Parametrized over the admin's registry, so a
new model without a working admin fails here."""

from __future__ import annotations

from typing import Any

import pytest
from axes.models import AccessAttempt
from django.contrib import admin
from django.contrib.auth.models import Group
from django.db import connection, models
from django.forms import MultiWidget
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from agents.services import issue_key
from approvals import services
from approvals.models import (
    Action,
    Alert,
    AlertKind,
    AlertSeverity,
    Decision,
    Execution,
    GatewayState,
    PromotionPolicy,
    SlackIdentity,
    TierChange,
)
from audit.log import Actor
from audit.models import AuditCheckpoint, AuditEvent
from sso.models import OIDCIdentity, Role, RoleMapping
from tests.support.auditing import forge_checkpoint

# Written only by the service layer (or append-only): no add, change or delete.
VIEW_ONLY = {Action, Alert, Decision, Execution, TierChange, AuditEvent, AuditCheckpoint}
# Written by the login brake or single sign-on; an admin deletes one (to lift a
# lock, to unlink an account), never adds one.
NO_ADD = VIEW_ONLY | {AccessAttempt, OIDCIdentity}
REGISTERED = sorted(admin.site._registry, key=lambda model: model._meta.label)


def admin_url(model: type[models.Model], view: str, *args: Any) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def changeform_data(response: Any, **changes: Any) -> dict[str, Any]:
    """The admin form of `response` (main form, inline formsets and their
    management forms) as POST data, as a browser would send it, then `changes`."""
    forms = [response.context["adminform"].form]
    for inline in response.context["inline_admin_formsets"]:
        forms += [inline.formset.management_form, *inline.formset.forms]
    data: dict[str, Any] = {}
    for form in forms:
        for bound in form:
            data.update(_posted(bound))
    data.update(changes)
    return {name: value for name, value in data.items() if value is not None}


def _posted(bound: Any) -> dict[str, Any]:
    value = bound.value()
    widget = bound.field.widget
    if isinstance(widget, MultiWidget):  # the admin's split date and time
        parts = widget.decompress(value)
        return {f"{bound.html_name}_{i}": "" if part is None else str(part) for i, part in enumerate(parts)}
    if value is True:
        return {bound.html_name: "on"}
    if value is False or value is None:
        return {}
    if isinstance(value, list | tuple):
        return {bound.html_name: [str(item) for item in value]}
    return {bound.html_name: str(value)}


@pytest.fixture
def one_of_each(propose, agent, lead):
    """At least one row of every registered model."""
    action = propose()
    services.approve(action.pk, lead, comment="Fine.")
    Execution.objects.create(action=action)
    issue_key(agent, actor=Actor.system(), label="production")
    PromotionPolicy.for_department(None)
    TierChange.objects.create(
        grant=action.grant, from_tier="contributor", to_tier="executor", reason="promoted", explanation="95 of 100."
    )
    Alert.objects.create(
        kind=AlertKind.BLOCKED_PROPOSALS,
        severity=AlertSeverity.WARNING,
        department=agent.department,
        agent=agent,
        key=f"blocked_proposals:{agent.pk}",
        message="Refund Bot was refused 12 times in 10 minutes.",
    )
    GatewayState.current()
    services.set_notification_mode(lead, "hourly")
    Group.objects.create(name="Approvers")
    SlackIdentity.objects.create(slack_user_id="U0LENA", user=lead, email=lead.email)
    forge_checkpoint(seq=1, hash="0" * 64, purged_count=1, archive="audit-archive/1.jsonl.gz")
    AccessAttempt.objects.create(
        username="mallory", ip_address="203.0.113.9", user_agent="curl", http_accept="*/*", path_info="/login/",
        get_data="", post_data="username=mallory", failures_since_start=5,
    )  # fmt: skip
    OIDCIdentity.objects.create(user=lead, issuer="https://id.example.com", subject="ext-001")
    RoleMapping.objects.create(claim="groups", value="finance-leads", role=Role.LEAD, department=agent.department)
    return action


@pytest.mark.parametrize("model", REGISTERED, ids=lambda model: model._meta.label)
def test_it_lists_every_model(admin_client, one_of_each, model):
    assert admin_client.get(admin_url(model, "changelist")).status_code == 200


@pytest.mark.parametrize("model", REGISTERED, ids=lambda model: model._meta.label)
def test_it_opens_the_page_of_a_row_of_every_model(admin_client, one_of_each, model):
    row = model._default_manager.first()
    assert row is not None, f"one_of_each should create a {model._meta.label}"
    response = admin_client.get(admin_url(model, "change", row.pk))
    assert response.status_code == 200


@pytest.mark.parametrize("model", REGISTERED, ids=lambda model: model._meta.label)
def test_it_opens_the_add_page_only_where_adding_by_hand_is_allowed(admin_client, model):
    response = admin_client.get(admin_url(model, "add"))
    assert response.status_code == (403 if model in NO_ADD else 200)


@pytest.mark.parametrize("model", sorted(VIEW_ONLY, key=lambda model: model._meta.label))
def test_it_refuses_to_change_or_delete_rows_written_by_services(admin_client, one_of_each, model):
    row = model._default_manager.first()
    assert admin_client.post(admin_url(model, "change", row.pk), {}).status_code == 403
    assert admin_client.get(admin_url(model, "delete", row.pk)).status_code == 403


def test_it_shows_action_pages_read_only(admin_client, one_of_each):
    response = admin_client.get(admin_url(Action, "change", one_of_each.pk))
    assert response.context["has_change_permission"] is False
    assert response.context["adminform"].form.fields == {}
    assert b"lena-lead" in response.content  # the decision, inline


def test_it_offers_no_add_change_or_delete_for_audit_events(admin_client, one_of_each):
    event = AuditEvent.objects.first()
    model_admin = admin.site._registry[AuditEvent]
    response = admin_client.get(admin_url(AuditEvent, "changelist"))
    request = response.wsgi_request
    assert not model_admin.has_add_permission(request)
    assert not model_admin.has_change_permission(request, event)
    assert not model_admin.has_delete_permission(request, event)
    assert "delete_selected" not in model_admin.get_actions(request)
    assert admin_client.post(admin_url(AuditEvent, "delete", event.pk), {"post": "yes"}).status_code == 403
    assert AuditEvent.objects.filter(pk=event.pk).exists()


def test_it_allows_adding_the_gateway_state_only_while_there_is_none(admin_client, db):
    assert admin_client.get(admin_url(GatewayState, "add")).status_code == 200
    GatewayState.current()
    assert admin_client.get(admin_url(GatewayState, "add")).status_code == 403
    assert admin_client.get(admin_url(GatewayState, "delete", 1)).status_code == 403


def test_it_lists_actions_in_a_fixed_number_of_queries(admin_client, propose):
    def queries_to_list() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert admin_client.get(admin_url(Action, "changelist")).status_code == 200
        return len(captured)

    propose()
    one = queries_to_list()
    propose(), propose(), propose()
    assert queries_to_list() == one
