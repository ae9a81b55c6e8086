#if canImport(Glibc)
import Glibc
#endif

/// Pipes to and from child processes, read and written without blocking and
/// waited on with poll(2): the one place with their buffers' pointers.
public enum PipeIO {
    /// A new pipe whose ends close on exec (a spawn's descriptor copies clear
    /// the flag on the child's copies).
    public static func make() throws -> (read: Int32, write: Int32) {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { throw SpawnError(description: "could not make a pipe: \(String(cString: strerror(errno)))") }
        for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        return (fds[0], fds[1])
    }

    public static func setNonBlocking(_ fd: Int32) {
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
    }

    public static func close(_ fd: Int32) {
        if fd >= 0 { _ = Glibc.close(fd) }
    }

    public enum ReadResult {
        case bytes([UInt8])
        case wouldBlock
        /// End of file, or an error: the pipe is done.
        case closed
    }

    /// Reads what is there, up to `max` bytes.
    public static func read(_ fd: Int32, max: Int = 65536) -> ReadResult {
        var buffer = [UInt8](repeating: 0, count: max)
        let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
        if n > 0 { return .bytes(Array(buffer[..<n])) }
        if n < 0 && (errno == EAGAIN || errno == EINTR) { return .wouldBlock }
        return .closed
    }

    /// Writes what the pipe takes of `bytes[offset...]` (at most 64 KiB):
    /// the count written (0 when it would block), or nil when the reader is
    /// gone or the write failed.
    public static func write(_ fd: Int32, _ bytes: [UInt8], from offset: Int) -> Int? {
        let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + offset, min(65536, bytes.count - offset)) }
        if n >= 0 { return n }
        return errno == EAGAIN || errno == EINTR ? 0 : nil
    }

    /// Writes a short text whole (a pipe takes up to PIPE_BUF bytes at once).
    @discardableResult
    public static func write(_ fd: Int32, _ text: String) -> Bool {
        text.withCString { Glibc.write(fd, $0, strlen($0)) } == text.utf8.count
    }

    /// Waits up to `timeoutMs` until one of `readable` has data or is closed,
    /// or `writable` (if any) can take data. Returns the descriptors that are
    /// ready; nil when poll itself failed.
    public static func wait(readable: [Int32], writable: Int32?, timeoutMs: Int32) -> [Int32]? {
        var fds = readable.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
        if let w = writable { fds.append(pollfd(fd: w, events: Int16(POLLOUT), revents: 0)) }
        if poll(&fds, nfds_t(fds.count), timeoutMs) < 0 { return errno == EINTR ? [] : nil }
        return fds.filter { $0.revents != 0 }.map(\.fd)
    }
}
