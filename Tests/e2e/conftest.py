import pytest

from harness import API, Redis, Worker


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
