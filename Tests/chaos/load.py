"""Steady enqueue load for the failover tests: one client posting jobs one after
another, recording every answer as (monotonic time, status, error code, job id)."""
import threading
import time

from harness import wait_for


class Enqueuer(threading.Thread):
    def __init__(self, api, queue, timeout=5, pause_s=0.005):
        super().__init__(daemon=True)
        self.api, self.queue, self.timeout, self.pause_s = api, queue, timeout, pause_s
        self.stop, self.records = threading.Event(), []

    def run(self):
        while not self.stop.is_set():
            try:
                status, _, data = self.api.post(f"/v1/queues/{self.queue}/jobs", {"type": "noop"}, timeout=self.timeout)
                code = data["error"]["code"] if status >= 400 and isinstance(data, dict) else None
                self.records.append((time.monotonic(), status, code, data.get("id") if status == 201 else None))
            except Exception as e:  # noqa: BLE001 - a hang or a reset fails the calling test
                self.records.append((time.monotonic(), None, repr(e), None))
            time.sleep(self.pause_s)

    def first_201_after(self, t_fault, timeout=30):
        """Waits for the API to answer 201 again after a fault at `t_fault`
        (monotonic) and returns when it did: the first 201 after the first
        refusal since the fault (a failover that refused nothing counts from
        the fault)."""
        refusals = [r[0] for r in self.records if r[0] > t_fault and r[1] != 201]
        since = refusals[0] if refusals else t_fault
        wait_for(lambda: any(r[0] > since and r[1] == 201 for r in self.records), timeout=timeout,
                 what="an enqueue answered 201 after the failover")
        return min(r[0] for r in self.records if r[0] > since and r[1] == 201)

    def finish(self, resp_client):
        """Stops the load; returns the ids answered 201 and those of them that
        `resp_client` (the primary now) does not hold. Fails on any answer but
        201 or 503 (a hang shows as an exception)."""
        self.stop.set()
        self.join(15)
        problems = [r for r in self.records if r[1] not in (201, 503)]
        assert not problems, f"answers other than 201/503: {problems[:5]}"
        accepted = [r[3] for r in self.records if r[1] == 201]
        states = resp_client.states(self.queue, accepted)
        return accepted, [i for i, s in states.items() if s is None]
