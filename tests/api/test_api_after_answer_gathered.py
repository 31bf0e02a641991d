"""What the door's requests leave for after their answers goes out gathered
(approvals.after_answer.Gathering): the items of one window of an event
loop together and the next window's apart; the routing of proposals
answered together as one `route_actions` task, each routed once; their live
updates in one group send."""

from __future__ import annotations

import contextvars
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from approvals import after_answer, enqueue, live, tasks
from approvals.after_answer import Gathering
from approvals.models import Action
from audit.models import AuditEvent
from tests.api.test_api_keys import new_key
from tests.api.test_api_proposals import ACTIONS, granted, refund
from tests.support.servers import await_for, wait_for


@pytest.fixture
def queued(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Each list route_actions is queued with, and then run on (in-process)."""
    lists: list[list[str]] = []
    run = tasks.route_actions

    def delay(action_ids: list[str]) -> None:
        lists.append(list(action_ids))
        run(action_ids)

    monkeypatch.setattr(tasks.route_actions, "delay", delay)
    return lists


@pytest.mark.embedded
async def test_the_items_of_one_window_go_out_together_and_the_next_windows_apart():
    sent: list[list[str]] = []

    async def send(items: list[str]) -> None:
        sent.append(items)

    gathering = Gathering(send)

    for item in ("a", "b", "c"):  # nothing in between yields to the loop: one window
        await gathering.add(item)
    assert sent == []  # not before the window closes
    await await_for(lambda: sent, what="the first window's task")
    await gathering.add("d")
    await await_for(lambda: len(sent) == 2, what="the second window's task")

    assert sent == [["a", "b", "c"], ["d"]]


@pytest.mark.embedded
async def test_what_is_gathered_goes_out_in_no_request_s_context():
    request = contextvars.ContextVar("request", default=None)
    seen: list[object] = []

    async def send(items: list[str]) -> None:
        seen.append(request.get())

    gathering = Gathering(send)
    request.set("the first request's")
    await gathering.add("a")
    await await_for(lambda: seen, what="the send")

    assert seen == [None]


@pytest.mark.embedded
async def test_the_live_updates_of_requests_answered_together_go_in_one_group_send(monkeypatch):
    sent: list[list[tuple[str, str]]] = []

    class Layer:
        async def group_send_many(self, sends: list[tuple[str, dict[str, Any]]]) -> None:
            sent.append([(group, message["action_id"]) for group, message in sends])

    monkeypatch.setattr(live, "get_channel_layer", Layer)
    answered = []
    for action_id in ("a1", "a2"):  # two requests of the door
        with after_answer.deferring() as pending:
            live.publish_action_proposed(action_id, 7, "pending")
        answered.append(pending)
    for pending in answered:  # their answers out, one after the other
        await pending.run_on_loop()
    await await_for(lambda: sent, what="the group send")

    assert sent == [[("department.7", "a1"), ("department.7", "a2")]]


@pytest.mark.django_db(transaction=True)
def test_proposals_through_the_door_are_each_routed_once_by_the_gathered_task(asgi_server, agent, queued, monkeypatch):
    gathered: list[str] = []
    routing = enqueue.gathering("route_actions")
    add = routing.add

    async def noted(item: str) -> None:
        gathered.append(item)
        await add(item)

    monkeypatch.setattr(routing, "add", noted)
    granted(agent)
    headers = {"Authorization": f"Bearer {new_key(agent)}"}
    with httpx.Client(base_url=asgi_server.url, headers=headers, timeout=10) as client, ThreadPoolExecutor(3) as pool:
        answers = list(pool.map(lambda _: client.post(ACTIONS, json=refund()), range(3)))
    assert [answer.status_code for answer in answers] == [201] * 3, answers[0].text[:300]
    ids = sorted(answer.json()["id"] for answer in answers)

    wait_for(
        lambda: Action.objects.filter(pk__in=ids, routed_at__isnull=False).count() == 3,
        what="the routing of all three",
    )
    assert sorted(gathered) == ids  # on the door's loop, after the answers
    assert sorted(item for each in queued for item in each) == ids  # each queued once, in lists
    assert AuditEvent.objects.filter(verb="action.routed", object_id__in=ids).count() == 3
