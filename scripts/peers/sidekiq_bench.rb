# Sidekiq measured on the same machine and in the same run as Spool (see
# scripts/bench_peers.py): the issue's targets are set against Sidekiq 6.4, the
# version Debian ships, so `make bench` measures it rather than quoting it.
#
# As a client:  ruby sidekiq_bench.rb REDIS_URL seq N    one push per job, N jobs in a row
#               ruby sidekiq_bench.rb REDIS_URL bulk N   push_bulk, 1,000 jobs per call
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
  when "bulk"
    (0...count).each_slice(1000) do |slice|
      Sidekiq::Client.push_bulk("class" => NoopJob, "queue" => "bench", "args" => slice.map { |i| [i] })
    end
  else
    abort "mode must be seq or bulk, not #{mode.inspect}"
  end
  seconds = Process.clock_gettime(Process::CLOCK_MONOTONIC) - started
  puts JSON.generate(jobs: count, seconds: seconds, rate: count / seconds, from: from, to: from + seconds)
end
