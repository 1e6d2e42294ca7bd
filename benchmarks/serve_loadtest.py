"""Load test of `trainwise serve` with wrk (a real HTTP load generator) on localhost.

1. batching vs max_batch_size=1 on the same tabular model, 64 connections, interleaved A B A B;
2. a small sweep of (max_batch_size, max_wait_ms) that the defaults were chosen from;
3. a hot swap under the same load: the alias moves mid-run; every response must be 2xx.

Each server is a `trainwise serve` subprocess; wrk runs with a Lua script posting one instance
per request. Compute per batch and average batch come from the server's own /metrics.

    python benchmarks/serve_loadtest.py --duration 10 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from trainwise.train.parallel import free_port

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere
PY = sys.executable
INSTANCE = {
    "rate_marriage": 3.0,
    "age": 32.0,
    "yrs_married": 9.0,
    "children": 2.0,
    "religious": 2.0,
    "education": "college graduate",
    "occupation": "white collar",
    "occupation_husb": "managerial/business",
}


def train_model(run_dir: Path, d_model: int, n_layers: int, seed: int = 0) -> None:
    from trainwise.config import load_config
    from trainwise.train.loop import train

    train(
        load_config(
            None,
            [
                "workload.name=tabular",
                f"model.d_model={d_model}",
                f"model.n_layers={n_layers}",
                "train.steps=30",
                "train.micro_batch_size=64",
                "train.global_batch_size=64",
                "log.progress=false",
                f"train.seed={seed}",
            ],
        ),
        run_dir,
    )


class Server:
    def __init__(self, ref: str, sets: list[str], env: dict | None = None):
        self.port = free_port()
        cmd = [PY, "-m", "trainwise.cli", "serve", ref, "--port", str(self.port)] + [
            a for s in sets for a in ("--set", s)
        ]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **(env or {})}, stderr=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"server did not start: {cmd}")
            time.sleep(0.2)

    def metrics(self) -> dict[str, float]:
        out = {}
        for line in httpx.get(f"{self.url}/metrics").text.splitlines():
            if line and not line.startswith("#"):
                key, value = line.rsplit(" ", 1)
                out[key] = float(value)
        return out

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def wrk_command(url: str, duration_s: float, connections: int, script: Path) -> list[str]:
    """wrk on one thread posting `script`'s request to /v1/predict, with the latency distribution."""
    return [
        *("wrk", "-t1", f"-c{connections}", f"-d{int(duration_s)}s", "--latency", "--timeout", "10s"),
        *("-s", str(script), f"{url}/v1/predict"),
    ]


def wrk(url: str, duration_s: float, connections: int, script: Path) -> dict:
    out = subprocess.run(
        wrk_command(url, duration_s, connections, script),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    unit = {"us": 1e-3, "ms": 1.0, "s": 1e3}

    def ms(label):
        m = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        return float(m.group(1)) * unit[m.group(2)]

    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),
        "p50_ms": ms("50%"),
        "p90_ms": ms("90%"),
        "p99_ms": ms("99%"),
        "socket_errors": sum(map(int, errors.groups())) if errors else 0,
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
    }


def run_variant(ref: str, sets: list[str], duration_s: float, connections: int, script: Path) -> dict:
    server = Server(ref, sets)
    try:
        wrk(server.url, 2, connections, script)  # warm-up, not counted
        before = server.metrics()
        result = wrk(server.url, duration_s, connections, script)
        after = server.metrics()
    finally:
        server.stop()
    d = lambda k: after.get(k, 0.0) - before.get(k, 0.0)  # noqa: E731
    result["batch_compute_ms"] = (
        1000 * d("trainwise_compute_seconds_sum") / max(d("trainwise_compute_seconds_count"), 1)
    )
    result["queue_wait_ms"] = (
        1000 * d("trainwise_queue_wait_seconds_sum") / max(d("trainwise_queue_wait_seconds_count"), 1)
    )
    result["server_p50_ms"] = histogram_quantile(0.5, before, after, "trainwise_request_latency_seconds")
    result["server_p99_ms"] = histogram_quantile(0.99, before, after, "trainwise_request_latency_seconds")
    result["average_batch"] = d("trainwise_inferences_total") / max(d("trainwise_batches_total"), 1)
    result["server_5xx"] = sum(
        v - before.get(k, 0) for k, v in after.items() if k.startswith('trainwise_requests_total{status="5')
    )
    return result


