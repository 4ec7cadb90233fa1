import Glibc
import Shared

/// The web dashboard's files (HTML, CSS and JavaScript modules; no build step) served on 8080 from the
/// repository's `dashboard/` folder, or `dashboard.web_root` when set. Paths that leave the folder are
/// refused; everything is sent with `Cache-Control: no-cache`, so an edit shows on reload.
struct StaticFiles: Sendable {
    let root: String

    /// `dashboard.web_root` (relative to the config directory), else the `dashboard/` folder found by
    /// walking up from the gateway's executable (`<repo>/.build/<config>/gateway`).
    static func locate(configured: String?, configDir: String) -> String? {
        if let configured {
            let path = configured.hasPrefix("/") ? configured : absolutePath(configDir + "/" + configured)
            return access(path + "/index.html", R_OK) == 0 ? path : nil
        }
        var dir = executableDirectory()
        for _ in 0..<5 {
            if access(dir + "/dashboard/index.html", R_OK) == 0 { return dir + "/dashboard" }
            guard let slash = dir.lastIndex(of: "/"), slash != dir.startIndex else { break }
            dir = String(dir[..<slash])
        }
        return nil
    }

    static func contentType(_ path: String) -> String {
        switch path.split(separator: ".").last ?? "" {
        case "html": "text/html; charset=utf-8"
        case "css": "text/css; charset=utf-8"
        case "js": "text/javascript; charset=utf-8"
        case "json": "application/json; charset=utf-8"
        case "svg": "image/svg+xml"
        case "png": "image/png"
        default: "application/octet-stream"
        }
    }

    /// The file for the request, read on the blocking pool (the loop only waits for it).
    func serve(_ request: HTTPRequest) async -> HTTPResponse {
        var path = String(request.path)
        if path == "/" || path.isEmpty { path = "/index.html" }
        guard let decoded = path.percentDecoded(plusIsSpace: false),
              !decoded.split(separator: "/").contains(where: { $0 == ".." || $0.hasPrefix(".") }) else {
            return .text("not found\n", status: .notFound)
        }
        let file = root + decoded
        guard let bytes = await BlockingPool.shared.run({ readFileBytes(file, maxBytes: 8 << 20) }) else {
            return .text("not found\n", status: .notFound)
        }
        return HTTPResponse(status: .ok, headers: ["Content-Type": Self.contentType(decoded), "Cache-Control": "no-cache"], body: .bytes(bytes))
    }
}
