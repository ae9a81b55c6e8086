import XCTest
@testable import Shared
#if canImport(Glibc)
import Glibc
#endif

/// A throwaway redis-server on a free loopback port in a temp dir, stopped
/// (and its dir removed) when the test ends, whatever happens.
///
/// Plain POSIX rather than Foundation's Process: Foundation's C modules and
/// libevent's disagree on `fd_set` when both are visible in one target.
final class TestRedis {
    let port: Int
    let dir: String
    private var pid: pid_t = 0

    init() throws {
        var template = Array("/tmp/spool-test-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw XCTSkip("mkdtemp failed") }
        dir = String(cString: made)
        port = try TestRedis.freePort()
        let server = try TestRedis.which("redis-server")
        let args = [server, "--port", "\(port)", "--bind", "127.0.0.1", "--dir", dir, "--save", "",
                    "--appendonly", "no", "--loglevel", "warning", "--logfile", "\(dir)/redis.log"]
        var child: pid_t = 0
        let cargs = args.map { strdup($0) } + [nil]
        defer { cargs.forEach { free($0) } }
        guard posix_spawn(&child, server, nil, nil, cargs, environ) == 0 else { throw XCTSkip("could not start redis-server") }
        pid = child
        let deadline = Clock.monotonicMillis() + 10_000
        while Clock.monotonicMillis() < deadline {
            if (try? connection().command(["PING"])) == .status("PONG") { return }
            usleep(20_000)
        }
        stop()
        throw XCTSkip("redis-server did not start on port \(port)")
    }

    var endpoint: RedisEndpoint {
        var e = RedisEndpoint()
        e.port = port
        return e
    }

    func connection() -> RedisConnection { RedisConnection(endpoint: endpoint, commandTimeoutMs: 5000) }

    func stop() {
        if pid > 0 {
            kill(pid, SIGTERM)
            var status: Int32 = 0
            waitpid(pid, &status, 0)
            pid = 0
        }
        unlink("\(dir)/redis.log")
        rmdir(dir)
    }

    static func which(_ name: String) throws -> String {
        for dir in ["/usr/bin", "/usr/local/bin", "/usr/sbin"] where access("\(dir)/\(name)", X_OK) == 0 {
            return "\(dir)/\(name)"
        }
        throw XCTSkip("\(name) is not installed (make test installs it)")
    }

    static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                bind(fd, sa, len) == 0 && getsockname(fd, sa, &len) == 0
            }
        }
        guard ok else { throw XCTSkip("no free port") }
        return Int(UInt16(bigEndian: addr.sin_port))
    }
}
