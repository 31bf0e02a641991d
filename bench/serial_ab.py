"""One request at a time, this tree against an earlier commit: the agent
API's serial latency before and after a change, and the hand-written
intake's beside both, measured so that the machine's drift cancels out.

    .venv/bin/python bench/serial_ab.py --base HEAD~1 [--seconds 12] [--rounds 3] [--block 10] [--json PATH]

api_bench.py's serial windows follow each other seconds apart, and on this
machine the hand-written intake's serial p50 moves by up to 2x within the
hour: a change of 10 % is lost in that. Here two servers run side by side,
each as api_bench.py starts it (2 uvicorn workers, production variables,
the bench's own Redis, one PostgreSQL database): one on a git worktree of
`--base`, one on this tree. One client sends them blocks of `--block`
proposals in turn (base API, this API, the hand-written intake on the base
server), so each block sees the machine as the others do. The first
request of a block is left out: it follows another server's work, while
the rest follow their own, as an agent's next proposal follows its last
(and meets the work its server does after that answer). Prints the median
per round; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import api_bench
import loadgen
import uvloop
from _setup import ROOT, django_on_postgres, write_json

BASE_PORT, THIS_PORT = 8791, 8792
HAND_PATH, API_PATH = "/bench/hand/actions/", "/api/v1/actions/"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", required=True, help="the commit to compare with, e.g. HEAD~1")
    parser.add_argument("--seconds", type=float, default=12, help="measured seconds per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--block", type=int, default=10, help="proposals sent to one server in a row")
    parser.add_argument("--redis-port", type=int, default=6391)
    parser.add_argument("--json", metavar="PATH", help="also write the numbers to PATH as JSON")
    args = parser.parse_args()

    django_on_postgres(api_bench.DATABASE)
    keys = api_bench.seed(64)
    api_bench.settle()
    rounds = []
    with tempfile.TemporaryDirectory(prefix="serial-ab-") as parent, contextlib.ExitStack() as stack:
        base_tree = Path(parent) / "base"
        git = ["git", "-C", str(ROOT), "worktree"]
        subprocess.run([*git, "add", "--detach", "-q", str(base_tree), args.base], check=True)
        stack.callback(subprocess.run, [*git, "remove", "--force", str(base_tree)], check=True)
        redis_server = stack.enter_context(api_bench.RedisServer(args.redis_port))
        env = api_bench.server_env(None, redis_server.url)
        stack.enter_context(api_bench.Server(2, BASE_PORT, env, cwd=base_tree))
        stack.enter_context(api_bench.Server(2, THIS_PORT, env))
        targets = {
            "base": (BASE_PORT, API_PATH),
            "this": (THIS_PORT, API_PATH),
            "hand": (BASE_PORT, HAND_PATH),
        }
        for n in range(args.rounds):
            api_bench.wait_for_quiet(20)
            latencies = uvloop.run(_blocks(targets, keys, args.block, args.seconds))
            base, this, hand = (statistics.median(latencies[name]) for name in ("base", "this", "hand"))
            rounds.append({"base": base, "this": this, "hand": hand, "proposals": len(latencies["this"])})
            print(
                f"round {n + 1}: serial p50 base {base:.2f} ms, this {this:.2f} ms ({this - base:+.2f}), "
                f"hand-written {hand:.2f} ms; / hand-written: base {base / hand:.2f}, this {this / hand:.2f} "
                f"({len(latencies['this'])} proposals each)",
                flush=True,
            )
            api_bench.settle()
    write_json(args.json, {"base": args.base, "block": args.block, "seconds": args.seconds, "rounds": rounds})


async def _blocks(
    targets: dict[str, tuple[int, str]], keys: list[str], block: int, seconds: float
) -> dict[str, list[float]]:
    connections = {}
    for name, (port, path) in targets.items():
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        connections[name] = (reader, writer, api_bench.request_factory(path, port, keys, 1))
    latencies: dict[str, list[float]] = {name: [] for name in targets}
    warm_until = time.perf_counter() + 2
    stop_at = warm_until + seconds
    n = 0
    while time.perf_counter() < stop_at:
        for name, (reader, writer, make) in connections.items():
            for i in range(block):
                started = time.perf_counter()
                writer.write(make(0, n))
                n += 1
                status, body, _ = await loadgen.read_response(reader)
                if status != 201:
                    raise SystemExit(f"{name}: {status} {body[:300]!r}")
                if i and started > warm_until:
                    latencies[name].append((time.perf_counter() - started) * 1000)
    for _, writer, _ in connections.values():
        writer.close()
    return latencies


if __name__ == "__main__":
    main()
