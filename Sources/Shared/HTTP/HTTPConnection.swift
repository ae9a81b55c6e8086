import CLibevent
#if canImport(Glibc)
import Glibc
#endif

/// One client connection on an event loop: reads requests one at a time
/// (pipelined ones wait their turn), hands each to the router, writes the
/// reply, and enforces the limits in `HTTPLimits`.
///
/// Lifetime: the connection keeps itself retained while its socket is open.
/// A request still waiting for Redis holds a `Responder`, which keeps the
/// object alive; a reply that arrives after the client left is dropped.
final class HTTPConnection {
    private let bev: OpaquePointer
    private unowned let server: HTTPListener
    private var head: HTTPHeadParser.Head?
    /// The body of a chunked request, read as it arrives.
    private var chunkedBody: ChunkedBody?
    private var requestStartedAt: Int64 = 0
    private var handling = false
    private var inReadLoop = false
    private var closeAfterWrite = false
    /// After an error reply: our side is half-closed and what the client still
    /// sends is read and dropped, so that closing does not reset the connection
    /// (a reset can destroy the reply before the client reads it).
    private var lingering = false
    private var lingerStartedAt: Int64 = 0
    private var lingerDiscarded = 0
    private(set) var closed = false

    /// Bounds of a lingering close: bytes dropped, and time spent.
    static let maxLingerBytes = 64 << 20
    static let maxLingerMs: Int64 = 5000
    private var readingSuspended = false
    /// The request being answered is a HEAD: its reply has no body.
    private var isHead = false
    /// Bumped for each request, so a late reply to an old request is ignored.
    private var sequence = 0

    /// The socket carries TLS: every byte goes through the bufferevent (which
    /// encrypts), never straight to the socket.
    private let tls: Bool
    /// The response being streamed (server-sent events), if any.
    private var stream: HTTPStream?
    private var streamKeepAlive = false
    /// The request being answered is HTTP/1.0: a stream is sent raw and ends
    /// by closing the connection (1.0 has no chunked encoding).
    private var isHTTP10 = false

    init(bev: OpaquePointer, server: HTTPListener, tls: Bool = false) {
        self.bev = bev
        self.server = server
        self.tls = tls
    }

    func start() {
        let me = Unmanaged.passRetained(self).toOpaque()
        bufferevent_setcb(bev, { _, ctx in
            HTTPConnection.from(ctx).readAvailable()
        }, { _, ctx in
            HTTPConnection.from(ctx).writeDrained()
        }, { _, events, ctx in
            HTTPConnection.from(ctx).eventOccurred(events)
        }, me)
        var rt = timeval(tv_sec: server.limits.readTimeoutMs / 1000, tv_usec: (server.limits.readTimeoutMs % 1000) * 1000)
        var wt = timeval(tv_sec: server.limits.writeTimeoutMs / 1000, tv_usec: (server.limits.writeTimeoutMs % 1000) * 1000)
        bufferevent_set_timeouts(bev, &rt, &wt)
        // libevent stops reading past this much unprocessed input, so a client
        // that pipelines while its request waits for Redis cannot grow memory.
        bufferevent_setwatermark(bev, Int16(EV_READ), 0, server.limits.maxHeadBytes + server.limits.maxBodyBytes + 4096)
        bufferevent_enable(bev, Int16(EV_READ | EV_WRITE))
    }

    private static func from(_ ctx: UnsafeMutableRawPointer?) -> HTTPConnection {
        Unmanaged<HTTPConnection>.fromOpaque(ctx!).takeUnretainedValue()
    }

    // MARK: - reading

    /// Shutdown: closes now when no request is being answered, else after the
    /// current response (which then says `Connection: close`).
    func closeWhenIdle() {
        guard !closed else { return }
        if handling || closeAfterWrite || evbuffer_get_length(bufferevent_get_output(bev)) > 0 {
            // A response is being worked on or still draining to the client:
            // close once it is out (writeDrained), read nothing more meanwhile.
            closeAfterWrite = true
            bufferevent_disable(bev, Int16(EV_READ))
        } else {
            close()
        }
    }

    private func readAvailable() {
        if lingering { return discardInput() }
        guard !closed, !handling, !inReadLoop else { return }
        inReadLoop = true
        defer { inReadLoop = false }
        while !closed && !handling && !closeAfterWrite {
            guard let request = nextRequest() else { return }
            handling = true
            sequence += 1
            isHead = request.method == "HEAD"
            server.handler.handle(request, Responder(connection: self, sequence: sequence, keepAlive: request.keepAlive))
        }
    }

