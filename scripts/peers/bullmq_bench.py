"""BullMQ's Python port (PyPI `bullmq`), measured on the same machine and in
the same run as Spool and Sidekiq (see scripts/bench_peers.py).

As a client:  python bullmq_bench.py REDIS_URL seq N       one add per job, N jobs in a row
              python bullmq_bench.py REDIS_URL bulk N      addBulk, 1,000 jobs per call
              python bullmq_bench.py REDIS_URL latency N   N clock jobs at 200 per second
  prints one JSON line: {"jobs": N, "seconds": S, "rate": R, "from": T0, "to": T1}
As a worker:  python bullmq_bench.py REDIS_URL work CONCURRENCY
  runs until SIGTERM: a `noop` job does nothing; a `clock` job writes how long
  after its stamp (the client's wall clock, µs) it began to the list `bench:latency`.
"""
import asyncio
import json
import signal
import sys
import time

from bullmq import Queue, Worker

QUEUE = "bench"


async def client(url, mode, count):
    queue = Queue(QUEUE, {"connection": url})
    start = time.monotonic()
    wall = time.time()
    if mode == "seq":
        for i in range(count):
            await queue.add("noop", {"n": i})
    elif mode == "bulk":
        for lo in range(0, count, 1000):
            await queue.addBulk([{"name": "noop", "data": {"n": i}} for i in range(lo, min(count, lo + 1000))])
    elif mode == "latency":
        for i in range(count):
            pause = start + i / 200 - time.monotonic()
            if pause > 0:
                await asyncio.sleep(pause)
            await queue.add("clock", {"t": time.time_ns() // 1000})
    else:
        sys.exit(f"mode must be seq, bulk or latency, not {mode!r}")
    seconds = time.monotonic() - start
    await queue.close()
    print(json.dumps({"jobs": count, "seconds": seconds, "rate": count / seconds, "from": wall, "to": wall + seconds}))


async def work(url, concurrency):
    import redis.asyncio as aioredis
    stamps = aioredis.from_url(url)

    async def process(job, _token):
        if job.name == "clock":
            began = time.time_ns() // 1000
            await stamps.rpush("bench:latency", began - job.data["t"])
        return None

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    worker = Worker(QUEUE, process, {"connection": url, "concurrency": concurrency})
    await stop.wait()
    await worker.close()
    await stamps.aclose()


if __name__ == "__main__":
    url, mode, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    asyncio.run(work(url, n) if mode == "work" else client(url, mode, n))
