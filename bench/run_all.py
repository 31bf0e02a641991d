"""Every benchmark, one command, one table.

    .venv/bin/python bench/run_all.py [--quick] [--json var/bench/results.json] [--only intake,policy,...]

Runs the benches below one after the other, each in a subprocess of its own
(each sets Django up in-process on its own database, Redis database and
variables, which one process can do only once), with a clean environment
(PATH, HOME and the locale), so none inherits a DATABASE_URL meant for
something else. Each bench writes its numbers with `--json`; this reads them
and prints one table - row, measured, target, met? - and writes the same, with
every bench's raw numbers, to the JSON file.

Default: each bench with its own defaults (about 20 minutes on 2 cores).
`--quick`: shorter windows and fewer repeats, the same stack and data (a
million actions for the trust evaluation, 10,000 pending for /queue/); 4-8
minutes, depending on what else the machine runs. A bench that fails or
outlives its time limit shows as failed rows with the reason; the others
still run, and the exit status is 1.

Each bench's own output is echoed (indented) and kept in a log next to the
JSON file (var/bench/logs/<bench>.log by default; var/ is git-ignored).
Needs PostgreSQL and Redis on 127.0.0.1 and Chromium at /usr/bin/chromium,
as the benches themselves do.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_JSON = ROOT / "var" / "bench" / "results.json"
STOP_GRACE_S = 30  # after SIGINT, how long a bench may take to stop its own servers and workers
REASON_CHARS = 200  # of a failed bench's last line, in its rows: the whole of it is in its log


# ---------------------------------------------------------------- the benches


@dataclass(frozen=True)
class Bench:
    name: str
    command: tuple[str, ...]  # the script and its arguments, for both modes
    quick: tuple[str, ...]  # added with --quick
    limit_s: tuple[float, float]  # time limit: (quick, full)


BENCHES = (
    Bench("policy", ("bench/policy_bench.py",), ("--calls", "50000"), (120, 300)),
    # The policy has its own subprocess above, so a failing server cannot take its row down too.
    Bench(
        "intake",
        ("bench/api_bench.py", "--workers", "2", "--policy-calls", "0"),
        ("--duration", "8", "--warmup", "2", "--serial-duration", "3", "--rounds", "1", "--quiet-wait", "10"),
        (300, 1200),
    ),
    Bench(
        "queue_live", ("bench/queue_bench.py", "live", "--browser"), ("--proposals", "40", "--gap", "0.3"), (300, 600)
    ),
    Bench("fanout", ("bench/fanout_bench.py",), ("--proposals", "15"), (300, 600)),
    Bench("dispatch", ("bench/dispatch_bench.py",), ("--approvals", "50"), (300, 600)),
    # After queue_live, which empties the queue: the page bench seeds its 10,000 pending again.
    Bench("queue_page", ("bench/queue_bench.py", "page"), ("--repeat", "20"), (300, 900)),
    Bench(
        "audit", ("bench/audit_bench.py",), ("--events", "150000", "--rounds", "1", "--proposals", "400"), (300, 1200)
    ),
    # Seeds its million actions once (about a minute) and reuses them after.
    Bench("trust", ("bench/trust_bench.py",), ("--repeat", "5"), (420, 1200)),
    # Seeds its own million actions once (about two minutes) and reuses them after.
    Bench("replay", ("bench/replay_bench.py",), ("--repeat", "1"), (420, 1200)),
    Bench("waiters", ("bench/waiters_bench.py",), ("--idle", "5"), (300, 600)),
    Bench("disconnect", ("bench/disconnect_bench.py",), ("--watch", "15"), (300, 600)),
)


# ---------------------------------------------------------------- the rows


Reading = tuple[str, bool | None]  # what was measured, as text; whether it met the target (None: no target)


@dataclass(frozen=True)
class Row:
    label: str
    bench: str
    target: str
    read: Callable[[dict[str, Any]], Reading]  # the bench's JSON -> the row


def _ms(value: float) -> str:
    return f"{value:,.0f} ms" if value >= 100 else f"{value:.1f} ms"


def _first_run(results: dict[str, Any]) -> dict[str, Any]:
    return results["runs"][0]


def _intake_row(endpoint: dict[str, Any]) -> str:
    errors = f", {endpoint['errors']} errors" if endpoint["errors"] else ""
    return (
        f"{endpoint['rate']:,.0f}/s, p50 {_ms(endpoint['p50_ms'])}, p99 {_ms(endpoint['p99_ms'])}, "
        f"{endpoint['cpu_ms_per_request']['serving']:.1f} ms CPU/req, serial p50 {_ms(endpoint['serial_p50_ms'])}"
        f"{errors}"
    )


def intake_api(results: dict[str, Any]) -> Reading:
    return _intake_row(_first_run(results)["api"]), None


def intake_hand(results: dict[str, Any]) -> Reading:
    return _intake_row(_first_run(results)["hand"]), None


def intake_bare(results: dict[str, Any]) -> Reading:
    return _intake_row(_first_run(results)["bare"]), None


def intake_cpu_ratio(results: dict[str, Any]) -> Reading:
    """CPU per request (server + PostgreSQL + Redis): throughput swings with how connections split between workers."""
    run = _first_run(results)
    api, hand = (run[name]["cpu_ms_per_request"]["serving"] for name in ("api", "hand"))
    return f"{run['cpu_api_hand']:.2f}x ({api:.1f} / {hand:.1f} ms)", run["cpu_api_hand"] <= 2


def intake_serial(results: dict[str, Any]) -> Reading:
    run = _first_run(results)
    p50 = run["api"]["serial_p50_ms"]
    return f"{_ms(p50)} (hand-written {_ms(run['hand']['serial_p50_ms'])})", p50 < 6


def policy_p99(results: dict[str, Any]) -> Reading:
    return (
        f"{results['p99_us']:.1f} µs (p50 {results['p50_us']:.1f} µs, {results['calls']:,} calls)",
        results["p99_us"] < 100,
    )


def _latency(series: dict[str, Any]) -> str:
    return f"p50 {_ms(series['p50_ms'])}, p95 {_ms(series['p95_ms'])}"


def post_to_browser(results: dict[str, Any]) -> Reading:
    dom = results.get("browser_dom")
    if not dom or not dom["n"]:
        raise ValueError("no row reached the Chromium page")
    return f"{_latency(dom)} ({dom['n']} proposals, {results['leads']} leads connected)", dom["p95_ms"] < 100


def post_to_sockets(results: dict[str, Any]) -> Reading:
    pairs, missing = results["all_pairs"], results["missing"]
    lost = f", {missing} never arrived" if missing else ""
    return f"{_latency(pairs)} ({pairs['n']:,} (proposal, lead) pairs{lost})", pairs["p95_ms"] < 100 and not missing


def post_to_a_thousand_sockets(results: dict[str, Any]) -> Reading:
    pairs, missing, cpu_ms = results["all_pairs"], results["missing"], results["server_cpu_ms_per_proposal"]
    lost = f", {missing} never arrived" if missing else ""
    return (
        f"{_latency(pairs)} ({pairs['n']:,} pairs{lost}; from the publish p95"
        f" {_ms(results['from_publish']['p95_ms'])}; {cpu_ms:.0f} ms of server CPU each)",
        pairs["p95_ms"] < 250 and not missing,
    )


def queue_groups(results: dict[str, Any]) -> Reading:
    last = results["group_size_after_close"][-1]
    return (
        f"{results['group_size_open']} with {results['leads']:,} sockets open;"
        f" {last['size']} {last['s']:.1f} s after they all closed",
        last["size"] == 0,
    )


def approve_to_dispatch(results: dict[str, Any]) -> Reading:
    latency = results["latency"]
    return f"{_latency(latency)} ({latency['approvals']} approvals)", latency["p95_ms"] < 100


def kill_switch(results: dict[str, Any]) -> Reading:
    switch = results["kill_switch"]
    last_start_ms, after = switch["last_start_ms"], switch["started_after"]
    if last_start_ms is None:  # none had started when the suspension came
        return f"none started before the suspension, {after} after it", after == 0
    return f"last start {last_start_ms:+,.0f} ms from the suspension, {after} after it", last_start_ms <= 1000


def killed_worker(results: dict[str, Any]) -> Reading:
    killed = results["killed_worker"]
    effects = killed["effects"]
    return (
        f"redone {killed['recovered_s']:.1f} s after the kill, {effects} effect{'s' * (effects != 1)}",
        killed["recovered_s"] < 30 and effects == 1,
    )


def queue_page(results: dict[str, Any]) -> Reading:
    first, *_ = cases = results["cases"]
    slowest = max(cases, key=lambda case: case["p95_ms"])
    return (
        f"page 1 {_latency(first)}, {first['queries']} queries; slowest ({slowest['label']}) p95"
        f" {_ms(slowest['p95_ms'])}, {slowest['queries']} queries",
        slowest["p95_ms"] < 100,
    )


def audit_verification(results: dict[str, Any]) -> Reading:
    verification = results["verification"]
    rate = verification["events_per_s"]
    return f"{rate:,.0f} events/s ({verification['events']:,} in {verification['seconds']:.2f} s)", rate >= 300_000


def audit_chaining(results: dict[str, Any]) -> Reading:
    on, off = results["intake_chaining_on"]["rate"], results["intake_chaining_off"]["rate"]
    ratio = results["ratio_on_off"]
    return f"{ratio:.2f} ({on:,.0f} / {off:,.0f} proposals/s)", ratio >= 0.9


def trust_evaluation(results: dict[str, Any]) -> Reading:
    first, following = results["evaluation"]["first_run"], results["evaluation"]["next_run"]
    return (
        f"{first['seconds']:.2f} s ({first['tier_changes']} moves), next run {following['seconds']:.2f} s;"
        f" {results['grants']:,} grants, {results['actions']:,} actions",
        max(first["seconds"], following["seconds"]) < 5,
    )


def simulator_replay(results: dict[str, Any]) -> Reading:
    """The replays of a quarter and a fifth of the fleet (an action type's risk, a department's policy)."""
    replays = results["replays"]
    worst = max(replays["action_type"]["worst_s"], replays["department_policy"]["worst_s"])
    return (
        f"action type {replays['action_type']['worst_s']:.2f} s ({replays['action_type']['proposals']:,} proposals),"
        f" department {replays['department_policy']['worst_s']:.2f} s, one grant {replays['grant']['worst_s']:.2f} s",
        worst < 5,
    )


def agent_page(results: dict[str, Any]) -> Reading:
    page = results["pages"]["agent"]
    return f"{_latency(page)}, {page['queries']} queries", page["p95_ms"] < 200


def parked_waiters(results: dict[str, Any]) -> Reading:
    """The first wave of parked long polls, after the same requests were served at once without a wait."""
    first, burst = results["first"], results["burst"]
    threads = first["threads_added"]
    return (
        f"+{first['rss_added_mb']:.0f} MB RSS, +{threads} threads, idle CPU {first['idle_cpu_percent']:.1f} %"
        f" ({results['waiters']:,} waiters; the same requests at once unparked: +{burst['rss_added_mb']:.0f} MB)",
        first["rss_added_mb"] < 100 and threads < results["waiters"] / 20 and first["idle_cpu_percent"] < 5,
    )


def groups_after_drop(results: dict[str, Any]) -> Reading:
    left = sum(results["left_at_end"].values())
    after_5s = sum(results["after_5s"].values())
    empty = results["empty_after_s"]
    when = f"empty after {empty:.1f} s" if empty is not None else f"{left:,} left after {results['watched_s']:.0f} s"
    return (
        f"{when}; {after_5s:,} left 5 s after ({results['waiters']:,} waiters, {results['sockets']:,} sockets)",
        empty is not None and empty < 10,
    )


# In the order; the last rows of a bench are what it measures besides.
ROWS = (
    Row("intake: API proposals/s, p50 / p99", "intake", "", intake_api),
    Row("intake: the same job written by hand, same server", "intake", "", intake_hand),
    Row("intake: bare one-row insert, same server", "intake", "", intake_bare),
    Row("intake: API CPU per request / hand-written", "intake", "<= 2x", intake_cpu_ratio),
    Row("intake: API serial p50", "intake", "< 6 ms", intake_serial),
    Row("policy decision p99, in-process", "policy", "< 100 µs", policy_p99),
    Row("POST -> row in a browser, 50 leads connected", "queue_live", "p95 < 100 ms", post_to_browser),
    Row("POST -> row on each of the 50 leads' sockets", "queue_live", "p95 < 100 ms", post_to_sockets),
    Row("POST -> row on each of 1,000 leads' sockets", "fanout", "p95 < 250 ms", post_to_a_thousand_sockets),
    Row("queue sockets' members in a department's group", "fanout", "0 after closing", queue_groups),
    Row("approve -> receiver has the dispatch", "dispatch", "p95 < 100 ms", approve_to_dispatch),
    Row("/queue/ server time, 10,000 pending", "queue_page", "p95 < 100 ms", queue_page),
    Row("audit chain verification", "audit", ">= 300,000 events/s", audit_verification),
    Row("trust evaluation, a million actions", "trust", "< 5 s", trust_evaluation),
    Row("kill switch: last dispatch start", "dispatch", "<= +1 s", kill_switch),
    Row("killed worker: dispatch redone", "dispatch", "< 30 s, 1 effect", killed_worker),
    Row("audit: intake chaining on / off", "audit", ">= 0.90", audit_chaining),
    Row("agent page on a million actions", "trust", "p95 < 200 ms", agent_page),
    Row("policy simulator replay, a million actions", "replay", "< 5 s", simulator_replay),
    Row("1,000 parked long polls: memory, threads, idle CPU", "waiters", "< 100 MB, no thread each", parked_waiters),
    Row("groups after 950 waiters + 1,000 pages drop at once", "disconnect", "empty < 10 s", groups_after_drop),
)


# ---------------------------------------------------------------- running a bench


@dataclass
class Outcome:
    bench: str
    command: list[str]
    seconds: float = 0.0
    error: str | None = None  # why there are no numbers
    results: dict[str, Any] = field(default_factory=dict)
    load_before: tuple[float, ...] = ()


def run_bench(bench: Bench, quick: bool, logs: Path) -> Outcome:
    with tempfile.TemporaryDirectory(prefix="run_all-") as tmp:
        results_path = Path(tmp) / "results.json"
        command = [sys.executable, *bench.command, *(bench.quick if quick else ()), "--json", str(results_path)]
        limit_s = bench.limit_s[0 if quick else 1]
        outcome = Outcome(bench.name, command, load_before=_load_average())
        started = time.monotonic()
        returncode, timed_out, tail = _run(command, limit_s, logs / f"{bench.name}.log")
        outcome.seconds = time.monotonic() - started
        if timed_out:
            outcome.error = f"stopped after its {limit_s:.0f} s limit"
        elif returncode != 0:
            outcome.error = f"exit {returncode}: {' '.join(tail.split())[:REASON_CHARS] or 'no output'}"
        elif not results_path.exists():
            outcome.error = "wrote no results"
        else:
            outcome.results = json.loads(results_path.read_text())
    return outcome


def _run(command: list[str], limit_s: float, log_path: Path) -> tuple[int, bool, str]:
    """Run the bench, echoing and logging its output; stop it at the limit.
    Returns its exit status, whether it was stopped, and its last line."""
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env=_clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        # Its own process group, so stopping it reaches the bench's children that
        # share it; SIGINT restored, so it unwinds (servers and workers stopped)
        # even when this harness was started with SIGINT ignored.
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    limit_reached = threading.Event()

    def at_limit() -> None:
        limit_reached.set()
        _stop(process)

    timer = threading.Timer(limit_s, at_limit)
    timer.start()
    last_line = ""
    try:
        with log_path.open("w") as log:
            for line in process.stdout:
                print(f"    {line}", end="", flush=True)
                log.write(line)
                last_line = line.strip() or last_line
        returncode = process.wait()
    except KeyboardInterrupt:
        _stop(process)
        raise
    finally:
        timer.cancel()
    return returncode, limit_reached.is_set(), last_line


def _stop(process: subprocess.Popen[str]) -> None:
    """SIGINT first (the benches stop what they started on it), SIGKILL if that is not enough."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGINT)
    try:
        process.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _load_average() -> tuple[float, ...]:
    """The machine's 1, 5 and 15 minute load averages: it is shared, and its load shows in the numbers."""
    return tuple(round(load, 2) for load in os.getloadavg())


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")}
    return {**env, "PYTHONUNBUFFERED": "1"}  # its lines as they come, not at exit


