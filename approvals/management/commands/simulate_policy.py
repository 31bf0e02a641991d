"""Before changing a threshold, see what it would have done: replay one
change over the recorded proposals of the last days (docs/simulator.md).

    python manage.py simulate_policy --grant refund-bot:payments.refund --set auto_approve_max_amount=500
    python manage.py simulate_policy --action-type payments.refund --set risk=high --days 14
    python manage.py simulate_policy --policy finance --set promote_threshold=0.9 --set min_decisions=30 --json

Nothing is changed; the run is recorded in the audit trail (policy.simulated),
in the name of --as USER when given.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from approvals.replay import changes, report
from audit.log import Actor


class Command(BaseCommand):
    help = "Replay a grant, action type or promotion policy change over the recorded proposals; changes nothing."

    def add_arguments(self, parser: CommandParser) -> None:
        target = parser.add_mutually_exclusive_group(required=True)
        target.add_argument("--grant", metavar="AGENT:ACTION_TYPE", help="A grant, e.g. refund-bot:payments.refund.")
        target.add_argument("--action-type", metavar="SLUG", help="An action type, e.g. payments.refund.")
        target.add_argument("--policy", metavar="DEPARTMENT", help="A department's slug, or 'global' for the default.")
        parser.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="FIELD=VALUE",
            help="A proposed value. Grant: "
            + ", ".join(changes.GRANT_FIELDS)
            + ". Action type: risk. Policy: "
            + ", ".join(changes.POLICY_FIELDS)
            + '. "none" empties a limit.',
        )
        parser.add_argument("--days", type=int, default=report.DEFAULT_DAYS, help="Days replayed (default 30).")
        parser.add_argument("--json", action="store_true", help="Print the whole comparison as JSON.")
        parser.add_argument("--as", dest="username", help="Who is simulating, for the audit trail.")

    def handle(self, *args: Any, **options: Any) -> None:
        if not 1 <= options["days"] <= report.MAX_DAYS:
            raise CommandError(f"--days must be between 1 and {report.MAX_DAYS}, not {options['days']}.")
        values = {}
        for item in options["set"]:
            name, equals, value = item.partition("=")
            if not equals or not name.strip():
                raise CommandError(f"--set takes FIELD=VALUE, not {item!r}.")
            values[name.strip()] = value
        if not values:
            raise CommandError("Say what would change: --set FIELD=VALUE, once per field.")
        kind = next(kind for kind in changes.KINDS if options[kind] is not None)
        try:
            change = changes.proposed(kind, options[kind], values)
        except changes.ChangeError as error:
            raise CommandError(str(error)) from error
        if not change.edits:
            raise CommandError("Those are the current values: there is nothing to simulate.")
        result = report.simulate(change, actor=self._actor(options["username"]), days=options["days"])
        if options["json"]:
            self.stdout.write(json.dumps(result.as_dict(), indent=2))
        else:
            self.stdout.write(text(result))

    def _actor(self, username: str | None) -> Actor:
        if not username:
            return Actor.system("simulate_policy command")
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user {username!r}.")
        return Actor.user(user)


def text(result: report.Report) -> str:
    """The comparison in a few lines, for a terminal or a change ticket."""
    data = result.as_dict()
    edits = ", ".join(f"{name} {e['now']} → {e['proposed']}" for name, e in data["change"]["edits"].items())
    lines = [
        f"{data['change']['target']}: {edits}",
        f"Replayed {data['proposals']:,} proposals of {data['grants']:,} grants over {data['window']['days']} days.",
        "",
        f"{'':22}{'recorded':>10}{'replayed':>10}{'change':>10}",
    ]
    for row in result.verdict_rows():
        lines.append(f"{row['words']:22}{row['recorded']:>10,}{row['replayed']:>10,}{row['difference']:>+10,}")
    new = data["newly_auto_approved"]
    cost = new["cost"]["count"]
    lines += ["", f"Newly auto-approved: {new['count']:,}; humans overruled or saw fail {cost:,} of them"]
    lines.append(f"  (the cost: {report.money_words(new['cost']['money'])})")
    for row in result.fate_rows("newly_auto_approved"):
        lines.append(f"  {row['count']:>6,} {row['words']} ({row['money']})")
    held = data["no_longer_auto_approved"]
    if held["count"]:
        lines.append(f"No longer auto-approved: {held['count']:,}, of which humans overruled {held['cost']['count']:,}")
    hours = data["lead_hours"]
    lines.append(
        f"Lead hours saved: {hours['net_saved']:,} net ({hours['decisions_saved']:,} decisions saved, "
        f"{hours['saved']:,} h; {hours['decisions_added']:,} added, {hours['added']:,} h)"
    )
    moves = data["tier_changes"]["replayed"]
    lines += ["", f"Tier changes the trust evaluation would have made: {len(moves)}"]
    for move in moves:
        made = "" if move["automatic"] else " (recommended to a lead)"
        lines.append(f"  {move['at'][:16]} {move['grant']}: {move['from']} → {move['to']}{made}")
    recorded = data["tier_changes"]["recorded"]
    lines.append(f"Tier changes recorded in those days: {len(recorded)}")
    for move in recorded:
        lines.append(f"  {move['at'][:16]} {move['grant']}: {move['from']} → {move['to']}")
    return "\n".join(lines)
