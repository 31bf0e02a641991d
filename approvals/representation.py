"""The one JSON shape of an action: the agent API's answer (approvals.api) and
the body of a decision callback (approvals.dispatch.callbacks) are both this.
It sits below both so that a callback, written inside a state change, shows the
action exactly as GET /api/v1/actions/<id>/ does, without importing the API.

The serializers' declared fields are the shape (the OpenAPI schema is read
from them); an action is turned into it directly, by `ActionSerializer.
to_representation`, with DRF's own field formatting: DRF's generic walk over
the fields cost more than the rest of a proposal's answer (a test checks that
the two agree, field by field)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from approvals.models import Action, ActionType, Decision, Execution

# DRF's formatting of the values an action holds, as the generic walk applies it.
_moment = serializers.DateTimeField()
_amount = serializers.DecimalField(max_digits=14, decimal_places=2)


def _when(value: Any) -> str | None:
    return None if value is None else _moment.to_representation(value)


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _decision(decision: Decision) -> dict[str, Any]:
    return {
        "verdict": str(decision.verdict),
        "comment": str(decision.comment),
        "decided_at": _when(decision.created_at),
        "payload_digest": str(decision.payload_digest),
    }


def _execution(execution: Execution) -> dict[str, Any]:
    return {
        "kind": str(execution.kind),
        "attempt": int(execution.attempt),
        "outcome": str(execution.outcome),
        "started_at": _when(execution.started_at),
        "finished_at": _when(execution.finished_at),
        "error": str(execution.error),
    }


class DecisionSerializer(serializers.ModelSerializer):
    decided_at = serializers.DateTimeField(source="created_at")
    payload_digest = serializers.CharField(
        read_only=True, help_text="An approval's: sha256 of the canonical JSON of the payload it approved; else empty."
    )

    class Meta:
        model = Decision
        fields = ["verdict", "comment", "decided_at", "payload_digest"]


class ExecutionSerializer(serializers.ModelSerializer):
    class Meta:
        model = Execution
        fields = ["kind", "attempt", "outcome", "started_at", "finished_at", "error"]


class PolicySerializer(serializers.Serializer):
    verdict = serializers.CharField()
    code = serializers.CharField()
    reason = serializers.CharField()


class ActionSerializer(serializers.ModelSerializer):
    """An action as its agent sees it."""

    action_type: serializers.SlugRelatedField[ActionType] = serializers.SlugRelatedField(
        slug_field="slug", read_only=True
    )
    executor = serializers.CharField(
        source="action_type.executor",
        read_only=True,
        help_text="Who carries the action out once approved: `agent` (you, then report) or `webhook` (the "
        "gateway: never do it yourself).",
    )
    confidence = serializers.FloatField(read_only=True, allow_null=True)
    policy = serializers.SerializerMethodField()
    decisions = DecisionSerializer(many=True, read_only=True)
    executions = ExecutionSerializer(many=True, read_only=True)
    url = serializers.SerializerMethodField()

    class Meta:
        model = Action
        fields = [
            "id",
            "action_type",
            "executor",
            "status",
            "payload",
            "approved_payload",
            "reasoning",
            "confidence",
            "amount",
            "context",
            "idempotency_key",
            "policy",
            "decisions",
            "executions",
            "created_at",
            "decided_at",
            "dispatch_after",
            "expires_at",
            "url",
        ]
        read_only_fields = fields

    def to_representation(self, action: Action) -> dict[str, Any]:
        new = self.context.get("new", False)  # a proposal just taken: no decisions or executions to read
        return {
            "id": str(action.pk),
            "action_type": action.action_type.slug,
            "executor": str(action.action_type.executor),
            "status": str(action.status),
            "payload": action.payload,
            "approved_payload": action.approved_payload,
            "reasoning": str(action.reasoning),
            "confidence": None if action.confidence is None else float(action.confidence),
            "amount": None if action.amount is None else _amount.to_representation(action.amount),
            "context": action.context,
            "idempotency_key": _text(action.idempotency_key),
            "policy": {
                "verdict": str(action.verdict),
                "code": str(action.verdict_code),
                "reason": str(action.verdict_reason),
            },
            "decisions": [] if new else [_decision(decision) for decision in action.decisions.all()],
            "executions": [] if new else [_execution(execution) for execution in action.executions.all()],
            "created_at": _when(action.created_at),
            "decided_at": _when(action.decided_at),
            "dispatch_after": _when(action.dispatch_after),
            "expires_at": _when(action.expires_at),
            "url": self.get_url(action),
        }

    def generic_representation(self, action: Action) -> dict[str, Any]:
        """DRF's walk over the declared fields: what `to_representation` must equal (tests)."""
        return dict(super().to_representation(action))

    @extend_schema_field(PolicySerializer)
    def get_policy(self, action: Action) -> dict[str, str]:
        return PolicySerializer(
            {"verdict": action.verdict, "code": action.verdict_code, "reason": action.verdict_reason}
        ).data

    @extend_schema_field(serializers.URLField)
    def get_url(self, action: Action) -> str:
        path = f"/api/v1/actions/{action.pk}/"
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request is not None else path