# ---------------------------------------------------------------- the table and the JSON


def table_rows(outcomes: dict[str, Outcome]) -> list[dict[str, Any]]:
    """One dict per row of the benches that ran: row, measured, target, met
    (True, False or None: no target) and, when there is no number, error."""
    rows = []
    for row in ROWS:
        outcome = outcomes.get(row.bench)
        if outcome is None:
            continue  # not asked for (--only)
        entry: dict[str, Any] = {"row": row.label, "bench": row.bench, "target": row.target or None}
        if outcome.error:
            entry.update(measured=f"FAILED: {outcome.error}", met=False, error=outcome.error)
        else:
            try:
                measured, met = row.read(outcome.results)
            except (KeyError, IndexError, TypeError, ValueError) as problem:
                reason = f"no number in the bench's results ({type(problem).__name__}: {problem})"
                entry.update(measured=f"FAILED: {reason}", met=False, error=reason)
            else:
                entry.update(measured=measured, met=met)
        rows.append(entry)
    return rows


def _met_text(entry: dict[str, Any]) -> str:
    if entry.get("error"):
        return "failed"
    return {True: "yes", False: "NO", None: "-"}[entry["met"]]


def format_table(rows: list[dict[str, Any]]) -> str:
    columns = ("row", "measured", "target", "met?")
    cells = [[entry["row"], entry["measured"], entry["target"] or "-", _met_text(entry)] for entry in rows]
    widths = [max(len(line[i]) for line in [list(columns), *cells]) for i in range(len(columns))]
    lines = [columns, ["-" * w for w in widths], *cells]
    return "\n".join(_line(line, widths) for line in lines)


