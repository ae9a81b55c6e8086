import Shared

/// The event streams open on one loop, grouped by the log they follow.
///
/// A stream costs no polling: the scripts that append to a log publish its
/// job id (or queue name) on the events channel, and the loop's pub/sub
/// connection hands the message to `notify`, which reads the log once for
/// all of the loop's streams of it, from the oldest position among them, and
/// writes each stream what it has not had yet. While nothing happens, nothing
/// runs but a timer that writes a comment on idle streams.
///
/// Nothing is buffered without bound: a stream whose client has more than
/// `maxBufferedBytes` unsent is cut off with a `cutoff` event naming where
/// to resume, and a read asks for at most `readBatch` entries at a time.
final class EventFeeds {
    final class Follower {
        let stream: HTTPStream
        /// The id of the last entry this stream got (or skipped).
        var cursor: EventID
        /// Queue streams of a client without `admin`: only its own jobs.
        let client: String?
        /// The job had finished when the stream started: it ends once
        /// caught up, even if it asked for events after the last one.
        let jobFinished: Bool
        var lastWriteMs = Clock.monotonicMillis()
        var ended = false

        init(stream: HTTPStream, cursor: EventID, client: String?, jobFinished: Bool) {
            self.stream = stream
            self.cursor = cursor
            self.client = client
            self.jobFinished = jobFinished
        }
    }

    final class Feed {
        /// The job id or queue name its messages carry.
        let name: String
        let key: String
        let job: JobID?
        var followers: [Follower] = []
        var reading = false
        var readAgain = false
        var refreshedMs = Clock.monotonicMillis()

        init(name: String, key: String, job: JobID?) {
            self.name = name
            self.key = key
            self.job = job
        }
    }

    static let readBatch = 256
    /// A queue's log lives this long after the last follower's refresh.
    static let queueLogTTLSeconds = 60

    private var feeds: [String: Feed] = [:]
    /// Set at shutdown: no stream starts any more.
    private(set) var closed = false
    private let loop: LibeventLoop
    private let redis: AsyncRedisConnection
    private let schema: KeySchema
    private let keepaliveMs: Int64
    private let maxBufferedBytes: Int
    private var timer: RepeatingTimer?

    init(loop: LibeventLoop, redis: AsyncRedisConnection, schema: KeySchema, keepaliveMs: Int64, maxBufferedBytes: Int) {
        self.loop = loop
        self.redis = redis
        self.schema = schema
        self.keepaliveMs = keepaliveMs
        self.maxBufferedBytes = maxBufferedBytes
        timer = loop.every(milliseconds: Int(max(100, min(keepaliveMs / 3, 5000)))) { [unowned self] in tick() }
    }

    /// Streams open on this loop (for metrics and tests).
    var streamCount: Int { feeds.values.reduce(0) { $0 + $1.followers.count } }

    /// Follows a job's log from after `after` (the start when nil).
    func follow(job: JobID, _ stream: HTTPStream, after: EventID?, finished: Bool) {
        guard !closed else { return stream.finish() }
        let feed = feed(named: job.text, key: schema.events(job), job: job)
        add(Follower(stream: stream, cursor: after ?? .zero, client: nil, jobFinished: finished), to: feed)
    }

    /// Follows a queue's log of state changes from after `after`, else from
    /// now; keeps the log alive while followed.
    func follow(queue: String, _ stream: HTTPStream, after: EventID?, client: String?, onError: @escaping (Error) -> Void) {
        redis.run(FollowQueueCall(schema: schema, queue: queue, ttlSeconds: EventFeeds.queueLogTTLSeconds)) { [self] result in
            switch result {
            case .failure(let e): onError(e)
            case .success(let span):
                guard stream.isOpen else { return }
                guard !closed else { return stream.finish() }
                let start = after ?? EventID(span.newest) ?? .zero
                if let after, let oldest = EventID(span.oldest), after < oldest { stream.write(ServerSentEvent.gap(after: after)) }
                let feed = feed(named: queue, key: schema.queueEvents(queue), job: nil)
                feed.refreshedMs = Clock.monotonicMillis()
                add(Follower(stream: stream, cursor: start, client: client, jobFinished: false), to: feed)
            }
        }
    }

    /// A message on the events channel: the log named has new entries.
    func notify(_ name: String) {
        if let feed = feeds[name] { read(feed) }
    }

    /// After the pub/sub connection was down: every log is read again.
    func recheckAll() {
        for feed in feeds.values { read(feed) }
    }

    /// Shutdown: every stream ends (clients reconnect to another replica
    /// with their Last-Event-ID).
    func closeAll() {
        closed = true
        for feed in feeds.values {
            for f in feed.followers where !f.ended { end(f) }
            prune(feed)
        }
    }

    private func feed(named name: String, key: String, job: JobID?) -> Feed {
        if let f = feeds[name] { return f }
        let f = Feed(name: name, key: key, job: job)
        feeds[name] = f
        return f
    }

