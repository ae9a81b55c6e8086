import COpenSSL
#if canImport(Glibc)
import Glibc
#endif

/// TLS to Redis (`rediss://`): whom to trust and who we are.
///
/// hiredis 0.14 (Debian 12) speaks no TLS, so hiredis talks plain RESP to a
/// relay inside the process (`TLSRelay`), which carries the bytes to Redis
/// over TLS made with these settings.
public struct RedisTLS: Hashable, Sendable {
    /// PEM file of the CAs to trust; nil: the system's (/etc/ssl/certs).
    public var caFile: String? = nil
    /// Client certificate and key (PEM), for a Redis that asks for one
    /// (`tls-auth-clients yes`): mutual TLS.
    public var certificateFile: String? = nil
    public var keyFile: String? = nil
    /// The name the server's certificate must carry, when it is not the
    /// URL's host (a connection by IP address to a certificate with a DNS name).
    public var serverName: String? = nil

    public init() {}

    public struct Invalid: Error, CustomStringConvertible {
        public let description: String
    }

    /// A client SSL_CTX: TLS 1.2 or newer, the peer's certificate verified
    /// against the CAs. The caller frees it.
    func makeContext() throws -> OpaquePointer {
        guard let ctx = SSL_CTX_new(TLS_client_method()) else { throw Invalid(description: "OpenSSL: \(TLSServerContext.lastError())") }
        var ok = false
        defer { if !ok { SSL_CTX_free(ctx) } }
        SSL_CTX_ctrl(ctx, SSL_CTRL_SET_MIN_PROTO_VERSION, Int(TLS1_2_VERSION), nil)
        ERR_clear_error()
        if let caFile {
            guard SSL_CTX_load_verify_locations(ctx, caFile, nil) == 1 else {
                throw Invalid(description: "SPOOL_REDIS_CA_FILE \(caFile): not a usable PEM file of CA certificates (\(TLSServerContext.lastError()))")
            }
        } else {
            SSL_CTX_set_default_verify_paths(ctx)
        }
        if let certificateFile {
            guard let keyFile else { throw Invalid(description: "SPOOL_REDIS_CERT_FILE is set without SPOOL_REDIS_KEY_FILE") }
            guard SSL_CTX_use_certificate_chain_file(ctx, certificateFile) == 1 else {
                throw Invalid(description: "SPOOL_REDIS_CERT_FILE \(certificateFile): not a usable PEM certificate (\(TLSServerContext.lastError()))")
            }
            guard SSL_CTX_use_PrivateKey_file(ctx, keyFile, 1 /* SSL_FILETYPE_PEM */) == 1,
                  SSL_CTX_check_private_key(ctx) == 1 else {
                throw Invalid(description: "SPOOL_REDIS_KEY_FILE \(keyFile): not the key of \(certificateFile) (\(TLSServerContext.lastError()))")
            }
        } else if keyFile != nil {
            throw Invalid(description: "SPOOL_REDIS_KEY_FILE is set without SPOOL_REDIS_CERT_FILE")
        }
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nil)
        ok = true
        return ctx
    }

    /// Prepares a new SSL object of `ctx` to talk to `host`: the name to send
    /// (SNI, for a name) and to find in the certificate (a DNS name, or an IP
    /// address in its subjectAltName).
    func configure(_ ssl: OpaquePointer, host: String) {
        let name = serverName ?? host
        if RedisTLS.isIPAddress(name) {
            X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name)
        } else {
            name.withCString { cName in
                _ = SSL_ctrl(ssl, SSL_CTRL_SET_TLSEXT_HOSTNAME, Int(TLSEXT_NAMETYPE_host_name), UnsafeMutableRawPointer(mutating: cName))
                _ = SSL_set1_host(ssl, cName)
            }
        }
    }

    static func isIPAddress(_ text: String) -> Bool {
        var v4 = in_addr(), v6 = in6_addr()
        return inet_pton(AF_INET, text, &v4) == 1 || inet_pton(AF_INET6, text, &v6) == 1
    }

    /// The reason a handshake failed, as a person reads it: the certificate
    /// check's verdict when that is what failed, else OpenSSL's error.
    static func failure(_ ssl: OpaquePointer?, error: UInt) -> String {
        if let ssl {
            let verdict = SSL_get_verify_result(ssl)
            if verdict != X509_V_OK {
                let text = X509_verify_cert_error_string(verdict).map { String(cString: $0) } ?? "code \(verdict)"
                return "the server's certificate was refused: \(text)"
            }
        }
        if error != 0 {
            var buffer = [CChar](repeating: 0, count: 256)
            ERR_error_string_n(error, &buffer, buffer.count)
            return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
        return "the TLS handshake failed"
    }
}
