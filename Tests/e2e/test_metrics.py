"""GET /metrics on the API and on a worker's health port: Prometheus text
format whose numbers move with real jobs."""
import pytest
import http.client
import re

from harness import free_port, wait_for


def scrape(port):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/metrics")
    resp = conn.getresponse()
    body = resp.read().decode()
    assert resp.status == 200
    assert resp.getheader("Content-Type").startswith("text/plain")
    return body


def value(text, name, **labels):
    """The sample of `name` whose labels include `labels`; 0 when absent."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        m = re.match(r"^([a-zA-Z_:]+)(\{(.*)\})? ([0-9.eE+-]+)$", line)
        if not m or m.group(1) != name:
            continue
        got = dict(re.findall(r'(\w+)="([^"]*)"', m.group(3) or ""))
        if all(got.get(k) == v for k, v in labels.items()):
            return float(m.group(4))
    return 0.0


def test_metrics_move_with_real_jobs(spawn):
    api = spawn.api()
    port = free_port()
    spawn.worker(queues="m", concurrency=2, args=["--health-port", str(port)])
    before_api, before_worker = scrape(api.port), scrape(port)

    ok = [api.enqueue("m", {"type": "echo", "payload": i})["id"] for i in range(5)]
    bad = api.enqueue("m", {"type": "fail", "max_attempts": 1})["id"]
    for job_id in ok:
        api.wait_state(job_id, "succeeded")
    api.wait_state(bad, "dead")
    assert api.get("/v1/queues/m/nothing")[0] == 404

    a = scrape(api.port)
    assert value(a, "spool_jobs_enqueued_total", queue="m") - value(before_api, "spool_jobs_enqueued_total", queue="m") == 6
    assert value(a, "spool_http_requests_total", route="/v1/queues/:queue/jobs", method="POST", status="201") >= 6
    assert value(a, "spool_http_requests_total", route="unmatched", status="404") >= 1
    assert value(a, "spool_queue_dead_jobs", queue="m") == 1
    assert value(a, "spool_queue_pending_jobs", queue="m", priority="normal") == 0
    for line in a.splitlines():
        if line.startswith("# TYPE"):
            name, kind = line.split()[2:4]
            if kind == "counter":
                assert name.endswith("_total"), name

    w = wait_for(lambda: (lambda t: t if value(t, "spool_jobs_processed_total", queue="m") >= 5 else None)(scrape(port)),
                 what="the worker's processed counter")
    assert value(w, "spool_jobs_processed_total", queue="m") - value(before_worker, "spool_jobs_processed_total", queue="m") == 5
    assert value(w, "spool_jobs_failed_total", queue="m") == 1
    assert value(w, "spool_jobs_dead_total", queue="m") == 1
    assert value(w, "spool_job_duration_seconds_count", queue="m") == 6
    assert value(w, "spool_job_start_latency_seconds_count", queue="m") == 6
    assert value(w, "spool_worker_loops", state="idle") + value(w, "spool_worker_loops", state="busy") == 2


@pytest.mark.single_redis("stops and restarts the redis-server")
def test_worker_health_endpoints(spawn, redis):
    port = free_port()
    spawn.worker(queues="h", concurrency=1, args=["--health-port", str(port)])

    def get(path):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read()

    assert get("/healthz")[0] == 200
    wait_for(lambda: get("/readyz")[0] == 200, what="worker ready")
    redis.stop()
    wait_for(lambda: get("/readyz")[0] == 503, timeout=15, what="readyz to report the outage")
    assert get("/healthz")[0] == 200, "liveness must not depend on Redis"
    redis.start()
    wait_for(lambda: get("/readyz")[0] == 200, timeout=20, what="worker ready again")
