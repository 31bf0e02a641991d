"""The agent API. Thin: validate, call approvals.services, represent.

Every error has the shape of approvals.api.errors; every view is scoped to
the authenticated agent's own actions (another agent's action is a 404).
"""

from __future__ import annotations

import logging
from typing import Any, cast
from uuid import UUID

from asgiref.sync import sync_to_async
from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.pagination import PageNumberPagination
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import BaseThrottle
from rest_framework.views import APIView

from agents.authentication import AgentKeyAuthentication
from agents.models import Agent, AgentKey
from approvals import services
from approvals.api import (
    parking,
    proposals,
    schema,  # noqa: F401  (registers the auth scheme with drf-spectacular)
    waiting,
)
from approvals.api.errors import ApiError, LimitedJSONParser, error_body
from approvals.api.serializers import (
    ActionSerializer,
    ActionTypeRegistrationSerializer,
    ActionTypeSerializer,
    ErrorSerializer,
    MeSerializer,
    PaginatedActionListSerializer,
    ProposalSerializer,
    ResultSerializer,
)
from approvals.api.throttle import AgentRateThrottle
from approvals.autonomy import metrics
from approvals.models import Action, Executor, PromotionPolicy, Verdict
from approvals.rules.lifecycle import IllegalTransition, Status
from approvals.services import action_types

log = logging.getLogger(__name__)

MAX_WAIT_SECONDS = 60
ERRORS = {code: ErrorSerializer for code in (400, 401, 403, 404, 409, 413, 415, 429, 503)}


class AgentAPIView(APIView):
    authentication_classes = [AgentKeyAuthentication]
    permission_classes = [IsAuthenticated]
    throttle_classes = [AgentRateThrottle]
    parser_classes = [LimitedJSONParser]

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        _declare_body_length(request._request)
        super().initial(request, *args, **kwargs)

    @property
    def agent(self) -> Agent:
        """The agent whose key signed this request."""
        # AgentKeyAuthentication, these views' only authenticator, puts the key's agent in
        # request.user, and IsAuthenticated turns away a request without one before any
        # handler runs. The stubs type request.user as a Django user, which it never is here.
        return cast(Agent, self.request.user)

    def own_action(self, pk: UUID) -> Action:
        action = (
            Action.objects.select_related("action_type")
            .prefetch_related("decisions", "executions")
            .filter(pk=pk, agent=self.agent)
            .first()
        )
        if action is None:
            raise ApiError(404, "not_found", "No such action among yours.")
        return action

    def represent(self, action: Action, code: int = status.HTTP_200_OK, *, new: bool = False) -> Response:
        return Response(self.representation(action, new=new), status=code)

    def representation(self, action: Action, *, new: bool = False) -> dict[str, Any]:
        """`new`: a proposal just taken, which has no decisions or executions to read yet."""
        return ActionSerializer(action, context={"request": self.request, "new": new}).data


def _declare_body_length(request: HttpRequest) -> None:
    """DRF parses no body that comes without a Content-Length (a chunked one):
    it would read as empty, and a proposal as missing every field. Under ASGI
    such a body has arrived whole by now; declare its length, so it is parsed,
    and refused with 413 past the limit, like any other."""
    if request.META.get("CONTENT_LENGTH") or request.method in ("GET", "HEAD", "OPTIONS"):
        return
    body = request.body
    if body:
        request.META["CONTENT_LENGTH"] = str(len(body))


