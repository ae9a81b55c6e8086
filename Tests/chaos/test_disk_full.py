"""Redis' disk fills up (issue 11, item 8), with `appendonly yes` and
`appendfsync everysec`: Redis refuses writes with MISCONF once an AOF write
failed. Spool must answer 503 naming it (never 500, never a hang), turn
/readyz to 503, count the errors by kind, and take jobs again by itself once
space is freed; and every job answered 201 must survive a Redis restart after
that (the AOF caught up).

The disk is a 4 MiB tmpfs mounted for the test (this needs root, as CI has)."""
import os
import subprocess
import tempfile
import time

import pytest

from harness import API, Redis, wait_for
from helpers import metric_sum

QUEUE = "disk"


@pytest.fixture
def small_disk():
    path = tempfile.mkdtemp(prefix="spool-disk-")
    out = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", path], capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {out.stderr.strip()}")
    yield path
    subprocess.run(["umount", "-l", path], capture_output=True)
    os.rmdir(path)


class DiskRedis(Redis):
    def __init__(self, directory):
        self.fixed_dir = directory
        super().__init__(aof=True, appendfsync="everysec")

    def start(self):
        self.dir = self.fixed_dir
        super().start()


def test_a_full_disk_is_503_misconf_and_recovers(small_disk, kit, figures):
    redis = DiskRedis(small_disk)
    api = None
    try:
        api = API(redis.url)
        filler = os.path.join(small_disk, "filler")
        # Leave about 300 KB free, then enqueue until Redis refuses.
        free = os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize
        with open(filler, "wb") as f:
            f.write(b"\0" * max(0, free - 300_000))
        payload = "p" * 20_000
        accepted, refusals, others = [], [], []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(refusals) < 5:
            status, _, data = api.post(f"/v1/queues/{QUEUE}/jobs", {"type": "noop", "payload": payload}, timeout=5)
            if status == 201:
                accepted.append(data["id"])
            elif status == 503 and data["error"]["code"] == "redis_unavailable":
                refusals.append(data["error"]["message"])
            else:
                others.append((status, data))
        assert not others, others[:3]
        assert refusals, f"the disk never filled ({len(accepted)} jobs accepted)"
        assert all("MISCONF" in m for m in refusals), refusals[:2]
        status, _, body = api.get("/readyz")
        assert status == 503 and "MISCONF" in body["error"]["message"], body
        _, _, text = api.get("/metrics")
        assert metric_sum(text, "spool_redis_errors_total", 'kind="misconf"') >= 1
        assert [l for l in api.log_lines() if l.get("kind") == "misconf" and l.get("level") == "error"]

        # Free the space: Redis retries the AOF write every second and takes writes again.
        os.unlink(filler)
        t_freed = time.monotonic()
        wait_for(lambda: api.get("/readyz")[0] == 200, timeout=15, what="readyz after space was freed")
        status, _, data = api.post(f"/v1/queues/{QUEUE}/jobs", {"type": "noop"})
        assert status == 201, data
        accepted.append(data["id"])
        recovered_ms = round((time.monotonic() - t_freed) * 1000)

        # Every accepted job is on disk: restart Redis from its AOF and look.
        redis.stop()
        redis.start()
        states = kit.RespClient(redis.port).states(QUEUE, accepted)
        lost = [i for i, s in states.items() if s is None]
        assert not lost, f"{len(lost)} of {len(accepted)} accepted jobs lost after the restart"
        figures.record("disk_full", accepted=len(accepted), refused_503=len(refusals), lost_after_restart=len(lost),
                       writable_again_after_ms=recovered_ms)
    finally:
        if api:
            api.stop()
        redis.stop()
