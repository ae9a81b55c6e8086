#!/usr/bin/env bash
# `make run`: starts Redis (unless REDIS_URL is set), spool-api and one
# spool-worker from the release build, prints a curl line to try, and stops
# everything it started on Ctrl-C. Logs are JSON lines (as in production, so
# the README's jq examples work), shown here and kept in .spool/logs/.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.build/release
pids=()
redis_pid=""
# Stop the worker and the API first (they drain and deregister through Redis),
# then Redis itself.
cleanup() {
  trap - INT TERM EXIT
  echo; echo "stopping..."
  for ((i=${#pids[@]}-1; i>=0; i--)); do kill -TERM "${pids[i]}" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [[ -n "$redis_pid" ]]; then kill -TERM "$redis_pid" 2>/dev/null || true; wait "$redis_pid" 2>/dev/null || true; fi
  exit 0
}
trap cleanup INT TERM EXIT

if [[ -z "${REDIS_URL:-}" ]]; then
  if (echo > /dev/tcp/127.0.0.1/6379) 2>/dev/null; then
    echo "error: something already listens on 127.0.0.1:6379; stop it, or set REDIS_URL to use it" >&2
    exit 1
  fi
  mkdir -p .spool/redis
  # setsid: Ctrl-C in the terminal must not reach Redis before the others stop.
  setsid redis-server --bind 127.0.0.1 --port 6379 --dir "$PWD/.spool/redis" --appendonly yes --appendfsync everysec \
    --save "" --daemonize no --loglevel warning --logfile "$PWD/.spool/redis.log" &
  redis_pid=$!
  export REDIS_URL=redis://127.0.0.1:6379
  for _ in $(seq 50); do redis-cli -p 6379 ping >/dev/null 2>&1 && break; sleep 0.1; done
fi

export SPOOL_API_ADDR=${SPOOL_API_ADDR:-127.0.0.1:8080}
mkdir -p .spool/logs
# tee ignores Ctrl-C (it ends when its writer does), so the API's and the
# worker's shutdown lines still reach the terminal and the log files.
$bin/spool-api --log-format "${SPOOL_LOG_FORMAT:-json}" > >(trap '' INT; exec tee -a .spool/logs/api.log) 2>&1 &
pids+=($!)
$bin/spool-worker --log-format "${SPOOL_LOG_FORMAT:-json}" --queues "${SPOOL_QUEUES:-default}" \
  > >(trap '' INT; exec tee -a .spool/logs/worker.log) 2>&1 &
pids+=($!)
sleep 1

cat <<MSG

Spool is running: API on http://$SPOOL_API_ADDR, one worker, Redis at $REDIS_URL.
Logs (JSON lines): .spool/logs/api.log and .spool/logs/worker.log.
Try:
  id=\$(curl -s -X POST http://$SPOOL_API_ADDR/v1/queues/default/jobs -d '{"type":"echo","payload":{"hello":"world"}}' | sed 's/.*"id":"\([^"]*\)".*/\1/'); sleep 0.2; curl -s http://$SPOOL_API_ADDR/v1/jobs/\$id

Ctrl-C stops everything.
MSG
wait -n "${pids[@]}" || true
echo "a process exited; stopping the rest" >&2
