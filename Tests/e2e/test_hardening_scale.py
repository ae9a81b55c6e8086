"""10,000 queue names (issue 11, item 1): a scrape must not take the API down."""
import threading
import time

from helpers import percentile_ms, rss_mb


def test_ten_thousand_queues_scrape_fast_and_keep_health_probes_fast(spawn, redis):
    # As an existing deployment may have them: written before the queue limit existed.
    redis.cli("EVAL", "for i = 0, 9999 do redis.call('SADD', KEYS[1], 'q' .. i) end", "1", "spool:queues")
    api = spawn.api()
    for i in range(0, 10000, 200):
        api.post(f"/v1/queues/q{i}/jobs/batch", {"jobs": [{"type": "noop"}] * (1 + i // 200)})
    latencies = []
    stop = threading.Event()

    def probe():
        while not stop.is_set():
            t0 = time.monotonic()
            status, _, _ = api.get("/healthz", timeout=30)
            latencies.append((time.monotonic() - t0, status))
            time.sleep(0.01)

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        scrape_s = []
        for _ in range(5):
            t0 = time.monotonic()
            status, headers, text = api.get("/metrics", timeout=30)
            scrape_s.append(time.monotonic() - t0)
            assert status == 200
            assert len(text.encode()) == int(headers["content-length"]), "the body was cut off"
            assert "spool_metrics_queues_omitted 9800" in text or "spool_metrics_queues_omitted 9800.0" in text
    finally:
        stop.set()
        prober.join(30)
    assert max(scrape_s) < 1.0, f"scrapes took {scrape_s}"
    assert all(s == 200 for _, s in latencies)
    p99 = percentile_ms([l for l, _ in latencies], 99)
    assert p99 < 50, f"/healthz p99 {p99:.1f} ms during scrapes"
    # The deepest queue is shown; the listing pages.
    assert 'spool_queue_pending_jobs{queue="q9800",priority="normal"} 50' in text
    status, _, body = api.get("/v1/queues")
    assert status == 200 and len(body["queues"]) == 100 and body["next_cursor"] == body["queues"][-1]["name"]
    assert rss_mb(api.pid) < 40, f"API RSS {rss_mb(api.pid):.1f} MB"
