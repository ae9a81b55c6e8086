"""A handler process gets stdin, stdout, stderr and the progress pipe, and
nothing else of the worker (no Redis sockets, no other handler's pipes)."""


def test_handler_sees_only_its_four_descriptors(spawn, tmp_path):
    script = tmp_path / "fds.sh"
    script.write_text("#!/bin/sh\nexec python3 -c 'import os, json; print(json.dumps(sorted(int(f) for f in os.listdir(\"/proc/self/fd\"))))'\n")
    script.chmod(0o755)
    api = spawn.api()
    spawn.worker(queues="iso", concurrency=4, args=["--handler", f"fds={script}"])
    ids = [api.enqueue("iso", {"type": "fds"})["id"] for _ in range(8)]
    for job_id in ids:
        job = api.wait_state(job_id, "succeeded")
        fds = job["result"]
        # 0-3 are the handler's; one more is the directory python is listing.
        assert set(fds) - {0, 1, 2, 3} <= {max(fds)}, fds
        assert len(fds) <= 5, fds
