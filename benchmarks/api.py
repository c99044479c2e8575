"""Benchmark: `selfmodel api` over HTTP on a 1 M-user snapshot, against the seed's 50-200 ms lookup budget.

Builds (or reuses) the snapshot benchmarks/lookup.py builds (1 M users, ~17 M beliefs, published through
selfmodel.publish.publish_table), starts `selfmodel api` as a subprocess on a free local port, waits for
/healthz, then measures request latency from a keep-alive HTTP/1.1 client (http.client, one connection,
requests one after another; 10 % of users unknown):
  1. start-up: process start until /healthz answers 200 (imports + loading the snapshot);
  2. GET /users/{id}/beliefs (the whole self-model; unknown users: 404);
  3. POST /enrich at the serving threshold;
  4. the same with N client threads on N connections at once (--concurrency, default 4): throughput and
     latency when requests queue on the server's one event loop.
With `wrk` installed, it also runs wrk on GET /users/{id}/beliefs for one user (`which wrk`).

    python benchmarks/api.py --users 1000000 --workdir /tmp/lookup-bench --reuse
"""

from __future__ import annotations

import argparse
import http.client
import importlib.util
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from warehouse.online import read_current  # noqa: E402

BUDGET_MS = (50, 200)  # the seed's lookup budget: the enrichment must fit in it
QUERY = "How do I prepare a Bell state on two qubits?"


def lookup_benchmark():
    """benchmarks/lookup.py as a module: its snapshot builder."""
    spec = importlib.util.spec_from_file_location("lookup_benchmark", REPO / "benchmarks" / "lookup.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def percentiles_ms(samples_ns: list[int]) -> dict[str, float]:
    ordered = sorted(samples_ns)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1e6

    return {"p50": at(0.50), "p90": at(0.90), "p99": at(0.99), "p99.9": at(0.999), "max": ordered[-1] / 1e6}


def show(name: str, stats: dict[str, float]) -> None:
    figures = "  ".join(f"{k} {v:7.3f}" for k, v in stats.items())
    verdict = "within" if stats["p99"] <= BUDGET_MS[0] else ("within the upper" if stats["p99"] <= BUDGET_MS[1]
                                                               else "OVER")
    print(f"  {name:<38} {figures}  ms   p99 {verdict} the {BUDGET_MS[0]}-{BUDGET_MS[1]} ms budget")


class Client:
    """One keep-alive HTTP/1.1 connection."""

    def __init__(self, port: int) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def get(self, path: str) -> tuple[int, bytes]:
        self.connection.request("GET", path)
        response = self.connection.getresponse()
        return response.status, response.read()

    def post(self, path: str, payload: dict) -> tuple[int, bytes]:
        self.connection.request("POST", path, body=json.dumps(payload),
                                headers={"Content-Type": "application/json"})
        response = self.connection.getresponse()
        return response.status, response.read()

    def close(self) -> None:
        self.connection.close()


def timed(call, items: list) -> list[int]:
    samples = []
    clock = time.perf_counter_ns
    for item in items:
        started = clock()
        status, _ = call(item)
        samples.append(clock() - started)
        assert status in (200, 404), status
    return samples


def beliefs_path(user: str) -> str:
    return f"/users/{user}/beliefs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=20_000, help="Requests per sequential pass.")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/lookup-bench"))
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--reuse", action="store_true", help="Serve the snapshot a previous run left in --workdir.")
    args = parser.parse_args()
    folder = args.workdir / "snapshots"
    if args.reuse and read_current(folder):
        print(f"reusing snapshot {read_current(folder)} in {folder}")
    else:
        lookup_benchmark().generate_and_publish(args, folder)
    config = args.workdir / "selfmodel.yaml"
    config.write_text(json.dumps({"snapshots": {"path": str(folder)}}), encoding="utf-8")  # JSON is YAML

    port = free_port()
    started = time.perf_counter()
    server = subprocess.Popen([sys.executable, "-m", "selfmodel", "--config", str(config), "api", "--port", str(port)],
                              stderr=subprocess.PIPE, text=True)
    try:
        health = wait_until_up(server, port)
        print(f"\nselfmodel api up in {time.perf_counter() - started:.1f} s (process start to /healthz 200): "
              f"snapshot {health['snapshot']}, {health['users']:,} users")
        measure(args, port, health["users"])
        run_wrk(port)
        print(f"server RSS {server_rss(server.pid) / 1e9:.2f} GB; load average {os.getloadavg()[0]:.1f} on "
              f"{os.cpu_count()} cores (client and server share them)")
    finally:
        server.terminate()
        server.wait(timeout=30)


def wait_until_up(server: subprocess.Popen, port: int, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"selfmodel api exited: {server.stderr.read()}")
        try:
            client = Client(port)
            status, body = client.get("/healthz")
            client.close()
            if status == 200:
                return json.loads(body)
        except OSError:
            pass
        time.sleep(0.1)
    sys.exit("selfmodel api did not come up")


def measure(args, port: int, users: int) -> None:
    rng = random.Random(args.seed)
    ids = [f"u{rng.randrange(users):07d}" if rng.random() < 0.9 else f"unknown-{rng.randrange(10**9)}"
           for _ in range(args.requests)]
    client = Client(port)
    for user in ids[:2000]:  # warm up
        client.get(beliefs_path(user))
    print(f"\nlatency over HTTP, {args.requests:,} requests per row, one keep-alive connection, one request "
          f"at a time (random users, 10 % unknown):")
    sizes = []

    def get(user: str):
        status, body = client.get(beliefs_path(user))
        sizes.append(len(body))
        return status, body

    show("GET /users/{id}/beliefs", percentiles_ms(timed(get, ids)))
    print(f"    (response bodies: median {sorted(sizes)[len(sizes) // 2]:,} B, max {max(sizes):,} B)")
    show("POST /enrich", percentiles_ms(timed(
        lambda user: client.post("/enrich", {"user_id": user, "query": QUERY}), ids)))
    show("GET /healthz", percentiles_ms(timed(lambda _: client.get("/healthz"), ids[: args.requests // 4])))
    client.close()

    per_thread = args.requests // args.concurrency
    samples: list[list[int]] = [[] for _ in range(args.concurrency)]

    def worker(n: int) -> None:
        own = Client(port)
        own_ids = ids[n * per_thread:(n + 1) * per_thread]
        samples[n] = timed(lambda user: own.post("/enrich", {"user_id": user, "query": QUERY}), own_ids)
        own.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(args.concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    merged = [sample for chunk in samples for sample in chunk]
    print(f"\n{args.concurrency} connections at once, POST /enrich: {len(merged) / elapsed:,.0f} requests/s")
    show(f"POST /enrich ({args.concurrency} concurrent)", percentiles_ms(merged))


def run_wrk(port: int) -> None:
    if shutil.which("wrk") is None:
        print("\nwrk: not installed here (`which wrk`); the figures above are from the Python client")
        return
    result = subprocess.run(["wrk", "-t2", "-c8", "-d10s", "--latency", f"http://127.0.0.1:{port}/users/u0000001/beliefs"],
                            capture_output=True, text=True)
    print("\nwrk -t2 -c8 -d10s --latency GET /users/u0000001/beliefs:\n" + result.stdout)


def server_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


if __name__ == "__main__":
    main()
