#!/usr/bin/env python3
"""Old and new binaries, alternately on one machine: sequential, batch and
concurrent (wrk) enqueue, drain of 20,000 noop jobs by one worker of 16 loops,
and idle RSS; medians of 4 rounds and new/old ratios. For a change on a hot
path, measured before and after in the same session:

    python3 scripts/bench_ab.py OLD_RELEASE_DIR NEW_RELEASE_DIR [LABEL]

Writes .spool/bench-ab.json (with LABEL, what was compared), which `make
bench` quotes in docs/benchmarks.md when present.

(each a `swift build -c release --static-swift-stdlib` output directory; the
old one from a git worktree at the commit before the change).
"""
import json, os, statistics, subprocess, sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402
dirs = {"old": sys.argv[1], "new": sys.argv[2]}
res = {k: {"seq": [], "batch": [], "conc": [], "drain": [], "rss_worker": [], "rss_api": []} for k in dirs}
def tool(d, *a):
    out = subprocess.run([f"{d}/spool-bench", *map(str, a)], capture_output=True, text=True, timeout=300).stdout
    return json.loads(out.strip().splitlines()[-1])
for rnd in range(4):
    for name, d in (dirs.items() if rnd % 2 == 0 else reversed(list(dirs.items()))):
        rp, ap = bench.free_port(), bench.free_port()
        r = bench.start(["redis-server", "--port", str(rp), "--save", "", "--appendonly", "no"])
        bench.wait_port(rp)
        url = f"redis://127.0.0.1:{rp}"
        api = bench.start([f"{d}/spool-api", "--addr", f"127.0.0.1:{ap}", "--log-level", "warning"], {"REDIS_URL": url})
        bench.wait_port(ap); time.sleep(0.5)
        res[name]["rss_api"].append(bench.rss_kb(api.pid))
        addr = f"127.0.0.1:{ap}"
        res[name]["seq"].append(tool(d, "sequential", "--addr", addr, "--queue", "bench", "--count", 5000)["rate"])
        bench.redis_cli(rp, "FLUSHALL")
        res[name]["batch"].append(tool(d, "batch", "--addr", addr, "--queue", "bench", "--batches", 25, "--size", 1000, "--connections", 4)["rate"])
        bench.redis_cli(rp, "FLUSHALL")
        res[name]["conc"].append(bench.wrk(ap, "bench", 5)["rate"])
        bench.redis_cli(rp, "FLUSHALL")
        tool(d, "batch", "--addr", addr, "--queue", "bench", "--batches", 20, "--size", 1000, "--connections", 2)
        w = bench.start([f"{d}/spool-worker", "--queues", "bench", "--concurrency", "16", "--log-level", "warning"], {"REDIS_URL": url})
        res[name]["drain"].append(tool(d, "wait-processed", "--redis-url", url, "--queue", "bench", "--target", 40000)["rate"])
        time.sleep(1.5)
        res[name]["rss_worker"].append(bench.rss_kb(w.pid))
        bench.stop(w); bench.stop(api); bench.stop(r)
for k, v in res.items():
    print(k, {m: round(statistics.median(x)) for m, x in v.items()}, v)
o, n = res["old"], res["new"]
print("new/old", {m: round(statistics.median(n[m]) / statistics.median(o[m]), 3) for m in o})
out = {"label": sys.argv[3] if len(sys.argv) > 3 else f"{dirs['old']} against {dirs['new']}",
       "date": time.strftime("%Y-%m-%d"), "rounds": len(res["old"]["seq"]),
       "medians": {k: {m: round(statistics.median(x)) for m, x in v.items()} for k, v in res.items()},
       "new_over_old": {m: round(statistics.median(n[m]) / statistics.median(o[m]), 3) for m in o}}
Path(".spool").mkdir(exist_ok=True)
Path(".spool/bench-ab.json").write_text(json.dumps(out, indent=2))
