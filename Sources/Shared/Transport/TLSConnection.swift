import Glibc

/// Errors of a TLS connection.
public enum TLSError: Error, Sendable, Equatable, CustomStringConvertible {
    /// OpenSSL could not be loaded (the reason says what to install).
    case unavailable(String)
    /// The handshake failed: the certificate did not verify, or the peer is not speaking TLS.
    case handshake(host: String, reason: String)
    /// The connection failed after the handshake.
    case failed(String)

    public var description: String {
        switch self {
        case .unavailable(let reason): "TLS is unavailable: \(reason)"
        case .handshake(let host, let reason): "TLS handshake with \(host) failed: \(reason)"
        case .failed(let reason): "TLS connection failed: \(reason)"
        }
    }
}

/// TLS 1.2/1.3 over a non-blocking `Connection`, by the system's OpenSSL (`OpenSSL`), driven by the
/// event loop: a call that OpenSSL answers with "want read/write" waits for that readiness (OpenSSL
/// saw `EAGAIN`, which the loop's edge-triggered waits require) and tries again. The peer's
/// certificate is verified against the system's trust store (`SSL_CERT_FILE` and `SSL_CERT_DIR`
/// override it, as for every OpenSSL program) and against the host name asked for, which is also
/// sent as SNI (RFC 6066; not for IP addresses). Owned by one task at a time, like `Connection`.
public final class TLSConnection: ByteStream {
    private let connection: Connection
    private var ssl: OpaquePointer?
    private let lib: OpenSSL.Library

    private static let SSL_ERROR_SSL: Int32 = 1, SSL_ERROR_WANT_READ: Int32 = 2, SSL_ERROR_WANT_WRITE: Int32 = 3
    private static let SSL_ERROR_SYSCALL: Int32 = 5, SSL_ERROR_ZERO_RETURN: Int32 = 6

    /// An `SSL_CTX`. @unchecked Sendable: OpenSSL contexts are safe to share between threads once
    /// configured, which happens once, before any use.
    private struct Context: @unchecked Sendable { let pointer: OpaquePointer }

    /// One client context for the process: the trust store is read once.
    private static let context: Result<Context, TLSError> = {
        guard let lib = OpenSSL.library else { return .failure(.unavailable(OpenSSL.unavailableReason ?? "unknown")) }
        guard let ctx = lib.SSL_CTX_new(lib.TLS_client_method()) else { return .failure(.unavailable("SSL_CTX_new failed: \(OpenSSL.errors(lib))")) }
        _ = lib.SSL_CTX_set_default_verify_paths(ctx)
        lib.SSL_CTX_set_verify(ctx, 1 /* SSL_VERIFY_PEER */, nil)
        // SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION): a macro over SSL_CTX_ctrl.
        _ = lib.SSL_CTX_ctrl(ctx, 123 /* SSL_CTRL_SET_MIN_PROTO_VERSION */, 0x0303 /* TLS1_2_VERSION */, nil)
        return .success(Context(pointer: ctx))
    }()

    /// Connects to `address` and completes the handshake for `host` by `deadline` (monotonic ns).
    public static func connect(to address: SocketAddress, host: String, loop: EventLoop, deadline: UInt64) async throws -> TLSConnection {
        let ctx = try context.get().pointer
        guard let lib = OpenSSL.library else { throw TLSError.unavailable(OpenSSL.unavailableReason ?? "unknown") }
        let connection = try await Connection.connect(to: address, loop: loop, deadline: deadline)
        guard let ssl = lib.SSL_new(ctx) else {
            connection.close()
            throw TLSError.failed("SSL_new failed: \(OpenSSL.errors(lib))")
        }
        let tls = TLSConnection(connection: connection, ssl: ssl, lib: lib)
        _ = lib.SSL_set_fd(ssl, connection.fd)
        let isAddress = host.contains(":") || host.allSatisfy { $0.isNumber || $0 == "." }
        host.withCString { name in
            if !isAddress { _ = lib.SSL_ctrl(ssl, 55 /* SSL_CTRL_SET_TLSEXT_HOSTNAME */, 0, UnsafeMutableRawPointer(mutating: name)) }
            _ = lib.SSL_set1_host(ssl, name)
        }
        do {
            try await tls.handshake(host: host, deadline: deadline)
        } catch {
            tls.close()
            throw error
        }
        return tls
    }

