"""The models of approvals, one module per concept. Importing the package loads them
all, so Django finds them here and `approvals.models.X` names a model everywhere."""

from __future__ import annotations

from approvals.models.action import Action, ActionQuerySet
from approvals.models.action_type import (
    ActionType,
    Executor,
    PreviewTemplate,
    new_webhook_secret,
    validate_currency_code,
    validate_json_schema,
    validate_payload_path,
)
from approvals.models.callbacks import Callback, CallbackState
from approvals.models.decision import APPROVING, Decision, DecisionQuerySet, DecisionVerdict
from approvals.models.department import Department
from approvals.models.execution import Execution, ExecutionKind, ExecutionOutcome
from approvals.models.gateway import GatewayState
from approvals.models.monitoring import SEVERITY_RANK, Alert, AlertKind, AlertSeverity, Heartbeat
from approvals.models.notifications import (
    DecisionLink,
    NotificationMode,
    NotificationPreference,
    SlackDelivery,
    SlackIdentity,
    SlackMessage,
)
from approvals.models.trust import PromotionPolicy, TierChange
from approvals.vocabulary import Risk, TierChangeReason, Verdict

__all__ = [
    "APPROVING",
    "SEVERITY_RANK",
    "Action",
    "ActionQuerySet",
    "ActionType",
    "Alert",
    "AlertKind",
    "AlertSeverity",
    "Callback",
    "CallbackState",
    "Decision",
    "DecisionLink",
    "DecisionQuerySet",
    "DecisionVerdict",
    "Department",
    "Execution",
    "ExecutionKind",
    "ExecutionOutcome",
    "Executor",
    "GatewayState",
    "Heartbeat",
    "NotificationMode",
    "NotificationPreference",
    "PreviewTemplate",
    "PromotionPolicy",
    "Risk",
    "SlackDelivery",
    "SlackIdentity",
    "SlackMessage",
    "TierChange",
    "TierChangeReason",
    "Verdict",
    "new_webhook_secret",
    "validate_currency_code",
    "validate_json_schema",
    "validate_payload_path",
]