    /// The next whole request in the input buffer, or nil when more bytes are
    /// needed (or the connection was failed with an error reply).
    private func nextRequest() -> HTTPRequest? {
        let input = bufferevent_get_input(bev)
        let now = Clock.monotonicMillis()
        if head == nil {
            skipBlankLines(input)
            let available = evbuffer_get_length(input)
            if available == 0 { requestStartedAt = 0; return nil }
            if requestStartedAt == 0 { requestStartedAt = now }
            let found = "\r\n\r\n".withCString { evbuffer_search(input, $0, 4, nil) }
            if found.pos < 0 {
                if available > server.limits.maxHeadBytes {
                    fail(.error(431, "headers_too_large", "request head is larger than \(server.limits.maxHeadBytes) bytes"))
                } else if now - requestStartedAt > Int64(server.limits.readTimeoutMs) {
                    fail(.error(408, "request_timeout", "request was not received within \(server.limits.readTimeoutMs) ms"))
                }
                return nil
            }
            let headLength = found.pos + 4
            guard headLength <= server.limits.maxHeadBytes else {
                fail(.error(431, "headers_too_large", "request head is larger than \(server.limits.maxHeadBytes) bytes"))
                return nil
            }
            let raw = evbuffer_pullup(input, headLength)!
            do {
                head = try HTTPHeadParser.parse(UnsafeBufferPointer(start: raw, count: headLength - 4))
            } catch {
                failParsing(error)
                return nil
            }
            evbuffer_drain(input, headLength)
            if head!.contentLength > server.limits.maxBodyBytes {
                fail(.error(413, "payload_too_large",
                            "request body of \(head!.contentLength) bytes is over the limit of \(server.limits.maxBodyBytes) bytes"))
                return nil
            }
            if head!.expectsContinue && (head!.chunked || evbuffer_get_length(input) < head!.contentLength) {
                write(Array("HTTP/1.1 100 Continue\r\n\r\n".utf8))
            }
            if head!.chunked { chunkedBody = ChunkedBody(maxBodyBytes: server.limits.maxBodyBytes) }
        }
        guard let h = head else { return nil }
        if h.chunked, var chunks = chunkedBody {
            chunkedBody = nil  // one owner of the body while it grows (no copy per chunk)
            do {
                try chunks.consume(input!)
            } catch {
                failParsing(error)
                return nil
            }
            chunkedBody = chunks
            guard chunks.isComplete else {
                if now - requestStartedAt > Int64(server.limits.readTimeoutMs) {
                    fail(.error(408, "request_timeout", "request body was not received within \(server.limits.readTimeoutMs) ms"))
                }
                return nil
            }
            head = nil
            chunkedBody = nil
            requestStartedAt = 0
            isHTTP10 = h.isHTTP10
            return HTTPRequest(method: h.method, path: h.path, query: h.query, headers: h.headers, body: chunks.body, keepAlive: h.keepAlive)
        }
        guard evbuffer_get_length(input) >= h.contentLength else {
            if now - requestStartedAt > Int64(server.limits.readTimeoutMs) {
                fail(.error(408, "request_timeout", "request body was not received within \(server.limits.readTimeoutMs) ms"))
            }
            return nil
        }
        var body = [UInt8](repeating: 0, count: h.contentLength)
        if h.contentLength > 0 { _ = body.withUnsafeMutableBytes { evbuffer_remove(input, $0.baseAddress, h.contentLength) } }
        head = nil
        requestStartedAt = 0
        isHTTP10 = h.isHTTP10
        return HTTPRequest(method: h.method, path: h.path, query: h.query, headers: h.headers, body: body, keepAlive: h.keepAlive)
    }

    /// Answers a request that could not be read with its error, and closes.
    private func failParsing(_ error: Error) {
        if let e = error as? HTTPParseError {
            fail(.error(e.status, e.code, e.message))
        } else {
            fail(.error(400, "bad_request", "\(error)"))
        }
    }

    private func skipBlankLines(_ input: OpaquePointer?) {
        var two: (UInt8, UInt8) = (0, 0)
        while evbuffer_get_length(input) >= 2 {
            _ = withUnsafeMutableBytes(of: &two) { evbuffer_copyout(input, $0.baseAddress, 2) }
            guard two == (0x0D, 0x0A) else { return }
            evbuffer_drain(input, 2)
        }
    }

    // MARK: - writing

    fileprivate func send(_ response: HTTPResponse, sequence: Int, keepAlive: Bool, observer: ((Int) -> Void)?) {
        guard !closed, sequence == self.sequence, handling, stream == nil else { return }
        handling = false
        observer?(response.status)
        let keepAlive = keepAlive && !server.closing && !closeAfterWrite
        if !keepAlive { closeAfterWrite = true }
        let bytes = response.serialized(keepAlive: keepAlive, includeBody: !isHead)
        if closeAfterWrite { return write(bytes) }
        writeDirect(bytes)
        if readingSuspended {
            readingSuspended = false
            bufferevent_enable(bev, Int16(EV_READ))
        }
        if !inReadLoop { readAvailable() }
    }

