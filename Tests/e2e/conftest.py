import os
import signal
import uuid

import pytest

from harness import API, Redis, Worker
from helpers import pgrep


@pytest.fixture
def marker():
    """A unique string that only the processes a test's handler starts carry in
    their command line (never the worker's: it is written inside the scripts).
    Any such process still alive at the end is killed by pid."""
    m = f"spool-e2e-{uuid.uuid4().hex}"
    yield m
    for pid in pgrep(m):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture
def redis():
    r = Redis()
    yield r
    r.cleanup()


@pytest.fixture
def spawn(redis):
    """Starts APIs and workers against the test's Redis; stops them all after."""
    started = []

    class Spawner:
        def api(self, env=None, args=()):
            p = API(redis.url, env=env, args=args)
            started.append(p)
            return p

        def worker(self, queues="default", concurrency=2, env=None, args=()):
            p = Worker(redis.url, queues=queues, concurrency=concurrency, env=env, args=args)
            started.append(p)
            return p

    yield Spawner()
    for p in reversed(started):
        p.stop()
