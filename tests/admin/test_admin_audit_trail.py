"""Admin edits of configuration write their audit events: who, what, before and
after, in the transaction of the edit, and never a secret's value."""

from __future__ import annotations

import json

import pytest

from approvals.models import ActionType, Department, PromotionPolicy, Risk
from audit.models import AuditEvent
from tests.admin.test_admin_pages import admin_url, changeform_data
from tests.support.factories import ActionTypeFactory, DepartmentFactory, UserFactory


@pytest.fixture
def action_type(department):
    return ActionTypeFactory(slug="payments.refund", name="Refund", risk=Risk.LOW, routing_department=department)


def recorded_changes():
    # Logging in to the admin is recorded too; these tests look at the edits.
    return AuditEvent.objects.exclude(verb__startswith="auth.")


def edit(client, obj, **changes):
    """Open the object's admin page and save it with `changes`."""
    url = admin_url(type(obj), "change", obj.pk)
    return client.post(url, changeform_data(client.get(url), **changes))


def test_it_records_an_action_type_edit_with_before_and_after(admin_client, admin_user, action_type, department):
    response = edit(admin_client, action_type, risk=Risk.HIGH, name="Refund a payment")
    assert response.status_code == 302
    event = AuditEvent.objects.get(verb="action_type.changed")
    assert event.before == {"risk": "low", "name": "Refund"}
    assert event.after == {"risk": "high", "name": "Refund a payment"}
    assert (event.actor_kind, event.actor_label) == ("user", admin_user.username)
    assert (event.object_id, event.department_id) == (str(action_type.pk), department.pk)


def test_it_records_nothing_when_nothing_changed(admin_client, action_type):
    assert edit(admin_client, action_type).status_code == 302
    assert not AuditEvent.objects.filter(verb="action_type.changed").exists()


def test_it_records_a_new_action_type_without_its_webhook_secret(admin_client, department):
    url = admin_url(ActionType, "add")
    data = changeform_data(admin_client.get(url), slug="email.send_external", name="Send email", risk=Risk.MEDIUM)
    assert admin_client.post(url, data).status_code == 302
    created = ActionType.objects.get(slug="email.send_external")
    event = AuditEvent.objects.get(verb="action_type.created")
    assert event.after["slug"] == "email.send_external"
    assert event.after["webhook_secret"] == "(hidden)"
    assert created.webhook_secret not in json.dumps(event.after)


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ('{"type": "nonsense"}', "Not a valid JSON Schema"),
        ('{"type": "object",', "This is not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
    ],
)
def test_it_refuses_an_invalid_payload_schema_and_saves_nothing(admin_client, action_type, schema, message):
    response = edit(admin_client, action_type, payload_schema=schema, name="Changed")
    assert response.status_code == 200
    assert message in " ".join(response.context["adminform"].form.errors["payload_schema"])
    action_type.refresh_from_db()
    assert action_type.name == "Refund"
    assert not recorded_changes().exists()


def test_it_saves_an_emptied_schema_as_accept_anything(admin_client, action_type):
    assert edit(admin_client, action_type, payload_schema="").status_code == 302
    action_type.refresh_from_db()
    assert action_type.payload_schema == {}


def test_it_shows_the_webhook_secret_but_does_not_take_it_from_the_form(admin_client, action_type):
    url = admin_url(ActionType, "change", action_type.pk)
    page = admin_client.get(url)
    assert action_type.webhook_secret in page.content.decode()
    admin_client.post(url, changeform_data(page, webhook_secret="typed-by-hand"))
    action_type.refresh_from_db()
    assert action_type.webhook_secret != "typed-by-hand"


def test_it_regenerates_a_webhook_secret_and_records_that_it_changed_not_its_value(admin_client, action_type):
    old = action_type.webhook_secret
    admin_client.post(
        admin_url(ActionType, "changelist"),
        {"action": "regenerate_webhook_secret", "_selected_action": [action_type.pk]},
    )
    action_type.refresh_from_db()
    assert action_type.webhook_secret != old
    event = AuditEvent.objects.get(verb="action_type.webhook_secret_regenerated")
    trail = json.dumps([event.before, event.after])
    assert old not in trail and action_type.webhook_secret not in trail


def test_it_records_who_became_a_department_lead(admin_client, department):
    newcomer = UserFactory(username="nina-new")
    edit(admin_client, department, leads=[str(user.pk) for user in [*department.leads.all(), newcomer]])
    event = AuditEvent.objects.get(verb="department.changed")
    assert event.before == {"leads": ["lena-lead", "omar-lead"]}
    assert event.after == {"leads": ["lena-lead", "nina-new", "omar-lead"]}
    assert event.department_id == department.pk


def test_it_records_a_deletion_with_what_was_deleted(admin_client, db):
    department = DepartmentFactory(name="Legal", slug="legal")
    response = admin_client.post(admin_url(Department, "delete", department.pk), {"post": "yes"})
    assert response.status_code == 302
    event = AuditEvent.objects.get(verb="department.deleted")
    assert (event.object_id, event.object_label) == (str(department.pk), "Legal")
    assert event.before["slug"] == "legal"
    assert event.after is None


def test_it_records_deletions_through_the_delete_selected_action(admin_client, db):
    legal, sales = DepartmentFactory(slug="legal"), DepartmentFactory(slug="sales")
    admin_client.post(
        admin_url(Department, "changelist"),
        {"action": "delete_selected", "_selected_action": [legal.pk, sales.pk], "post": "yes"},
    )
    assert not Department.objects.filter(pk__in=[legal.pk, sales.pk]).exists()
    deleted = AuditEvent.objects.filter(verb="department.deleted").values_list("object_id", flat=True)
    assert sorted(deleted) == sorted([str(legal.pk), str(sales.pk)])


def test_it_records_a_promotion_policy_edit(admin_client, db):
    policy = PromotionPolicy.for_department(None)
    assert edit(admin_client, policy, promote_threshold="0.970").status_code == 302
    event = AuditEvent.objects.get(verb="promotion_policy.changed")
    assert (event.before, event.after) == ({"promote_threshold": "0.950"}, {"promote_threshold": "0.970"})


def test_it_explains_promotion_thresholds_that_contradict_each_other(admin_client, db):
    policy = PromotionPolicy.for_department(None)
    response = edit(admin_client, policy, promote_threshold="0.800", demote_threshold="0.900")
    errors = response.context["adminform"].form.errors
    assert errors["demote_threshold"] == ["The demotion threshold cannot be above the promotion threshold."]
    assert not recorded_changes().exists()


def test_it_explains_that_a_scope_has_its_policy_already(admin_client, department):
    PromotionPolicy.objects.create(department=department)
    url = admin_url(PromotionPolicy, "add")
    response = admin_client.post(url, changeform_data(admin_client.get(url), department=str(department.pk)))
    assert "already has a promotion policy" in response.context["adminform"].form.errors["department"][0]
