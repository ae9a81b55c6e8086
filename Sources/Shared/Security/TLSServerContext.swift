import COpenSSL
import Logging

/// The API's TLS settings as OpenSSL holds them: one SSL_CTX made from a PEM
/// certificate chain and key, TLS 1.2 and 1.3 only. Each new connection gets
/// an SSL object from the context in force; `reload` makes a new context from
/// the files (a renewed certificate) and swaps it in, while connections
/// already open keep the one they started with (OpenSSL counts its users).
/// Used from every event loop: the swap and `SSL_new` are under one lock.
public final class TLSServerContext: @unchecked Sendable {  // `context` and `stamps` are under `lock`
    public let certificatePath: String
    public let keyPath: String
    private let lock = Lock()
    private var context: OpaquePointer
    private var stamps: [FileStamp?]

    public struct Invalid: Error, CustomStringConvertible {
        public let description: String
    }

    /// Throws, naming the file and OpenSSL's reason, when the files cannot be
    /// used (missing, not PEM, key not matching the certificate).
    public init(certificate: String, key: String) throws {
        certificatePath = certificate
        keyPath = key
        stamps = [FileStamp(certificate), FileStamp(key)]
        context = try TLSServerContext.makeContext(certificate: certificate, key: key)
    }

    deinit { SSL_CTX_free(context) }

    /// A new server-side SSL object for one connection (nil if OpenSSL is out of memory).
    public func newSSL() -> OpaquePointer? { lock.locked { SSL_new(context) } }

    /// Reads the files again if either changed since the last (re)load.
    public func reloadIfChanged(logger: Logger) {
        let now = [FileStamp(certificatePath), FileStamp(keyPath)]
        guard lock.locked({ now != stamps }) else { return }
        reload(reason: "file changed", logger: logger)
    }

    /// Held through a whole reload (the watch thread and SIGHUP may race).
    private let reloading = Lock()

    /// Makes a new context from the files; on failure the one in force stays.
    public func reload(reason: String, logger: Logger) {
        reloading.lock()
        defer { reloading.unlock() }
        let now = [FileStamp(certificatePath), FileStamp(keyPath)]
        do {
            let fresh = try TLSServerContext.makeContext(certificate: certificatePath, key: keyPath)
            let old = lock.locked {
                let old = context
                context = fresh
                stamps = now
                return old
            }
            SSL_CTX_free(old)  // freed once the last connection using it closes
            logger.info("TLS certificate loaded", metadata: ["certificate": "\(certificatePath)", "reason": "\(reason)"])
        } catch {
            // A certificate written in two steps (chain, then key) is seen
            // half-written for a moment: the next change is tried again.
            lock.locked { stamps = now }
            logger.error("TLS certificate not used; the previous one stays in force", metadata: [
                "certificate": "\(certificatePath)", "reason": "\(reason)", "error": "\(error)",
            ])
        }
    }

    private static func makeContext(certificate: String, key: String) throws -> OpaquePointer {
        guard let ctx = SSL_CTX_new(TLS_server_method()) else { throw Invalid(description: "OpenSSL: \(lastError())") }
        var ok = false
        defer { if !ok { SSL_CTX_free(ctx) } }
        // TLS 1.2 and 1.3 only (SSL_CTX_set_min/max_proto_version are macros over this call).
        SSL_CTX_ctrl(ctx, SSL_CTRL_SET_MIN_PROTO_VERSION, Int(TLS1_2_VERSION), nil)
        SSL_CTX_ctrl(ctx, SSL_CTRL_SET_MAX_PROTO_VERSION, Int(TLS1_3_VERSION), nil)
        // No TLS compression (CRIME) and no client-initiated renegotiation.
        let noCompression: UInt64 = 1 << 17, noRenegotiation: UInt64 = 1 << 30
        SSL_CTX_set_options(ctx, noCompression | noRenegotiation)
        ERR_clear_error()
        guard SSL_CTX_use_certificate_chain_file(ctx, certificate) == 1 else {
            throw Invalid(description: "\(certificate): not a usable PEM certificate chain (\(lastError()))")
        }
        guard SSL_CTX_use_PrivateKey_file(ctx, key, 1 /* SSL_FILETYPE_PEM */) == 1 else {
            let why = lastError()
            if why.contains("values mismatch") {
                throw Invalid(description: "\(key) does not belong to the certificate in \(certificate) (\(why))")
            }
            throw Invalid(description: "\(key): not a usable PEM private key (\(why))")
        }
        guard SSL_CTX_check_private_key(ctx) == 1 else {
            throw Invalid(description: "\(key) does not belong to the certificate in \(certificate) (\(lastError()))")
        }
        ok = true
        return ctx
    }

    /// OpenSSL's last error as text, and the queue emptied.
    static func lastError() -> String {
        let code = ERR_get_error()
        ERR_clear_error()
        guard code != 0 else { return "no detail from OpenSSL" }
        var buffer = [CChar](repeating: 0, count: 256)
        ERR_error_string_n(code, &buffer, buffer.count)
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