def _line(cells: list[str] | tuple[str, ...], widths: list[int]) -> str:
    return "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip()


def report(outcomes: dict[str, Outcome], mode: str, started: datetime) -> dict[str, Any]:
    return {
        "mode": mode,
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": _machine(),
        "rows": table_rows(outcomes),
        "benches": {
            name: {
                "command": outcome.command,
                "seconds": round(outcome.seconds, 1),
                "load_average_before": outcome.load_before,
                "error": outcome.error,
                "results": outcome.results,
            }
            for name, outcome in outcomes.items()
        },
    }


def _machine() -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")), "")
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "python": sys.version.split()[0],
        "load_average_after": _load_average(),
    }


# ---------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="shorter runs: the whole suite in 4-8 minutes")
    parser.add_argument(
        "--json",
        type=Path,
        default=DEFAULT_JSON,
        help=f"where to write the table (default {DEFAULT_JSON.relative_to(ROOT)})",
    )
    parser.add_argument("--only", help="comma-separated bench names: " + ", ".join(b.name for b in BENCHES))
    args = parser.parse_args()
    benches = _selected(args.only)
    logs = args.json.parent / "logs"
    logs.mkdir(parents=True, exist_ok=True)

    started = datetime.now(UTC)
    outcomes: dict[str, Outcome] = {}
    for bench in benches:
        print(f"== {bench.name}: {' '.join(bench.command)} (load average {os.getloadavg()[0]:.2f})", flush=True)
        outcomes[bench.name] = outcome = run_bench(bench, args.quick, logs)
        status = f"FAILED: {outcome.error}" if outcome.error else "done"
        print(f"== {bench.name}: {status} in {outcome.seconds:.0f} s\n", flush=True)

    results = report(outcomes, "quick" if args.quick else "full", started)
    args.json.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    elapsed = (datetime.now(UTC) - started).total_seconds()
    print(format_table(results["rows"]))
    machine = results["machine"]
    print(
        f"\n{results['mode']} run, {elapsed / 60:.1f} min on {machine['cpus']} CPUs;"
        f" load average after {machine['load_average_after'][0]:.2f}; JSON: {args.json}"
    )
    sys.exit(1 if any(outcome.error for outcome in outcomes.values()) else 0)


def _selected(only: str | None) -> list[Bench]:
    if not only:
        return list(BENCHES)
    names = set(only.split(","))
    unknown = names - {bench.name for bench in BENCHES}
    if unknown:
        raise SystemExit(f"No such bench: {', '.join(sorted(unknown))}")
    return [bench for bench in BENCHES if bench.name in names]


if __name__ == "__main__":
    main()
