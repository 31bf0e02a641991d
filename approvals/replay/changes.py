"""A proposed change, as the simulator takes it: one grant's tier and limits,
one action type's risk, or one department's promotion policy (or the global
default). Built from an edited, unsaved model instance, so the admin's forms,
the page and the command all validate it the model's way and nothing is saved.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, TypeVar

from django.core.exceptions import ValidationError
from django.db import models

from agents.models import Grant
from approvals.models import ActionType, Department, PromotionPolicy

ModelT = TypeVar("ModelT", bound=models.Model)

GRANT_FIELDS = (
    "tier",
    "max_amount_per_action",
    "max_actions_per_day",
    "max_amount_per_day",
    "auto_approve_max_amount",
    "min_confidence",
)
ACTION_TYPE_FIELDS = ("risk",)
POLICY_FIELDS = (
    "window_days",
    "min_decisions",
    "promote_threshold",
    "demote_threshold",
    "auto_promote",
    "require_lower_bound",
)

KINDS = ("grant", "action_type", "policy")


class ChangeError(Exception):
    """Input the simulator cannot use: an unknown target or an invalid value. The message says which."""


@dataclass(frozen=True)
class Change:
    """What would change. `grant`, `action_type` and `policy` are unsaved
    copies carrying the new values; `department` scopes a policy change
    (None: the global default, for every department without its own)."""

    kind: str
    label: str
    edits: dict[str, tuple[Any, Any]]  # field: (now, proposed)
    grant: Grant | None = None
    action_type: ActionType | None = None
    policy: PromotionPolicy | None = None
    department: Department | None = None
    scope: dict[str, Any] = field(default_factory=dict)  # for the audit event

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "target": self.label,
            "edits": {name: {"now": _text(now), "proposed": _text(new)} for name, (now, new) in self.edits.items()},
        }


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def of_grant(edited: Grant, saved: Grant) -> Change:
    return Change(
        "grant",
        f"{saved.agent.slug} → {saved.action_type.slug}",
        _edits(saved, edited, GRANT_FIELDS),
        grant=edited,
        scope={"department_id": saved.agent.department_id, "agent_id": saved.agent_id},
    )


def of_action_type(edited: ActionType, saved: ActionType) -> Change:
    return Change(
        "action_type",
        saved.slug,
        _edits(saved, edited, ACTION_TYPE_FIELDS),
        action_type=edited,
        scope={"department_id": saved.routing_department_id},
    )


def of_policy(edited: PromotionPolicy, saved: PromotionPolicy) -> Change:
    department = saved.department
    return Change(
        "policy",
        f"promotion policy of {department.name}" if department else "global default promotion policy",
        _edits(saved, edited, POLICY_FIELDS),
        policy=edited,
        department=department,
        scope={"department_id": department.pk if department else None},
    )


def _edits(saved: models.Model, edited: models.Model, names: tuple[str, ...]) -> dict[str, tuple[Any, Any]]:
    return {
        name: (getattr(saved, name), getattr(edited, name))
        for name in names
        if getattr(saved, name) != getattr(edited, name)
    }


# ---------------------------------------------------------------- from typed options (the page and the command)


def find_grant(target: str) -> Grant:
    """`agent-slug:action.type` or a grant's id."""
    grants = Grant.objects.select_related("agent", "action_type")
    if target.isdigit():
        found = grants.filter(pk=int(target)).first()
    elif ":" in target:
        agent, action_type = target.split(":", 1)
        found = grants.filter(agent__slug=agent, action_type__slug=action_type).first()
    else:
        raise ChangeError(f"Name a grant as agent-slug:action.type (or its id), not {target!r}.")
    if found is None:
        raise ChangeError(f"No grant {target!r}.")
    return found


def find_action_type(target: str) -> ActionType:
    found = ActionType.objects.filter(slug=target).first()
    if found is None:
        raise ChangeError(f"No action type {target!r}.")
    return found


def find_policy(target: str) -> PromotionPolicy:
    """A department's slug (its policy: its own, or a new override of the
    default's values), or `global` for the default."""
    if target in ("", "global"):
        return PromotionPolicy.for_department(None)
    department = Department.objects.filter(slug=target).first()
    if department is None:
        raise ChangeError(f"No department {target!r}.")
    policy = PromotionPolicy.for_department(department)
    if policy.department_id != department.pk:
        # Changing a department that follows the default gives it its own policy.
        policy = copy.copy(policy)
        policy.pk, policy.department = None, department
    return policy


def proposed(kind: str, target: str, values: dict[str, str]) -> Change:
    """The Change typed on the page or the command line; ChangeError when it is not a valid one."""
    if kind == "grant":
        grant = find_grant(target)
        return of_grant(_edited(kind, grant, values, GRANT_FIELDS), grant)
    if kind == "action_type":
        action_type = find_action_type(target)
        return of_action_type(_edited(kind, action_type, values, ACTION_TYPE_FIELDS), action_type)
    if kind == "policy":
        policy = find_policy(target)
        return of_policy(_edited(kind, policy, values, POLICY_FIELDS), policy)
    raise ChangeError(f"Say what to change: one of {', '.join(KINDS)}, not {kind!r}.")


def _edited(kind: str, saved: ModelT, values: dict[str, str], names: tuple[str, ...]) -> ModelT:
    """The edited copy, once every name is one this kind of change takes."""
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ChangeError(f"A {kind} change takes {', '.join(names)}; not {', '.join(unknown)}.")
    edited: ModelT = edited_copy(saved, values)
    return edited


def edited_copy(saved: models.Model, values: dict[str, str]) -> Any:
    """An unsaved copy with `values` set, each cleaned by its model field's
    form field ("" or "none" empties a field that may be empty), then checked
    as the model checks itself. ChangeError names every invalid field."""
    edited = copy.copy(saved)
    errors: dict[str, list[str]] = {}
    for name, raw in values.items():
        model_field = saved._meta.get_field(name)
        if not isinstance(model_field, models.Field):  # a relation's other side: nothing one can type
            raise ChangeError(f"{name} is not a field of {saved._meta.verbose_name}.")
        text = "" if raw is None else str(raw).strip()
        if text.lower() == "none" and model_field.null:
            text = ""
        try:
            if isinstance(model_field, models.BooleanField):
                value: Any = _boolean(text)
            else:
                form_field = model_field.formfield()
                if form_field is None:  # a field the admin does not edit (none of the names above)
                    raise ChangeError(f"{name} cannot be typed in.")
                value = form_field.clean(text)
                if value in ("", None) and not model_field.null:
                    raise ValidationError("This field cannot be empty.")
        except ValidationError as error:
            errors[name] = list(error.messages)
            continue
        setattr(edited, name, value)
    if not errors:
        try:
            edited.full_clean(validate_unique=False, validate_constraints=False)
        except ValidationError as error:
            errors.update({name: list(messages) for name, messages in error.message_dict.items()})
    if isinstance(edited, PromotionPolicy) and not errors and edited.demote_threshold > edited.promote_threshold:
        errors["demote_threshold"] = ["The demotion threshold cannot be above the promotion threshold."]
    if errors:
        raise ChangeError("; ".join(f"{name}: {' '.join(messages)}" for name, messages in sorted(errors.items())))
    return edited


def _boolean(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValidationError(f"Say yes or no, not {text!r}.")