def histogram_quantile(q: float, before: dict, after: dict, name: str) -> float:
    """The q-quantile (ms) of a Prometheus histogram's increase, interpolated within its bucket (as PromQL does)."""
    buckets = []
    for key, value in after.items():
        m = re.fullmatch(rf'{name}_bucket{{le="([^"]+)"}}', key)
        if m:
            buckets.append((float(m.group(1)), value - before.get(key, 0.0)))
    buckets.sort()
    total = buckets[-1][1]
    rank, prev_le, prev_n = q * total, 0.0, 0.0
    for le, n in buckets:
        if n >= rank:
            if le == float("inf"):
                return prev_le * 1000
            return 1000 * (prev_le + (le - prev_le) * (rank - prev_n) / max(n - prev_n, 1e-9))
        prev_le, prev_n = le, n
    return float("nan")


def summarize(runs: list[dict]) -> dict:
    keys = [k for k in runs[0] if isinstance(runs[0][k], (int, float))]
    return {
        k: {
            "median": statistics.median(r[k] for r in runs),
            "min": min(r[k] for r in runs),
            "max": max(r[k] for r in runs),
        }
        for k in keys
    }


def hot_swap(
    run_a: Path, run_b: Path, sets: list[str], duration_s: float, connections: int, script: Path, tmp: Path
) -> dict:
    uri = f"sqlite:///{tmp}/mlflow.db"
    env = {"MLFLOW_TRACKING_URI": uri, "TRAINWISE_ACTOR": "benchmark"}
    os.environ.update(env)
    from trainwise.registry import register_run
    from trainwise.registry.promote import promote

    register_run(run_a, "tabbench")
    register_run(run_b, "tabbench")
    promote("tabbench", 1, alias="champion", force=True, reason="benchmark set-up")
    server = Server("tabbench@champion", sets + ["serve.poll_alias_s=0.5"], env)
    try:
        wrk(server.url, 2, connections, script)
        proc = subprocess.Popen(
            wrk_command(server.url, duration_s, connections, script),
            stdout=subprocess.PIPE,
            text=True,
        )
        time.sleep(duration_s / 3)
        promote("tabbench", 2, alias="champion", force=True, reason="benchmark hot swap")
        out = proc.communicate()[0]
        metrics = server.metrics()
        version_now = httpx.get(f"{server.url}/readyz").json()["model_version"]
    finally:
        server.stop()
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": sum(map(int, errors.groups())) if errors else 0,
        "swaps": metrics.get("trainwise_model_swaps_total", 0),
        "served_5xx": sum(v for k, v in metrics.items() if k.startswith('trainwise_requests_total{status="5')),
        "version_after": version_now,
        "promote_at_s": duration_s / 3,
    }


