"""Fault 3 — `spool-worker --processes 3` keeps its worker processes running.

- each child registers a unique worker id made of host, pid and index;
- a child killed with SIGKILL is started again (new pid, "worker process started");
- a child that keeps dying is restarted with a growing delay (no spinning);
- SIGTERM to the supervisor drains every child; it exits 0 and leaves no child.
"""
import os
import signal
import socket
import time

import pytest

from harness import wait_for

QUEUE = "sup"
ENV = {"SPOOL_LEASE_MS": "3000", "SPOOL_HEARTBEAT_MS": "500", "SPOOL_SHUTDOWN_GRACE_MS": "5000"}


def starts(sup):
    return [l for l in sup.log_lines() if l.get("msg") == "worker process started"]


def exits(sup):
    return [l for l in sup.log_lines() if l.get("msg") == "worker process exited; restarting"]


def current_pid(sup, index):
    return [int(l["pid"]) for l in starts(sup) if int(l["index"]) == index][-1]


def alive_pid(pid):
    return os.path.exists(f"/proc/{pid}") and (lambda st: st is not None and st[0] != "Z")(_stat(pid))


def _stat(pid):
    try:
        raw = open(f"/proc/{pid}/stat").read()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2:].split()


def _cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


@pytest.mark.full
def test_supervisor_restarts_backs_off_and_drains(spawn, redis, kit, figures):
    api = spawn.api()
    sup = spawn.supervisor(3, queues=QUEUE, concurrency=2, env=ENV)
    wait_for(lambda: len(starts(sup)) == 3 and sup.output().count('"spool-worker started"') == 3, timeout=20,
             what=f"3 worker processes\n{sup.output()[-2000:]}")
    host = socket.gethostname()

    def registered():
        ws = api.get("/v1/workers")[2]["workers"]
        return ws if len(ws) == 3 and {w["pid"] for w in ws} == {current_pid(sup, i) for i in range(3)} else None

    workers = wait_for(registered, timeout=10, what="3 registered workers")
    ids = [w["id"] for w in workers]
    assert len(set(ids)) == 3, ids
    for w in workers:
        index = [int(l["index"]) for l in starts(sup) if int(l["pid"]) == w["pid"]][0]
        assert w["id"].startswith(f"{host}-{w['pid']}-{index}-"), (w["id"], host, w["pid"], index)
        assert w["host"] == host
        assert kit.proc_stat(w["pid"])[1] == sup.pid, "worker is not a child of the supervisor"

    # SIGKILL one child: it comes back with a new pid.
    old = current_pid(sup, 1)
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: current_pid(sup, 1) != old, timeout=10, what="child 1 to be restarted")
    new = current_pid(sup, 1)
    assert alive_pid(new) and kit.proc_stat(new)[1] == sup.pid
    assert [l for l in exits(sup) if int(l["pid"]) == old and "signal 9" in l.get("status", "")], exits(sup)

    # A child that keeps dying: each restart waits longer than the one before.
    delays = []
    for _ in range(4):
        pid = current_pid(sup, 0)
        n_starts = len([l for l in starts(sup) if int(l["index"]) == 0])
        os.kill(pid, signal.SIGKILL)
        line = wait_for(lambda: next((l for l in exits(sup) if int(l["pid"]) == pid), None), timeout=10,
                        what="the supervisor to see the child die")
        wait_for(lambda: len([l for l in starts(sup) if int(l["index"]) == 0]) > n_starts, timeout=40,
                 what="child 0 to be restarted")
        restarted = [l for l in starts(sup) if int(l["index"]) == 0][-1]
        delays.append(kit.parse_ts(restarted["ts"]) - kit.parse_ts(line["ts"]))
    assert delays[0] >= 0.4, delays
    for a, b in zip(delays, delays[1:]):
        assert b >= 1.5 * a, f"restart delays do not grow: {[round(d, 2) for d in delays]}"
    assert sup.alive()

    workers = wait_for(registered, timeout=10, what="the 3 current children to be registered")
    assert len({w["id"] for w in workers}) == 3

    # Under load, SIGTERM: every child drains its jobs and exits; the supervisor exits 0.
    jobs = [api.enqueue(QUEUE, {"type": "sleep", "payload": {"ms": 1500}}) for _ in range(6)]
    wait_for(lambda: sum(1 for j in jobs if api.job(j["id"])["state"] == "running") >= 4, timeout=10,
             what="jobs to run")
    children = [current_pid(sup, i) for i in range(3)]
    all_pids = {int(l["pid"]) for l in starts(sup)}
    t0 = time.monotonic()
    sup.signal(signal.SIGTERM)
    code = sup.wait(30)
    stop_s = time.monotonic() - t0
    assert code == 0, sup.output()[-3000:]
    assert "supervisor stopped" in sup.output()
    left = [p for p in all_pids if alive_pid(p) and b"spool-worker" in _cmdline(p)]
    assert not left, f"worker processes left behind: {left}"
    for j in jobs:
        s = api.job(j["id"])
        assert s["state"] in ("succeeded", "queued"), s
        assert s["state"] == "succeeded" or s["attempts"] == 0, s
    running_then = [j for j in jobs if api.job(j["id"])["state"] == "succeeded"]
    assert len(running_then) >= 4
    assert not api.get("/v1/workers")[2]["workers"], "children did not leave the registry"

    figures.record(
        "supervisor",
        processes=3, unique_worker_ids=len(set(ids)), restart_delays_ms=[kit.ms(d) for d in delays],
        sigterm_to_exit_ms=kit.ms(stop_s), children_left=len(left), drained_jobs=len(running_then),
        children_at_sigterm=len(children),
    )
