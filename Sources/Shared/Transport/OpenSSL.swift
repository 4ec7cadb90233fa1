import Glibc

/// The system's OpenSSL 3 (`libssl.so.3`, `libcrypto.so.3`), loaded at run time with `dlopen`: TLS for
/// downloads from the Hugging Face Hub and its CDN, and a SHA-256 that uses the CPU's SHA
/// instructions. Nothing links it, so the services run (and every local feature works) on a machine
/// without it; an `https://` URL then fails with a message saying what to install. OpenSSL is part of
/// every Debian and Ubuntu base system (`libssl3`) and of the container image.
public enum OpenSSL {
    /// The functions used, resolved once.
    struct Library: @unchecked Sendable {
        // @unchecked Sendable: C function pointers, immutable after loading.
        typealias Ptr = OpaquePointer
        let TLS_client_method: @convention(c) () -> Ptr?
        let SSL_CTX_new: @convention(c) (Ptr?) -> Ptr?
        let SSL_CTX_free: @convention(c) (Ptr?) -> Void
        let SSL_CTX_set_default_verify_paths: @convention(c) (Ptr?) -> Int32
        let SSL_CTX_load_verify_locations: @convention(c) (Ptr?, UnsafePointer<CChar>?, UnsafePointer<CChar>?) -> Int32
        let SSL_CTX_set_verify: @convention(c) (Ptr?, Int32, UnsafeRawPointer?) -> Void
        let SSL_CTX_ctrl: @convention(c) (Ptr?, Int32, Int, UnsafeMutableRawPointer?) -> Int
        let SSL_new: @convention(c) (Ptr?) -> Ptr?
        let SSL_free: @convention(c) (Ptr?) -> Void
        let SSL_set_fd: @convention(c) (Ptr?, Int32) -> Int32
        let SSL_ctrl: @convention(c) (Ptr?, Int32, Int, UnsafeMutableRawPointer?) -> Int
        let SSL_set1_host: @convention(c) (Ptr?, UnsafePointer<CChar>?) -> Int32
        let SSL_connect: @convention(c) (Ptr?) -> Int32
        let SSL_read: @convention(c) (Ptr?, UnsafeMutableRawPointer?, Int32) -> Int32
        let SSL_write: @convention(c) (Ptr?, UnsafeRawPointer?, Int32) -> Int32
        let SSL_get_error: @convention(c) (Ptr?, Int32) -> Int32
        let SSL_shutdown: @convention(c) (Ptr?) -> Int32
        let SSL_get_verify_result: @convention(c) (Ptr?) -> Int
        let X509_verify_cert_error_string: @convention(c) (Int) -> UnsafePointer<CChar>?
        let ERR_get_error: @convention(c) () -> UInt
        let ERR_error_string_n: @convention(c) (UInt, UnsafeMutablePointer<CChar>?, Int) -> Void
        let ERR_clear_error: @convention(c) () -> Void
        let EVP_MD_CTX_new: @convention(c) () -> Ptr?
        let EVP_MD_CTX_free: @convention(c) (Ptr?) -> Void
        let EVP_sha256: @convention(c) () -> Ptr?
        let EVP_DigestInit_ex: @convention(c) (Ptr?, Ptr?, Ptr?) -> Int32
        let EVP_DigestUpdate: @convention(c) (Ptr?, UnsafeRawPointer?, Int) -> Int32
        let EVP_DigestFinal_ex: @convention(c) (Ptr?, UnsafeMutablePointer<UInt8>?, UnsafeMutablePointer<UInt32>?) -> Int32
    }

    /// Why OpenSSL could not be used, when it cannot.
    public static var unavailableReason: String? { loaded.error }