def render_markdown(r: dict, command: str) -> str:
    s, d = r["summary"], r["defaults"]
    b = s["batched (defaults)"]
    f = lambda x, k, nd=1: f"{x[k]['median']:.{nd}f} [{x[k]['min']:.{nd}f}, {x[k]['max']:.{nd}f}]"  # noqa: E731
    lines = [
        f"# trainwise serve under load: wrk, {r['connections']} connections, localhost",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {r['cpu_count']} cores shared with other work (load average {r['load_average_before']:.1f} before, "
        f"{r['load_average_after']:.1f} after); server and wrk on the same cores. Model: tabular MLP, "
        f"d_model={r['model']['d_model']}, n_layers={r['model']['n_layers']}, fp32; one instance per request. "
        f"{r['repeats']} interleaved repeats of {r['duration_s']:.0f} s each after a 2 s warm-up; median [min, max].",
        "",
        "| server | requests/s | p50 ms | p99 ms (wrk) | p99 ms (server histogram) | compute ms / batch | average "
        "batch | 5xx + errors |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, x in s.items():
        bad = sum(run["non_2xx"] + run["socket_errors"] + run["server_5xx"] for run in r["runs"][name])
        lines.append(
            f"| {name} | {f(x, 'rps', 0)} | {f(x, 'p50_ms')} | {f(x, 'p99_ms')} | {f(x, 'server_p99_ms')} | "
            f"{f(x, 'batch_compute_ms')} | {x['average_batch']['median']:.1f} | {bad} |"
        )
    ratios = ", ".join(f"{v:.1f}" for v in r["ratio_per_repeat"])
    ok_ratio = r["throughput_ratio"] >= 4
    ok_p99 = b["p99_ms"]["median"] <= r["p99_bound_ms"]
    lines += [
        "",
        f"- Throughput, batching vs max_batch_size=1: **{r['throughput_ratio']:.1f}x** (ratio of medians; per repeat "
        f"{ratios}); target >= 4x: {'met' if ok_ratio else 'NOT met'}.",
        f"- p99 with batching (defaults max_batch_size={d['max_batch_size']}, max_wait_ms={d['max_wait_ms']:g}): "
        f"**{b['p99_ms']['median']:.0f} ms** (wrk), bound max_wait_ms + 3 x compute per batch = "
        f"{r['p99_bound_ms']:.0f} ms: {'met' if ok_p99 else 'NOT met'}.",
        "",
        "## Sweep of (max_batch_size, max_wait_ms), one run each",
        "",
        "| max_batch_size:max_wait_ms | requests/s | p50 ms | p99 ms | compute ms / batch | average batch |",
        "|---|---|---|---|---|---|",
    ]
    for pair, x in r["sweep"].items():
        lines.append(
            f"| {pair} | {x['rps']:.0f} | {x['p50_ms']:.1f} | {x['p99_ms']:.1f} | {x['batch_compute_ms']:.1f} | "
            f"{x['average_batch']:.1f} |"
        )
    h = r["hot_swap"]
    lines += [
        "",
        "## Hot swap under the same load",
        "",
        "`tabbench@champion` served with serve.poll_alias_s=0.5; the alias moved v1 -> v2 (`promote --force`) "
        f"{h['promote_at_s']:.0f} s into a wrk run. Requests: {h['requests']}; non-2xx: **{h['non_2xx']}**; socket "
        f"errors: {h['socket_errors']}; 5xx counted by the server: {h['served_5xx']:.0f}; swaps: {h['swaps']:.0f}; "
        f"version served afterwards: {h['version_after']}.",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--d-model", type=int, default=512)
    ap.add_argument("--n-layers", type=int, default=4)
    ap.add_argument("--sweep", default="16:2,32:5,64:5,64:10", help="max_batch_size:max_wait_ms pairs")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "serve_loadtest_cpu-2core_20261122.json"))
    ap.add_argument("--render-only", action="store_true", help="only write the .md from an existing --out JSON")
    args = ap.parse_args()
    command = "python benchmarks/serve_loadtest.py " + " ".join(sys.argv[1:])
    if args.render_only:
        r = json.loads(Path(args.out).read_text())
        Path(args.out).with_suffix(".md").write_text(render_markdown(r, r.get("command", command)))
        return 0
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed (apt-get install wrk)")
    tmp = Path(tempfile.mkdtemp(prefix="serve_bench_"))
    run_a, run_b = tmp / "tab_a", tmp / "tab_b"
    train_model(run_a, args.d_model, args.n_layers, seed=0)
    train_model(run_b, args.d_model, args.n_layers, seed=1)
    script = tmp / "post.lua"
    script.write_text(
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.body = '
        f"{json.dumps(json.dumps({'instances': [INSTANCE]}))}\n"
    )
    load_before = os.getloadavg()[0]
    variants = {"batched (defaults)": [], "max_batch_size=1": ["serve.max_batch_size=1"]}
    runs = {name: [] for name in variants}
    for rep in range(args.repeats):
        for name, sets in variants.items():  # interleaved: A B A B ...
            runs[name].append(run_variant(str(run_a), sets, args.duration, args.connections, script))
            print(name, rep, runs[name][-1], flush=True)
    sweep = {}
    for pair in filter(None, args.sweep.split(",")):
        b, w = pair.split(":")
        sweep[pair] = run_variant(
            str(run_a), [f"serve.max_batch_size={b}", f"serve.max_wait_ms={w}"], args.duration, args.connections, script
        )
        print("sweep", pair, sweep[pair], flush=True)
    swap = hot_swap(run_a, run_b, [], max(args.duration, 15), args.connections, script, tmp)
    print("hot swap", swap, flush=True)
    from trainwise.config import ServeConfig

    result = {
        "connections": args.connections,
        "duration_s": args.duration,
        "repeats": args.repeats,
        "model": {"d_model": args.d_model, "n_layers": args.n_layers},
        "defaults": {"max_batch_size": ServeConfig().max_batch_size, "max_wait_ms": ServeConfig().max_wait_ms},
        "load_average_before": load_before,
        "load_average_after": os.getloadavg()[0],
        "cpu_count": os.cpu_count(),
        "runs": runs,
        "summary": {k: summarize(v) for k, v in runs.items()},
        "sweep": sweep,
        "hot_swap": swap,
    }
    s = result["summary"]
    result["throughput_ratio"] = s["batched (defaults)"]["rps"]["median"] / s["max_batch_size=1"]["rps"]["median"]
    result["ratio_per_repeat"] = [
        a["rps"] / b["rps"] for a, b in zip(runs["batched (defaults)"], runs["max_batch_size=1"], strict=True)
    ]
    d = result["defaults"]
    result["p99_bound_ms"] = d["max_wait_ms"] + 3 * s["batched (defaults)"]["batch_compute_ms"]["median"]
    result["command"] = command
    Path(args.out).write_text(json.dumps(result, indent=2))
    Path(args.out).with_suffix(".md").write_text(render_markdown(result, command))
    print(json.dumps({k: result[k] for k in ("throughput_ratio", "ratio_per_repeat", "p99_bound_ms")}, indent=2))
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