class ActionListView(AgentAPIView):
    @extend_schema(
        summary="List your actions",
        operation_id="v1_actions_list",  # a page object, not an array: name it as the list it is
        parameters=[
            OpenApiParameter(
                "status",
                str,
                enum=[*Status.values, ""],
                description="Only actions in this status; empty or left out, all of them.",
            ),
        ],
        responses={200: PaginatedActionListSerializer, **ERRORS},
    )
    def get(self, request: Request) -> Response:
        actions = Action.objects.filter(agent=self.agent).select_related("action_type")
        wanted = request.query_params.get("status")
        if wanted:
            if wanted not in Status.values:
                raise ApiError(400, "invalid", f"Unknown status '{wanted}'.", fields={"status": ["Unknown status."]})
            actions = actions.filter(status=wanted)
        paginator = PageNumberPagination()
        page = paginator.paginate_queryset(
            actions.prefetch_related("decisions", "executions").order_by("-created_at"), request, view=self
        )
        return paginator.get_paginated_response(ActionSerializer(page, many=True, context={"request": request}).data)

    @extend_schema(
        summary="Propose an action",
        request=ProposalSerializer,
        parameters=[OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER, required=False)],
        responses={201: ActionSerializer, 200: ActionSerializer, **ERRORS},
        description="201: a new action with the policy's verdict (`approved`, `pending` or `shadowed`). "
        "200: a replay of an earlier proposal with the same idempotency key and body. "
        "403: blocked by the policy (`error.code` is `not_granted`, `agent_suspended`, `gateway_paused` or "
        "`limit_exceeded`); the proposal is stored all the same. 409: same key, different body. "
        "400 `amount_mismatch`: a declared `amount` other than the one read from the payload.",
    )
    def post(self, request: Request) -> Response:
        # request.auth is the AgentKey that AgentKeyAuthentication returned with the agent.
        key = cast(AgentKey, request.auth)
        submitted = proposals.submit(self.agent, key, request.data, header_key=request.headers.get("Idempotency-Key"))
        if not submitted.created:
            return self._answer(self.own_action(submitted.action.pk), status.HTTP_200_OK)
        # New: no decisions or executions yet, so answer without reading it back.
        return self._answer(submitted.action, status.HTTP_201_CREATED, new=True)

    def _answer(self, action: Action, code: int, *, new: bool = False) -> Response:
        if action.verdict == Verdict.BLOCKED:
            body = error_body(action.verdict_code, action.verdict_reason, action_id=str(action.pk))
            body["action"] = self.representation(action, new=new)
            return Response(body, status=status.HTTP_403_FORBIDDEN)
        return self.represent(action, code, new=new)


class ActionDetailView(AgentAPIView):
    @extend_schema(
        summary="Read one of your actions, optionally waiting for a verdict",
        parameters=[
            OpenApiParameter(
                "wait",
                {"type": "integer", "minimum": 0, "maximum": MAX_WAIT_SECONDS},
                description=f"Seconds (0 to {MAX_WAIT_SECONDS}) to wait while the action is pending; the answer "
                "comes as soon as it leaves pending.",
            )
        ],
        responses={200: ActionSerializer, **ERRORS},
    )
    def get(self, request: Request, pk: UUID) -> Response:
        wait = self._wait_seconds(request.query_params.get("wait"))
        response = self.represent(self.own_action(pk))
        # A note for action_detail, the async entry point, as throttle_counted is for this view.
        response.wait_seconds = wait  # type: ignore[attr-defined]
        return response

    def get_throttles(self) -> list[BaseThrottle]:
        # A waited GET is answered twice (action_detail): it counts once.
        return [] if getattr(self.request, "throttle_counted", False) else super().get_throttles()

    @staticmethod
    def _wait_seconds(raw: str | None) -> int:
        if raw in (None, ""):
            return 0
        # isdigit() alone takes "²" and "٣", which int() refuses or reads; and
        # int() refuses more than 4,300 digits.
        if not (raw.isascii() and raw.isdigit()) or len(raw) > 9 or int(raw) > MAX_WAIT_SECONDS:
            raise ApiError(
                400,
                "invalid",
                f"wait is a whole number of seconds from 0 to {MAX_WAIT_SECONDS}.",
                fields={"wait": [f"Between 0 and {MAX_WAIT_SECONDS}."]},
            )
        return int(raw)


_detail_view = ActionDetailView.as_view()


@csrf_exempt
async def action_detail(request: HttpRequest, pk: UUID) -> HttpResponse:
    """GET /api/v1/actions/<id>/: the DRF view answers; with ?wait=N and a
    pending action, the request parks on the event loop until the action
    moves or N seconds pass, then is answered again. It parks in front of
    Django's handler (approvals.api.parking), holding no thread; only where
    nothing parks it there (WSGI, the test client) does it wait in here."""
    # The second pass of a parked request was counted by its first.
    request.throttle_counted = parking.waited(request)  # type: ignore[attr-defined]
    response = await sync_to_async(_detail_view)(request, pk=pk)
    wait = getattr(response, "wait_seconds", 0)
    if parking.waited(request) or not wait or response.data.get("status") != Status.PENDING:
        return response
    if parking.ask(request, pk, wait):
        return response  # ParkLongPolls throws it away and parks

    def give_back_connection() -> None:
        connection.close()  # the request thread's: back to the pool while it waits

    await sync_to_async(give_back_connection)()
    await waiting.until_settled(pk, wait, parking.reads_pending(pk))
    request.throttle_counted = True  # type: ignore[attr-defined]
    return await sync_to_async(_detail_view)(request, pk=pk)


# drf-spectacular documents DRF views; show it the view behind the entry point.
action_detail.cls = ActionDetailView  # type: ignore[attr-defined]
action_detail.initkwargs = {}  # type: ignore[attr-defined]