    private init(connection: Connection, ssl: OpaquePointer, lib: OpenSSL.Library) {
        self.connection = connection
        self.ssl = ssl
        self.lib = lib
    }

    deinit { close() }

    private func handshake(host: String, deadline: UInt64) async throws {
        while true {
            guard let ssl else { throw SocketError.closed }
            lib.ERR_clear_error()
            let rc = lib.SSL_connect(ssl)
            if rc == 1 { return }
            let err = lib.SSL_get_error(ssl, rc)
            switch err {
            case Self.SSL_ERROR_WANT_READ: try await connection.loop.wait(connection.fd, for: .read, deadline: deadline)
            case Self.SSL_ERROR_WANT_WRITE: try await connection.loop.wait(connection.fd, for: .write, deadline: deadline)
            default:
                let verify = lib.SSL_get_verify_result(ssl)
                if verify != 0, let text = lib.X509_verify_cert_error_string(verify) {
                    throw TLSError.handshake(host: host, reason: "the certificate did not verify: \(String(cString: text))")
                }
                let detail = OpenSSL.errors(lib)
                throw TLSError.handshake(host: host, reason: detail.isEmpty ? "the connection closed during the handshake (errno \(errno))" : detail)
            }
        }
    }

    public func read(into buffer: ByteBuffer, deadline: UInt64, waitFirst: Bool) async throws -> Int {
        buffer.reserveWritable(16 * 1024)
        while true {
            guard let ssl else { throw SocketError.closed }
            lib.ERR_clear_error()
            let n = lib.SSL_read(ssl, buffer.writePointer, Int32(min(buffer.writableCount, Int(Int32.max))))
            if n > 0 {
                buffer.commitWrite(Int(n))
                return Int(n)
            }
            let err = lib.SSL_get_error(ssl, n)
            switch err {
            case Self.SSL_ERROR_WANT_READ: try await connection.loop.wait(connection.fd, for: .read, deadline: deadline)
            case Self.SSL_ERROR_WANT_WRITE: try await connection.loop.wait(connection.fd, for: .write, deadline: deadline)
            case Self.SSL_ERROR_ZERO_RETURN: return 0
            case Self.SSL_ERROR_SYSCALL where OpenSSL.errors(lib).isEmpty:
                // The peer closed (or reset) without close_notify: end of stream, as for a plain socket;
                // HTTP's own framing says whether the body was complete.
                return 0
            default:
                throw TLSError.failed(OpenSSL.errors(lib))
            }
        }
    }

    public func write(_ buffer: ByteBuffer, deadline: UInt64) async throws {
        while buffer.readableCount > 0 {
            let n = try await writeSome(buffer.readable, deadline: deadline)
            buffer.consume(n)
        }
    }

    public func write(_ bytes: [UInt8], deadline: UInt64) async throws {
        let buffer = ByteBuffer(capacity: bytes.count)
        buffer.append(bytes)
        try await write(buffer, deadline: deadline)
    }

    /// One `SSL_write` that succeeds (waiting as OpenSSL asks); returns the bytes written.
    private func writeSome(_ bytes: UnsafeRawBufferPointer, deadline: UInt64) async throws -> Int {
        while true {
            guard let ssl else { throw SocketError.closed }
            lib.ERR_clear_error()
            let n = lib.SSL_write(ssl, bytes.baseAddress, Int32(min(bytes.count, 1 << 20)))
            if n > 0 { return Int(n) }
            switch lib.SSL_get_error(ssl, n) {
            case Self.SSL_ERROR_WANT_WRITE: try await connection.loop.wait(connection.fd, for: .write, deadline: deadline)
            case Self.SSL_ERROR_WANT_READ: try await connection.loop.wait(connection.fd, for: .read, deadline: deadline)
            default: throw TLSError.failed(OpenSSL.errors(lib).isEmpty ? "the connection was closed (errno \(errno))" : OpenSSL.errors(lib))
            }
        }
    }

    /// Sends close_notify if it can without waiting, frees the TLS state and closes the socket.
    public func close() {
        if let ssl {
            if connection.fd >= 0 { _ = lib.SSL_shutdown(ssl) }
            lib.SSL_free(ssl)
            self.ssl = nil
        }
        connection.close()
    }

    /// Unread bytes on an idle TLS stream (a close_notify, a session ticket) count as "closed": the
    /// pool then opens a fresh connection instead of risking a dead one.
    public var peerHasClosed: Bool { connection.peerHasClosed }
}
