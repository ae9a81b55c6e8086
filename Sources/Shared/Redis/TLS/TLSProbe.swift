import COpenSSL
#if canImport(Glibc)
import Glibc
#endif

extension RedisTLS {
    /// At start: one TLS handshake with Redis, so that a certificate that
    /// will never be trusted (wrong CA, wrong host name, no client
    /// certificate where Redis asks for one) stops the process with the reason
    /// instead of retrying forever. A Redis that cannot be reached yet is not
    /// an error here (the connections wait for it as they do without TLS).
    /// Throws the reason; returns when the handshake passed or Redis is down.
    public static func checkAtStart(_ endpoint: RedisEndpoint, timeoutMs: Int = 3000) throws {
        guard let tls = endpoint.tls else { return }
        let ctx = try tls.makeContext()
        defer { SSL_CTX_free(ctx) }
        guard let fd = connectTCP(host: endpoint.host, port: endpoint.port, timeoutMs: timeoutMs) else { return }
        defer { close(fd) }
        guard let ssl = SSL_new(ctx) else { return }
        defer { SSL_free(ssl) }
        tls.configure(ssl, host: endpoint.host)
        SSL_set_fd(ssl, fd)
        ERR_clear_error()
        if SSL_connect(ssl) == 1 {
            // TLS 1.3 reports a refused client certificate only with the
            // server's first record: read what a PING answers.
            let ping = Array("PING\r\n".utf8)
            _ = ping.withUnsafeBytes { SSL_write(ssl, $0.baseAddress, Int32($0.count)) }
            var reply = [UInt8](repeating: 0, count: 64)
            if SSL_read(ssl, &reply, Int32(reply.count)) > 0 { return }
        }
        let error = ERR_peek_last_error()
        throw Invalid(description: "TLS to \(endpoint.address): \(RedisTLS.failure(ssl, error: error))")
    }

    /// A blocking TCP connection with send and receive timeouts, or nil.
    private static func connectTCP(host: String, port: Int, timeoutMs: Int) -> Int32? {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        // SOCK_STREAM (1 on Linux): the release build of this file cannot see
        // Glibc's enum constant next to OpenSSL's module.
        hints.ai_socktype = 1
        var info: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, String(port), &hints, &info) == 0, let ai = info else { return nil }
        defer { freeaddrinfo(info) }
        let fd = socket(ai.pointee.ai_family, ai.pointee.ai_socktype, ai.pointee.ai_protocol)
        guard fd >= 0 else { return nil }
        var tv = timeval(tv_sec: timeoutMs / 1000, tv_usec: (timeoutMs % 1000) * 1000)
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        guard connect(fd, ai.pointee.ai_addr, ai.pointee.ai_addrlen) == 0 else {
            close(fd)
            return nil
        }
        return fd
    }
}
