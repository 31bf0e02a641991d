"""The one JSON shape of an action: the agent API's answer (approvals.api) and
the body of a decision callback (approvals.dispatch.callbacks) are both this.
It sits below both so that a callback, written inside a state change, shows the
action exactly as GET /api/v1/actions/<id>/ does, without importing the API."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from approvals.models import Action, ActionType, Decision, Execution


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