    /// Replies with an error and closes: the input can no longer be trusted
    /// to line up with request boundaries.
    private func fail(_ response: HTTPResponse) {
        closeAfterWrite = true
        lingering = true
        write(response.serialized(keepAlive: false))
    }

    private func discardInput() {
        let input = bufferevent_get_input(bev)
        let n = evbuffer_get_length(input)
        evbuffer_drain(input, n)
        lingerDiscarded += n
        if lingerDiscarded > HTTPConnection.maxLingerBytes
            || (lingerStartedAt > 0 && Clock.monotonicMillis() - lingerStartedAt > HTTPConnection.maxLingerMs) {
            close()
        }
    }

    /// Stops reading (and so the read timeout) until the current request is
    /// answered: a long-poll may wait far longer than the read timeout.
    fileprivate func suspendReading() {
        guard handling, !readingSuspended else { return }
        readingSuspended = true
        bufferevent_disable(bev, Int16(EV_READ))
    }

    /// Writes straight to the socket when nothing is queued before it (the
    /// usual case): no write event to add and remove, no extra loop pass.
    /// What the socket does not take goes through the bufferevent.
    private func writeDirect(_ bytes: [UInt8]) {
        let output = bufferevent_get_output(bev)
        var sent = 0
        if !tls && evbuffer_get_length(output) == 0 {
            let fd = bufferevent_getfd(bev)
            sent = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT)) }
            if sent < 0 { sent = 0 }
        }
        if sent < bytes.count {
            _ = bytes.withUnsafeBytes { bufferevent_write(bev, $0.baseAddress! + sent, $0.count - sent) }
        }
    }

    private func write(_ bytes: [UInt8]) {
        _ = bytes.withUnsafeBytes { bufferevent_write(bev, $0.baseAddress, $0.count) }
    }

    private func writeDrained() {
        guard closeAfterWrite, !closed else { return }
        guard lingering else { return close() }
        if lingerStartedAt == 0 {
            lingerStartedAt = Clock.monotonicMillis()
            // Under TLS a half-close of the socket would cut the session
            // mid-record: the client closes on our `Connection: close` instead.
            if !tls { shutdown(bufferevent_getfd(bev), Int32(SHUT_WR)) }
            var tv = timeval(tv_sec: 1, tv_usec: 0)
            bufferevent_set_timeouts(bev, &tv, nil)
            bufferevent_enable(bev, Int16(EV_READ))
            discardInput()
        }
    }

    private func eventOccurred(_ events: Int16) {
        // A TLS handshake that completed: the conversation starts.
        if events & Int16(BEV_EVENT_CONNECTED) != 0 && events & Int16(BEV_EVENT_ERROR | BEV_EVENT_EOF) == 0 { return }
        // A read timeout in the middle of a request is answered (408) before
        // closing; EOF, errors and other timeouts just end the conversation.
        let readTimeout = Int16(BEV_EVENT_TIMEOUT | BEV_EVENT_READING)
        if events & readTimeout == readTimeout, !handling, !closeAfterWrite,
           head != nil || evbuffer_get_length(bufferevent_get_input(bev)) > 0 {
            return fail(.error(408, "request_timeout", "request was not received within \(server.limits.readTimeoutMs) ms"))
        }
        close()
    }

    func close() {
        guard !closed else { return }
        closed = true
        if let stream {
            self.stream = nil
            stream.connectionClosed()
        }
        bufferevent_free(bev)
        server.connectionClosed(self)
        Unmanaged.passUnretained(self).release()
    }
}

// MARK: - streaming

extension HTTPConnection {
    /// Sends `head` (status and headers) with a chunked body to come, written
    /// through the returned stream until it finishes. The request counts as
    /// being answered until then: no pipelined request is read meanwhile.
    /// The read timeout is off (the client only listens), the write timeout
    /// stays on (a client that stops reading is dropped). Nil when the
    /// client is gone, or for HEAD (the head is all it gets).
    fileprivate func startStream(_ head: HTTPResponse, sequence: Int, keepAlive: Bool, observer: ((Int) -> Void)?) -> HTTPStream? {
        guard !closed, sequence == self.sequence, handling, stream == nil else { return nil }
        if isHead {
            send(head, sequence: sequence, keepAlive: keepAlive, observer: observer)
            return nil
        }
        observer?(head.status)
        streamKeepAlive = keepAlive && !server.closing && !closeAfterWrite && !isHTTP10
        writeBytes(head.streamHead(keepAlive: streamKeepAlive, chunked: !isHTTP10))
        var wt = timeval(tv_sec: server.limits.writeTimeoutMs / 1000, tv_usec: (server.limits.writeTimeoutMs % 1000) * 1000)
        bufferevent_set_timeouts(bev, nil, &wt)
        // Reading stays on, so that a client that leaves is noticed (EOF).
        if readingSuspended {
            readingSuspended = false
            bufferevent_enable(bev, Int16(EV_READ))
        }
        let s = HTTPStream(connection: self)
        stream = s
        return s
    }

