"""Ingest benchmark: POST /webhooks/bitrix24 (parse, token check, one Lua call to Redis) against a
bare Starlette endpoint served by the same uvicorn settings, side by side in one run.

    .venv/bin/python bench/ingest.py [--requests 5000] [--concurrency 32] [--tasks 300] [--wrk]

The load comes from a Python client by default; with --wrk (Debian package `wrk`) from wrk, whose
lower overhead shows the servers' own limits rather than the client's.

Needs Redis at REDIS_URL (default redis://127.0.0.1:6379/14; the benchmark uses its own prefix
and deletes its keys afterwards).
"""

from __future__ import annotations

import argparse
import os
import sys
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from redis import Redis

from b24notify.phpform import encode_php_query
from bench._servers import drive, free_port, start_process, stop_process, wait_http

TOKEN = "bench-token-0123456789abcdef"
DOMAIN = "bench.bitrix24.com"
FORM = {"content-type": "application/x-www-form-urlencoded"}
UVICORN = ["--log-level", "warning", "--no-access-log", "--host", "127.0.0.1"]


def event_body(task_id: int) -> bytes:
    payload = {
        "event": "ONTASKCOMMENTADD", "event_handler_id": "975",
        "data": {"FIELDS_BEFORE": "undefined", "FIELDS_AFTER": {"ID": 1000 + task_id, "TASK_ID": task_id},
                 "IS_ACCESSIBLE_BEFORE": "N", "IS_ACCESSIBLE_AFTER": "undefined"},
        "ts": "1466439714",
        "auth": {"domain": DOMAIN, "client_endpoint": f"https://{DOMAIN}/rest/",
                 "server_endpoint": "https://oauth.bitrix.info/rest/",
                 "member_id": "a223c6b3710f85df22e9377d6c4f7553", "application_token": TOKEN},
    }
    return encode_php_query(payload).encode()


def run_wrk(url: str, bodies: list[bytes], connections: int, seconds: int) -> dict[str, float]:
    """One wrk run cycling through the event bodies; returns req/s, p50/p99 ms and non-2xx count."""
    import re
    import subprocess
    import tempfile

    lines = ["wrk.method = 'POST'", "wrk.headers['Content-Type'] = 'application/x-www-form-urlencoded'",
             "local bodies = {"]
    lines += [f"  [==[{b.decode()}]==]," for b in bodies]
    lines += ["}", "local i = 0", "request = function()", "  i = i % #bodies + 1",
              "  return wrk.format(nil, nil, nil, bodies[i])", "end"]
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write("\n".join(lines))
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", script.name, "--latency", url],
                         capture_output=True, text=True, check=True).stdout

    def ms(label: str) -> float:
        match = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
        if not match:
            return float("nan")
        value, unit = float(match[1]), match[2]
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return {"rps": float(rps[1]) if rps else 0.0, "p50": ms("50"), "p99": ms("99"),
            "errors": int(non2xx[1]) if non2xx else 0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--tasks", type=int, default=300, help="distinct task ids in the stream")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds per server")
    parser.add_argument("--wrk", action="store_true", help="drive the load with wrk instead of Python")
    parser.add_argument("--seconds", type=int, default=10, help="wrk: seconds per round")
    args = parser.parse_args()

    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/14")
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    env = {"REDIS_URL": redis_url, "B24_WEBHOOK_URL": f"https://{DOMAIN}/rest/1/code/",
           "B24_APPLICATION_TOKEN": TOKEN, "B24NOTIFY_KEY_PREFIX": prefix, "B24NOTIFY_LOG_LEVEL": "WARNING"}
    ours_port, bare_port = free_port(), free_port()
    ours = start_process(["-m", "uvicorn", "--factory", "bench.ingest_factory:app", "--port", str(ours_port),
                          *UVICORN], env)
    bare = start_process(["-m", "uvicorn", "bench.baseline_app:app", "--port", str(bare_port), *UVICORN])
    try:
        wait_http(f"http://127.0.0.1:{ours_port}/healthz")
        wait_http(f"http://127.0.0.1:{bare_port}/webhooks/bitrix24")
        bodies = [event_body(1 + i % args.tasks) for i in range(args.tasks)]

        def body(i: int) -> bytes:
            return bodies[i % len(bodies)]

        results: dict[str, list] = {"b24notify": [], "bare starlette": []}
        for _ in range(args.rounds):  # alternate, so machine noise hits both alike
            for name, port in (("b24notify", ours_port), ("bare starlette", bare_port)):
                url = f"http://127.0.0.1:{port}/webhooks/bitrix24"
                drive(url, body, FORM, 200, args.concurrency)  # warm-up
                if args.wrk:
                    results[name].append(run_wrk(url, bodies, args.concurrency, args.seconds))
                else:
                    results[name].append(drive(url, body, FORM, args.requests, args.concurrency))
    finally:
        stop_process(ours)
        stop_process(bare)
        client = Redis.from_url(redis_url)
        for key in client.scan_iter(match=f"{prefix}:*", count=1000):
            client.delete(key)

    load = f"wrk, {args.seconds} s" if args.wrk else f"Python client, {args.requests} requests"
    print(f"\nPOST /webhooks/bitrix24, {load} x {args.rounds} rounds, "
          f"concurrency {args.concurrency}, {args.tasks} task ids, 1 uvicorn worker each\n")
    print("| server | req/s | p50 ms | p99 ms | errors |")
    print("| --- | ---: | ---: | ---: | ---: |")
    if args.wrk:
        for name, runs in results.items():
            best = max(runs, key=lambda r: r["rps"])
            print(f"| {name} | {best['rps']:,.0f} | {best['p50']:.1f} | {best['p99']:.1f} | {best['errors']} |")
        ours, bare = (max(r["rps"] for r in runs) for runs in results.values())
        rounds = ", ".join(f"{o['rps']:,.0f}/{b['rps']:,.0f}" for o, b in zip(*results.values(), strict=True))
        print(f"\nb24notify / bare starlette: {ours / bare:.2f} (best of each; per round req/s: {rounds})")
        return
    for name, runs in results.items():
        best = max(runs, key=lambda r: r.rps)
        latencies = [x for r in runs for x in r.latencies_ms]
        from bench._servers import LoadResult

        merged = LoadResult(sum(r.requests for r in runs), sum(r.errors for r in runs), 1.0, latencies)
        print(f"| {name} | {best.rps:,.0f} | {merged.pct(50):.1f} | {merged.pct(99):.1f} | {merged.errors} |")


if __name__ == "__main__":
    main()
