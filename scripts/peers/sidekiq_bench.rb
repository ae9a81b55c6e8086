# Sidekiq measured on the same machine and in the same run as Spool (see
# scripts/bench_peers.py): the issue's targets are set against Sidekiq 6.4, the
# version Debian ships, so `make bench` measures it rather than quoting it.
#
# As a client:  ruby sidekiq_bench.rb REDIS_URL seq N    one push per job, N jobs in a row
#               ruby sidekiq_bench.rb REDIS_URL bulk N   push_bulk, 1,000 jobs per call
#               ruby sidekiq_bench.rb REDIS_URL latency N   N ClockJobs at 200 per second
#   prints one JSON line: {"jobs": N, "seconds": S, "rate": R, "from": T0, "to": T1}
#   (T0, T1: wall clock, so that runs of several clients at once can be joined)
# As the worker's job file:  sidekiq -r sidekiq_bench.rb -q bench -c 10
require "json"
require "logger"
require "sidekiq"

# redis-rb 4.8 warns on every push about Sidekiq 6.4's use of SADD; the warning
# (one stderr write per job) is not Sidekiq's cost.
Redis.silence_deprecations = true

# The job every scenario runs: does nothing, like Spool's `noop`.
class NoopJob
  include Sidekiq::Worker

  def perform(_n); end
end

# For the latency scenario: how long after the client's push (its wall clock,
# in µs, the argument) the job began; kept in the Redis list `bench:latency`.
class ClockJob
  include Sidekiq::Worker

  def perform(called_us)
    began = Process.clock_gettime(Process::CLOCK_REALTIME, :microsecond)
    Sidekiq.redis { |r| r.rpush("bench:latency", began - called_us) }
  end
end

# Per-job log lines off, as Spool's workers run in the benchmark (--log-level warning).
Sidekiq.configure_server { |config| config.logger.level = Logger::WARN }

if $PROGRAM_NAME == __FILE__
  url, mode, count = ARGV[0], ARGV[1], Integer(ARGV[2])
  Sidekiq.configure_client { |config| config.redis = { url: url, size: 1 } }
  Sidekiq.logger.level = Logger::WARN
  from = Process.clock_gettime(Process::CLOCK_REALTIME)
  started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
  case mode
  when "seq"
    count.times { |i| Sidekiq::Client.push("class" => NoopJob, "queue" => "bench", "args" => [i]) }
  when "latency"
    # `count` jobs at 200 per second, each stamped just before its push.
    count.times do |i|
      due = started + i / 200.0
      pause = due - Process.clock_gettime(Process::CLOCK_MONOTONIC)
      sleep(pause) if pause > 0
      Sidekiq::Client.push("class" => ClockJob, "queue" => "bench",
                           "args" => [Process.clock_gettime(Process::CLOCK_REALTIME, :microsecond)])
    end
  when "bulk"
    (0...count).each_slice(1000) do |slice|
      Sidekiq::Client.push_bulk("class" => NoopJob, "queue" => "bench", "args" => slice.map { |i| [i] })
    end
  else
    abort "mode must be seq, bulk or latency, not #{mode.inspect}"
  end
  seconds = Process.clock_gettime(Process::CLOCK_MONOTONIC) - started
  puts JSON.generate(jobs: count, seconds: seconds, rate: count / seconds, from: from, to: from + seconds)
end