    /// One chunk of the streamed body.
    fileprivate func writeChunk(_ bytes: [UInt8]) {
        guard !closed, !bytes.isEmpty else { return }
        if isHTTP10 { return writeBytes(bytes) }
        var framed = Array(String(bytes.count, radix: 16).utf8)
        framed.reserveCapacity(framed.count + bytes.count + 4)
        framed += [0x0D, 0x0A]
        framed += bytes
        framed += [0x0D, 0x0A]
        writeBytes(framed)
    }

    /// Ends the streamed body; the connection goes on with the next request
    /// (or closes, when it may not be kept alive).
    fileprivate func finishStream() {
        guard !closed, stream != nil else { return }
        stream = nil
        handling = false
        if !isHTTP10 { writeBytes(Array("0\r\n\r\n".utf8)) }
        var rt = timeval(tv_sec: server.limits.readTimeoutMs / 1000, tv_usec: (server.limits.readTimeoutMs % 1000) * 1000)
        var wt = timeval(tv_sec: server.limits.writeTimeoutMs / 1000, tv_usec: (server.limits.writeTimeoutMs % 1000) * 1000)
        bufferevent_set_timeouts(bev, &rt, &wt)
        if !streamKeepAlive || server.closing || closeAfterWrite {
            closeAfterWrite = true
            bufferevent_disable(bev, Int16(EV_READ))
            if outputLength == 0 { close() }
            return
        }
        if !inReadLoop { readAvailable() }
    }

    fileprivate var outputLength: Int { closed ? 0 : evbuffer_get_length(bufferevent_get_output(bev)) }

    private func writeBytes(_ bytes: [UInt8]) {
        if closeAfterWrite || tls { return write(bytes) }
        writeDirect(bytes)
    }
}

/// A response body written over time (server-sent events), on the
/// connection's loop thread. `onClose` is called once if the client leaves
/// (or the connection fails) before `finish`.
public final class HTTPStream {
    private let connection: HTTPConnection
    public var onClose: (() -> Void)?
    public private(set) var isOpen = true

    fileprivate init(connection: HTTPConnection) { self.connection = connection }

    public func write(_ bytes: [UInt8]) {
        guard isOpen else { return }
        connection.writeChunk(bytes)
    }

    /// Bytes written but not yet taken by the client's socket.
    public var bufferedBytes: Int { isOpen ? connection.outputLength : 0 }

    public func finish() {
        guard isOpen else { return }
        isOpen = false
        onClose = nil
        connection.finishStream()
    }

    fileprivate func connectionClosed() {
        guard isOpen else { return }
        isOpen = false
        let call = onClose
        onClose = nil
        call?()
    }
}

/// Answers one request, once. Handlers may call it at once or from a Redis
/// callback later, always on the connection's loop thread.
public struct Responder {
    fileprivate let connection: HTTPConnection
    fileprivate let sequence: Int
    let keepAlive: Bool
    fileprivate var observer: ((Int) -> Void)? = nil

    init(connection: HTTPConnection, sequence: Int, keepAlive: Bool) {
        self.connection = connection
        self.sequence = sequence
        self.keepAlive = keepAlive
    }

    public func send(_ response: HTTPResponse) {
        connection.send(response, sequence: sequence, keepAlive: keepAlive, observer: observer)
    }

    /// Starts a streamed reply (see HTTPConnection.startStream); nil when the
    /// client is gone or asked with HEAD.
    public func startStream(_ head: HTTPResponse) -> HTTPStream? {
        connection.startStream(head, sequence: sequence, keepAlive: keepAlive, observer: observer)
    }

    /// For a reply that may take long (a long-poll): pauses reading and the
    /// read timeout until the reply is sent.
    public func suspendReading() { connection.suspendReading() }

    /// The same responder, also telling `observe` the status it answers with
    /// (once, when the response is really sent).
    public func observing(_ observe: @escaping (Int) -> Void) -> Responder {
        var copy = self
        copy.observer = observe
        return copy
    }
}