    private func add(_ follower: Follower, to feed: Feed) {
        feed.followers.append(follower)
        APIMetrics.streamOpened()
        follower.stream.onClose = { [weak self, weak feed, unowned follower] in
            follower.ended = true
            if let self, let feed { self.prune(feed) }
        }
        read(feed)
    }

    private func prune(_ feed: Feed) {
        let before = feed.followers.count
        feed.followers.removeAll { $0.ended }
        for _ in feed.followers.count..<before { APIMetrics.streamClosed() }
        if feed.followers.isEmpty, feeds[feed.name] === feed { feeds[feed.name] = nil }
    }

    /// Reads the log from its slowest follower's position; one read at a
    /// time per log, again when a message came meanwhile or more is left.
    private func read(_ feed: Feed) {
        guard !feed.reading else { feed.readAgain = true; return }
        guard let from = feed.followers.lazy.filter({ !$0.ended }).map(\.cursor).min() else { return prune(feed) }
        feed.reading = true
        feed.readAgain = false
        redis.send(["XRANGE", feed.key, "(" + from.text, "+", "COUNT", String(EventFeeds.readBatch)]) { [weak self] result in
            guard let self else { return }
            feed.reading = false
            guard case .success(let reply) = result else {
                // A timeout or a failover of the log's node (the pub/sub
                // connection may be fine): read again shortly.
                loop.after(milliseconds: 500) { [weak self, weak feed] in
                    guard let self, let feed, feeds[feed.name] === feed else { return }
                    read(feed)
                }
                return
            }
            let entries = EventLogEntry.parse(reply)
            deliver(entries, from: from, to: feed, caughtUp: entries.count < EventFeeds.readBatch)
            if entries.isEmpty, feed.job != nil, !feed.readAgain { endIfGone(feed) }
            prune(feed)
            if feeds[feed.name] === feed, feed.readAgain || entries.count == EventFeeds.readBatch { read(feed) }
        }
    }

    /// `from`: where the read started. A stream that joined during the read
    /// further back gets nothing from it (it would skip what lies between);
    /// the read that its joining asked for serves it.
    private func deliver(_ entries: [EventLogEntry], from: EventID, to feed: Feed, caughtUp: Bool) {
        let now = Clock.monotonicMillis()
        for f in feed.followers where !f.ended && !(f.cursor < from) {
            for (index, entry) in entries.enumerated() where f.cursor < entry.id {
                f.cursor = entry.id
                if let job = feed.job {
                    guard let event = ServerSentEvent.job(entry, of: job) else { continue }
                    f.stream.write(event.bytes)
                    f.lastWriteMs = now
                    // A terminal state ends the stream when nothing follows it:
                    // a dead job retried goes on (queued, running, ...).
                    if event.terminal && caughtUp && index == entries.count - 1 { end(f); break }
                } else if let bytes = ServerSentEvent.queue(entry, client: f.client) {
                    f.stream.write(bytes)
                    f.lastWriteMs = now
                }
                if cutIfBehind(f) { break }
            }
            if !f.ended && caughtUp && f.jobFinished { end(f) }
        }
    }

    /// A job log read empty: if the log is gone (the job was deleted or
    /// expired), its streams end; their clients then get 404 when they come back.
    private func endIfGone(_ feed: Feed) {
        redis.send(["EXISTS", feed.key]) { [weak self] result in
            guard let self, case .success(let reply) = result, reply.int == 0 else { return }
            for f in feed.followers where !f.ended { end(f) }
            prune(feed)
        }
    }

    private func end(_ f: Follower) {
        f.ended = true
        f.stream.finish()
    }

    /// Ends a stream whose client has more than the limit unsent, checked
    /// after every event written; true when it did.
    @discardableResult
    private func cutIfBehind(_ f: Follower) -> Bool {
        guard f.stream.bufferedBytes > maxBufferedBytes else { return false }
        f.stream.write(ServerSentEvent.cutoff(after: f.cursor, maxBuffered: maxBufferedBytes))
        APIMetrics.streamCut()
        end(f)
        return true
    }

    /// Comments on idle streams; keeps followed queue logs alive.
    private func tick() {
        let now = Clock.monotonicMillis()
        for feed in feeds.values {
            for f in feed.followers where !f.ended && now - f.lastWriteMs >= keepaliveMs {
                f.stream.write(ServerSentEvent.keepalive)
                f.lastWriteMs = now
                cutIfBehind(f)
            }
            if feed.job == nil, now - feed.refreshedMs >= Int64(EventFeeds.queueLogTTLSeconds) * 1000 / 3 {
                feed.refreshedMs = now
                redis.run(FollowQueueCall(schema: schema, queue: feed.name, ttlSeconds: EventFeeds.queueLogTTLSeconds)) { _ in }
            }
            prune(feed)
        }
    }
}
