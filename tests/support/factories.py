from __future__ import annotations

from decimal import Decimal

import factory
from django.contrib.auth import get_user_model

from agents.models import Agent, Grant, Tier
from approvals.models import ActionType, Department, Executor, Risk

PASSWORD = "correct horse battery staple"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.django.Password(PASSWORD)


class AdminFactory(UserFactory):
    """An admin as approvals.reach knows one: staff holding the audit permission."""

    class Meta:
        skip_postgeneration_save = True

    is_staff = True

    @factory.post_generation
    def audit_permission(obj, create, extracted, **kwargs):
        from django.contrib.auth.models import Permission

        obj.user_permissions.add(Permission.objects.get(codename="view_auditevent", content_type__app_label="audit"))


class DepartmentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Department
        django_get_or_create = ("slug",)
        skip_postgeneration_save = True

    name = factory.Sequence(lambda n: f"Department {n}")
    slug = factory.Sequence(lambda n: f"department-{n}")

    @factory.post_generation
    def leads(obj, create, extracted, **kwargs):
        if create and extracted:
            obj.leads.add(*extracted)

    @factory.post_generation
    def backup_approvers(obj, create, extracted, **kwargs):
        if create and extracted:
            obj.backup_approvers.add(*extracted)


class ActionTypeFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ActionType
        django_get_or_create = ("slug",)

    slug = factory.Sequence(lambda n: f"things.do_{n}")
    name = factory.LazyAttribute(lambda t: t.slug.replace(".", " ").replace("_", " ").capitalize())
    risk = Risk.LOW
    executor = Executor.AGENT
    reversible = True
    reversal_window_minutes = 60
    payload_schema = factory.LazyFunction(
        lambda: {
            "type": "object",
            "properties": {
                "note": {"type": "string"},
                "count": {"type": "integer", "minimum": 0},
                "amount": {"type": "number", "minimum": 0},
            },
            "additionalProperties": False,
        }
    )
    amount_path = ""  # moves no money; ActionTypeFactory(money=True) reads it from payload["amount"]

    class Params:
        money = factory.Trait(amount_path="amount")


class AgentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Agent
        django_get_or_create = ("slug",)

    slug = factory.Sequence(lambda n: f"agent-{n}")
    name = factory.LazyAttribute(lambda a: a.slug.replace("-", " ").title())
    owner = factory.SubFactory(UserFactory)
    department = factory.SubFactory(DepartmentFactory)
    purpose = "Does things for tests."
    version = "1.0"


class GrantFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Grant

    agent = factory.SubFactory(AgentFactory)
    action_type = factory.SubFactory(ActionTypeFactory)
    tier = Tier.CONTRIBUTOR
    min_confidence = Decimal("0.8")