    private static let loaded: (library: Library?, error: String?) = {
        guard let crypto = dlopen("libcrypto.so.3", RTLD_NOW | RTLD_GLOBAL) else {
            return (nil, "libcrypto.so.3 (OpenSSL 3) cannot be loaded: install it (Debian and Ubuntu: apt-get install libssl3)")
        }
        guard let ssl = dlopen("libssl.so.3", RTLD_NOW) else {
            return (nil, "libssl.so.3 (OpenSSL 3) cannot be loaded: install it (Debian and Ubuntu: apt-get install libssl3)")
        }
        struct Missing: Error { let name: String }
        func f<T>(_ handle: UnsafeMutableRawPointer, _ name: String) throws -> T {
            guard let p = dlsym(handle, name) else { throw Missing(name: name) }
            return unsafeBitCast(p, to: T.self)
        }
        do {
            let lib = Library(
                TLS_client_method: try f(ssl, "TLS_client_method"), SSL_CTX_new: try f(ssl, "SSL_CTX_new"),
                SSL_CTX_free: try f(ssl, "SSL_CTX_free"), SSL_CTX_set_default_verify_paths: try f(ssl, "SSL_CTX_set_default_verify_paths"),
                SSL_CTX_load_verify_locations: try f(ssl, "SSL_CTX_load_verify_locations"),
                SSL_CTX_set_verify: try f(ssl, "SSL_CTX_set_verify"), SSL_CTX_ctrl: try f(ssl, "SSL_CTX_ctrl"),
                SSL_new: try f(ssl, "SSL_new"), SSL_free: try f(ssl, "SSL_free"), SSL_set_fd: try f(ssl, "SSL_set_fd"),
                SSL_ctrl: try f(ssl, "SSL_ctrl"), SSL_set1_host: try f(ssl, "SSL_set1_host"), SSL_connect: try f(ssl, "SSL_connect"),
                SSL_read: try f(ssl, "SSL_read"), SSL_write: try f(ssl, "SSL_write"), SSL_get_error: try f(ssl, "SSL_get_error"),
                SSL_shutdown: try f(ssl, "SSL_shutdown"), SSL_get_verify_result: try f(ssl, "SSL_get_verify_result"),
                X509_verify_cert_error_string: try f(crypto, "X509_verify_cert_error_string"),
                ERR_get_error: try f(crypto, "ERR_get_error"), ERR_error_string_n: try f(crypto, "ERR_error_string_n"),
                ERR_clear_error: try f(crypto, "ERR_clear_error"),
                EVP_MD_CTX_new: try f(crypto, "EVP_MD_CTX_new"), EVP_MD_CTX_free: try f(crypto, "EVP_MD_CTX_free"),
                EVP_sha256: try f(crypto, "EVP_sha256"), EVP_DigestInit_ex: try f(crypto, "EVP_DigestInit_ex"),
                EVP_DigestUpdate: try f(crypto, "EVP_DigestUpdate"), EVP_DigestFinal_ex: try f(crypto, "EVP_DigestFinal_ex"))
            return (lib, nil)
        } catch let error as Missing {
            return (nil, "OpenSSL 3 has no \(error.name)")
        } catch {
            return (nil, "OpenSSL 3 could not be loaded: \(error)")
        }
    }()

    static var library: Library? { loaded.library }

    /// The queued OpenSSL errors, as one line (and the queue cleared).
    static func errors(_ lib: Library) -> String {
        var parts: [String] = []
        while case let code = lib.ERR_get_error(), code != 0 {
            var buffer = [CChar](repeating: 0, count: 256)
            lib.ERR_error_string_n(code, &buffer, buffer.count)
            parts.append(String(cBuffer: buffer))
        }
        return parts.joined(separator: "; ")
    }
}

/// SHA-256 of a stream of bytes: libcrypto's when it loads (it uses the CPU's SHA instructions),
/// otherwise `SHA256`. A class, since libcrypto's context is a resource this object owns and frees.
/// @unchecked Sendable: it may be handed from one blocking job to the next, but is used by one at a
/// time (each awaited before the next is submitted), never concurrently.
public final class Hasher256: @unchecked Sendable {
    private let context: OpaquePointer?
    private var fallback: SHA256?

    public init() {
        if let lib = OpenSSL.library, let ctx = lib.EVP_MD_CTX_new(), lib.EVP_DigestInit_ex(ctx, lib.EVP_sha256(), nil) == 1 {
            context = ctx
        } else {
            context = nil
            fallback = SHA256()
        }
    }

    deinit { if let context { OpenSSL.library?.EVP_MD_CTX_free(context) } }

    /// Whether the fast (libcrypto) path is in use.
    public var usesOpenSSL: Bool { context != nil }

    public func update(_ bytes: UnsafeRawBufferPointer) {
        guard bytes.count > 0 else { return }
        if let context, let lib = OpenSSL.library {
            _ = lib.EVP_DigestUpdate(context, bytes.baseAddress, bytes.count)
        } else {
            fallback!.update(bytes)
        }
    }

    public func update(_ bytes: [UInt8]) { bytes.withUnsafeBytes { update($0) } }

    /// The digest; the hasher is spent afterwards.
    public func finish() -> [UInt8] {
        if let context, let lib = OpenSSL.library {
            var out = [UInt8](repeating: 0, count: 32)
            var n: UInt32 = 32
            _ = lib.EVP_DigestFinal_ex(context, &out, &n)
            return out
        }
        return fallback!.finish()
    }
}
