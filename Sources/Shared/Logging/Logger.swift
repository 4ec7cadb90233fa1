import Glibc

/// Severity of a log line.
public enum LogLevel: Int, Sendable, Comparable, Codable, CaseIterable {
    case trace, debug, info, warning, error

    public init?(name: String) {
        switch name.lowercased() {
        case "trace": self = .trace
        case "debug": self = .debug
        case "info": self = .info
        case "warning", "warn": self = .warning
        case "error": self = .error
        default: return nil
        }
    }

    public var name: String {
        switch self {
        case .trace: "trace"
        case .debug: "debug"
        case .info: "info"
        case .warning: "warning"
        case .error: "error"
        }
    }

    public static func < (a: LogLevel, b: LogLevel) -> Bool { a.rawValue < b.rawValue }
}

/// One line per event: `<UTC time> <service> <level> <message> key=value …`, to stderr and/or the
/// service's rotated log file. Values with spaces or quotes are quoted, so lines stay machine-readable.
public struct Logger: Sendable {
    /// The service name on every line.
    public let service: String
    /// Lines below this level are dropped before formatting.
    public let level: LogLevel
    let file: LogFile?
    let toStderr: Bool

    public init(service: String, level: LogLevel = .info, file: LogFile? = nil, toStderr: Bool = true) {
        self.service = service
        self.level = level
        self.file = file
        self.toStderr = toStderr
    }

    public func trace(_ message: @autoclosure () -> String, _ metadata: (String, any CustomStringConvertible)...) { log(.trace, message(), metadata) }
    public func debug(_ message: @autoclosure () -> String, _ metadata: (String, any CustomStringConvertible)...) { log(.debug, message(), metadata) }
    public func info(_ message: @autoclosure () -> String, _ metadata: (String, any CustomStringConvertible)...) { log(.info, message(), metadata) }
    public func warning(_ message: @autoclosure () -> String, _ metadata: (String, any CustomStringConvertible)...) { log(.warning, message(), metadata) }
    public func error(_ message: @autoclosure () -> String, _ metadata: (String, any CustomStringConvertible)...) { log(.error, message(), metadata) }

    func log(_ lineLevel: LogLevel, _ message: String, _ metadata: [(String, any CustomStringConvertible)]) {
        guard lineLevel >= level else { return }
        var line = Logger.timestamp()
        line += " \(service) \(lineLevel.name) \(message)"
        for (key, value) in metadata {
            line += " \(key)=\(Logger.quoted(value.description))"
        }
        line += "\n"
        let bytes = Array(line.utf8)
        if toStderr { bytes.withUnsafeBytes { _ = Glibc.write(2, $0.baseAddress, $0.count) } }
        file?.append(bytes)
    }

    static func quoted(_ s: String) -> String {
        if s.isEmpty { return "\"\"" }
        if s.utf8.contains(where: { $0 <= 32 || $0 == 34 || $0 == 61 || $0 == 92 }) {
            var out = "\""
            for c in s.unicodeScalars {
                switch c {
                case "\"": out += "\\\""
                case "\\": out += "\\\\"
                case "\n": out += "\\n"
                case "\r": out += "\\r"
                case "\t": out += "\\t"
                default: out.unicodeScalars.append(c)
                }
            }
            return out + "\""
        }
        return s
    }

    /// `2026-11-25T02:14:32.123Z`.
    public static func timestamp() -> String { UTCTime.now(fractionDigits: 3) }
}
