from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from agents import fresh
from agents.models import Agent, Grant
from approvals.dispatch import callbacks
from approvals.models import ActionType
from approvals.representation import ActionSerializer
from approvals.rules.lifecycle import Status


@extend_schema_field({"type": "object", "additionalProperties": True})
class JSONObjectField(serializers.JSONField):
    """A JSON object (never an array, a scalar or null), and documented as one."""

    def to_internal_value(self, data: Any) -> Any:
        value = super().to_internal_value(data)
        if not isinstance(value, dict):
            raise serializers.ValidationError("Must be a JSON object.")
        return value


# Action types by slug, with their routing department: read by every proposal,
# changed rarely; a change reaches every server within a second (agents.fresh).
recent_action_types: fresh.Recent[ActionType] = fresh.Recent()


class RecentActionTypeField(serializers.SlugRelatedField[ActionType]):
    """An action type by its slug, from the per-process cache."""

    def to_internal_value(self, data: Any) -> ActionType:
        if not isinstance(data, str):
            return super().to_internal_value(data)  # DRF's answers to a number, a list, …
        try:
            found = recent_action_types.get(
                data, lambda: ActionType.objects.select_related("routing_department").filter(slug=data).first()
            )
        except (TypeError, ValueError):  # what the database refuses to compare (a NUL character)
            self.fail("invalid")
        if found is None:
            self.fail("does_not_exist", slug_name=self.slug_field, value=data)
        return found


class ProposalSerializer(serializers.Serializer):
    """The body of POST /api/v1/actions/. Unknown top-level fields are refused."""

    action_type = RecentActionTypeField(
        slug_field="slug",
        queryset=ActionType.objects.all(),
        error_messages={"does_not_exist": "No action type '{value}' exists."},
    )
    payload = JSONObjectField(help_text="Matches the action type's JSON Schema.")
    reasoning = serializers.CharField(max_length=20_000, help_text="Why the agent wants this, for the lead.")
    confidence = serializers.FloatField(min_value=0, max_value=1, required=False, allow_null=True)
    amount = serializers.DecimalField(
        max_digits=14,
        decimal_places=2,
        min_value=Decimal(0),
        required=False,
        allow_null=True,
        help_text="Optional. The amount is read from the payload, where the action type says; "
        "when sent, it must be the same (else 400 amount_mismatch).",
    )
    # A field, not Serializer.context: the serializer's metaclass moves declared fields out of
    # the class body, which the stubs cannot see.
    context = JSONObjectField(  # type: ignore[assignment]
        required=False, help_text="Triggering user or ticket, resources touched, agent_version, tokens used, …"
    )
    idempotency_key = serializers.CharField(
        max_length=255, required=False, help_text="Or the Idempotency-Key header. Replays return the original."
    )
    callback_url = serializers.CharField(
        max_length=2000,
        required=False,
        allow_blank=True,
        help_text="Optional. An https URL on a host the gateway allows (CALLBACK_ALLOWED_HOSTS): it gets a signed "
        "POST when the action leaves pending and when its execution ends.",
    )

    def get_fields(self) -> dict[str, serializers.Field]:
        # DRF deep-copies each declared field for every serializer, running each
        # field's __init__ again: 0.3 ms of a proposal's CPU. A shallow copy
        # suffices: binding (field name, parent) is the only state a field takes
        # per serializer, and nothing changes a declared field's validators or
        # messages after start-up.
        return {name: copy.copy(field) for name, field in self._declared_fields.items()}

    def validate_callback_url(self, value: str) -> str:
        error = callbacks.url_error(value) if value else ""
        if error:
            raise serializers.ValidationError(error)
        return value

    def validate_confidence(self, value: float | None) -> Decimal | None:
        return None if value is None else Decimal(str(round(value, 3)))

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(self.initial_data) - set(self.fields)) if isinstance(self.initial_data, dict) else []
        if unknown:
            raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return attrs


class PaginatedActionListSerializer(serializers.Serializer):
    """A page of GET /api/v1/actions/ (PageNumberPagination's envelope)."""

    count = serializers.IntegerField()
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = ActionSerializer(many=True)


class ResultSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(
        choices=["dispatch", "rollback"],
        default="dispatch",
        help_text="`rollback` reports on undoing the action, once a lead asked for it (status rollback_requested).",
    )
    outcome = serializers.ChoiceField(choices=[Status.SUCCEEDED, Status.FAILED])
    detail = serializers.JSONField(required=False, help_text="What happened, for the lead and the audit trail.")
    undo = serializers.JSONField(required=False, help_text="What a rollback would need (reversible action types).")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(self.initial_data) - set(self.fields)) if isinstance(self.initial_data, dict) else []
        if unknown:
            raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return attrs


class ApprovalRateSerializer(serializers.Serializer):
    window_days = serializers.IntegerField()
    decisions = serializers.IntegerField()
    approved = serializers.IntegerField()
    rate = serializers.FloatField(allow_null=True)


class GrantSerializer(serializers.ModelSerializer):
    action_type: serializers.SlugRelatedField[ActionType] = serializers.SlugRelatedField(
        slug_field="slug", read_only=True
    )
    risk = serializers.CharField(source="action_type.risk", read_only=True)
    min_confidence = serializers.FloatField(read_only=True)
    approval_rate = serializers.SerializerMethodField()

    class Meta:
        model = Grant
        fields = [
            "action_type",
            "risk",
            "tier",
            "max_amount_per_action",
            "max_actions_per_day",
            "max_amount_per_day",
            "auto_approve_max_amount",
            "min_confidence",
            "approval_rate",
        ]

    @extend_schema_field(ApprovalRateSerializer)
    def get_approval_rate(self, grant: Grant) -> dict[str, Any]:
        rates = self.context.get("approval_rates", {})
        return rates.get(grant.action_type_id, self.context["no_decisions"])


class MeSerializer(serializers.Serializer):
    slug = serializers.SlugField()
    name = serializers.CharField()
    status = serializers.CharField()
    version = serializers.CharField()
    department = serializers.CharField(source="department.name")
    grants = serializers.SerializerMethodField()

    @extend_schema_field(GrantSerializer(many=True))
    def get_grants(self, agent: Agent) -> list[dict[str, Any]]:
        grants = agent.grants.select_related("action_type").order_by("action_type__slug")
        # many=True builds a ListSerializer (BaseSerializer.__new__), whose data is a list; the
        # stubs type the call as the one-object serializer, whose data is a dict.
        return GrantSerializer(grants, many=True, context=self.context).data  # type: ignore[return-value]


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    # A field, not Serializer.fields: the metaclass moves declared fields out of the class body.
    fields = serializers.DictField(  # type: ignore[assignment]
        child=serializers.ListField(child=serializers.CharField()), required=False
    )


class ErrorSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()


class TextField(serializers.CharField):
    """A JSON string: a number or a boolean is refused, not turned into text."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            raise serializers.ValidationError("Must be a string.")
        return super().to_internal_value(data)


class ActionTypeRegistrationSerializer(serializers.Serializer):
    """The body of POST /api/v1/action-types/. Unknown fields are refused."""

    slug = TextField(max_length=100, help_text="The action type's name, e.g. mcp.files.write_file.")
    payload_schema = JSONObjectField(help_text="JSON Schema of the payload (for a tool: its input schema).")
    name = TextField(max_length=200, required=False, allow_blank=True, default="")
    description = TextField(max_length=20_000, required=False, allow_blank=True, default="")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(self.initial_data) - set(self.fields)) if isinstance(self.initial_data, dict) else []
        if unknown:
            raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return attrs


class ActionTypeSerializer(serializers.ModelSerializer):
    """An action type as an agent sees it: `granted` says whether this agent may propose it."""

    granted = serializers.SerializerMethodField()

    class Meta:
        model = ActionType
        fields = ["slug", "name", "description", "risk", "executor", "payload_schema", "granted"]
        read_only_fields = fields

    def get_granted(self, action_type: ActionType) -> bool:
        return Grant.objects.filter(agent=self.context["agent"], action_type=action_type).exists()