class ActionCancelView(AgentAPIView):
    @extend_schema(summary="Cancel a pending action", request=None, responses={200: ActionSerializer, **ERRORS})
    def post(self, request: Request, pk: UUID) -> Response:
        action = self.own_action(pk)
        try:
            services.cancel(action.pk, self.agent)
        except IllegalTransition as refused:
            raise ApiError(
                409, "not_pending", f"Only a pending action can be cancelled; this one is {action.status}."
            ) from refused
        return self.represent(self.own_action(pk))


class ActionResultView(AgentAPIView):
    @extend_schema(
        summary="Report the outcome of an action you executed",
        request=ResultSerializer,
        responses={200: ActionSerializer, **ERRORS},
    )
    def post(self, request: Request, pk: UUID) -> Response:
        action = self.own_action(pk)
        if action.action_type.executor != Executor.AGENT:
            raise ApiError(
                409, "not_agent_executed", "The gateway carries out this action; its agent does not report the result."
            )
        result = ResultSerializer(data=request.data)
        result.is_valid(raise_exception=True)
        succeeded = result.validated_data["outcome"] == Status.SUCCEEDED
        detail = result.validated_data.get("detail")
        try:
            if result.validated_data["kind"] == "rollback":
                services.report_rollback(action.pk, self.agent, succeeded=succeeded, detail=detail)
            else:
                services.report_result(
                    action.pk, self.agent, succeeded=succeeded, detail=detail, undo=result.validated_data.get("undo")
                )
        except IllegalTransition as refused:
            raise ApiError(409, "invalid_state", _why_not_now(action, result.validated_data["kind"])) from refused
        return self.represent(self.own_action(pk))


def _why_not_now(action: Action, kind: str) -> str:
    if kind == "rollback":
        return f"A rollback result is reported while a rollback is requested; this action is {action.status}."
    if action.status == Status.APPROVED and action.dispatch_after and action.dispatch_after > timezone.now():
        return "This action is in its undo window, where a lead may still veto it: execute it after dispatch_after."
    return f"A result is reported for an approved action; this one is {action.status}."


class ActionTypeRegisterView(AgentAPIView):
    @extend_schema(
        summary="Make an action type known (agent-executed, not granted)",
        request=ActionTypeRegistrationSerializer,
        responses={201: ActionTypeSerializer, 200: ActionTypeSerializer, **ERRORS},
        description="201: created, agent-executed, routed to your department, with no grant: proposals of it are "
        "blocked (`not_granted`) until an admin grants it. 200: it exists already; it is returned unchanged "
        "(an agent never changes an action type). 403 `agent_suspended`: a suspended or retired agent.",
    )
    def post(self, request: Request) -> Response:
        if not isinstance(request.data, dict):
            raise ApiError(400, "invalid", "The body must be a JSON object.")
        body = ActionTypeRegistrationSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        try:
            action_type, created = action_types.register(
                self.agent, data["slug"], data["payload_schema"], name=data["name"], description=data["description"]
            )
        except action_types.InvalidActionType as invalid:
            raise ApiError(400, "invalid", str(invalid), fields=invalid.fields) from invalid
        except action_types.NotActive as inactive:
            raise ApiError(403, "agent_suspended", str(inactive)) from inactive
        answer = ActionTypeSerializer(action_type, context={"agent": self.agent}).data
        return Response(answer, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class MeView(AgentAPIView):
    @extend_schema(
        summary="Who you are: status, grants, tiers, limits, approval rates",
        responses={200: MeSerializer, 401: ErrorSerializer, 429: ErrorSerializer, 503: ErrorSerializer},
    )
    def get(self, request: Request) -> Response:
        agent = self.agent
        policy = PromotionPolicy.for_department(agent.department_id)
        context = {
            "request": request,
            "approval_rates": _approval_rates(agent, policy),
            "no_decisions": {"window_days": policy.window_days, "decisions": 0, "approved": 0, "rate": None},
        }
        return Response(MeSerializer(agent, context=context).data)


def _approval_rates(agent: Agent, policy: PromotionPolicy) -> dict[int, dict[str, Any]]:
    """Per action type, the grant's record as the trust evaluation counts it
    (approvals.autonomy.metrics): over the window, since the grant's last tier change."""
    since = policy.window_start(timezone.now())
    action_types = dict(agent.grants.values_list("pk", "action_type_id"))
    records = metrics.for_grants(dict.fromkeys(action_types, since))
    return {
        action_types[grant_id]: {
            "window_days": policy.window_days,
            "decisions": record.decisions,
            "approved": record.human_approved,
            "rate": record.approval.value,
        }
        for grant_id, record in records.items()
    }
