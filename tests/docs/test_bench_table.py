"""bench/run_all.py's table and JSON rows, from canned bench results: no bench runs here."""

from __future__ import annotations

from bench.run_all import Outcome, format_table, table_rows


def endpoint(rate: float, p50: float, p99: float, cpu: float, serial: float, errors: int = 0) -> dict:
    return {"rate": rate, "p50_ms": p50, "p99_ms": p99, "errors": errors,
            "cpu_ms_per_request": {"serving": cpu}, "serial_p50_ms": serial}  # fmt: skip


INTAKE = {
    "runs": [
        {
            "workers": 2,
            "api": endpoint(74.2, 506.4, 1055.9, 17.23, 22.39),
            "hand": endpoint(366.0, 83.8, 208.0, 3.14, 3.61),
            "bare": endpoint(277.0, 106.8, 268.2, 2.94, 3.85, errors=2),
            "cpu_api_hand": 5.487,
        }
    ]
}
POLICY = {"calls": 50_000, "p50_us": 1.36, "p99_us": 4.69}


def ran(bench: str, results: dict) -> Outcome:
    return Outcome(bench, ["python", f"bench/{bench}.py"], results=results)


def test_each_row_reads_its_number_target_and_verdict():
    rows = table_rows({"intake": ran("intake", INTAKE), "policy": ran("policy", POLICY)})

    assert [(row["row"], row["measured"], row["target"], row["met"]) for row in rows] == [
        (
            "intake: API proposals/s, p50 / p99",
            "74/s, p50 506 ms, p99 1,056 ms, 17.2 ms CPU/req, serial p50 22.4 ms",
            None,
            None,
        ),
        (
            "intake: the same job written by hand, same server",
            "366/s, p50 83.8 ms, p99 208 ms, 3.1 ms CPU/req, serial p50 3.6 ms",
            None,
            None,
        ),
        (
            "intake: bare one-row insert, same server",
            "277/s, p50 107 ms, p99 268 ms, 2.9 ms CPU/req, serial p50 3.9 ms, 2 errors",
            None,
            None,
        ),
        ("intake: API CPU per request / hand-written", "5.49x (17.2 / 3.1 ms)", "<= 2x", False),
        ("intake: API serial p50", "22.4 ms (hand-written 3.6 ms)", "< 6 ms", False),
        ("policy decision p99, in-process", "4.7 µs (p50 1.4 µs, 50,000 calls)", "< 100 µs", True),
    ]


def test_a_failed_bench_fails_its_rows_with_the_reason_and_leaves_the_others():
    failed = Outcome("intake", ["python", "bench/api_bench.py"], error="exit 1: RuntimeError: uvicorn exited with 3")

    rows = table_rows({"intake": failed, "policy": ran("policy", POLICY)})

    assert [(row["met"], row.get("error")) for row in rows[:5]] == [(False, failed.error)] * 5
    assert rows[0]["measured"] == "FAILED: exit 1: RuntimeError: uvicorn exited with 3"
    assert rows[5]["met"] is True


def test_results_without_the_rows_number_fail_that_row():
    [row] = table_rows({"policy": ran("policy", {"calls": 10})})

    assert row["met"] is False
    assert row["error"] == "no number in the bench's results (KeyError: 'p99_us')"


def test_the_table_has_aligned_columns_and_spelled_out_verdicts():
    failed = Outcome("policy", [], error="stopped after its 120 s limit")
    rows = table_rows({"intake": ran("intake", INTAKE), "policy": failed})

    lines = format_table(rows).splitlines()

    assert lines[0].split() == ["row", "measured", "target", "met?"]
    assert set(lines[1].replace("  ", "")) == {"-"}
    measured_at = lines[0].index("measured")
    assert all(line[measured_at - 2 : measured_at] == "  " for line in lines)
    assert [line.rsplit("  ", 1)[1] for line in lines[2:]] == ["-", "-", "-", "NO", "NO", "failed"]


def test_a_kill_switch_before_any_dispatch_started_meets_its_target():
    switch = {"approvals": 160, "started": 0, "started_after": 0, "last_start_ms": None}
    dispatch = {"latency": {"approvals": 50, "p50_ms": 40.0, "p95_ms": 60.0}, "kill_switch": switch}

    rows = table_rows({"dispatch": ran("dispatch", dispatch)})

    assert ("none started before the suspension, 0 after it", True) in [(r["measured"], r["met"]) for r in rows]


def test_the_fan_out_rows_read_the_latency_and_the_members_left_after_the_sockets_closed():
    fanout = {
        "leads": 1000,
        "missing": 0,
        "server_cpu_ms_per_proposal": 215.0,
        "all_pairs": {"n": 40_000, "p50_ms": 160.8, "p95_ms": 331.2},
        "from_publish": {"n": 40_000, "p50_ms": 138.8, "p95_ms": 312.6},
        "group_size_open": 2,
        "group_size_after_close": [{"s": 0.2, "size": 2}, {"s": 0.8, "size": 0}],
    }

    rows = table_rows({"fanout": ran("fanout_bench", fanout)})

    assert [(row["measured"], row["met"]) for row in rows] == [
        ("p50 161 ms, p95 331 ms (40,000 pairs; from the publish p95 313 ms; 215 ms of server CPU each)", False),
        ("2 with 1,000 sockets open; 0 0.8 s after they all closed", True),
    ]
