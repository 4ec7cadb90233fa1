import Glibc
import Testing
@testable import Shared

@Suite struct LogFileTests {
    @Test func rotatesBySizeAndKeepsTheNewestFiles() async throws {
        try await withTemporaryDirectory { dir in
            let log = LogFile(path: dir + "/svc.log", maxBytes: 100, keep: 2)
            for i in 0..<20 { log.append(Array("line \(i) \(String(repeating: "x", count: 20))\n".utf8)) }
            #expect(access(dir + "/svc.log", F_OK) == 0)
            #expect(access(dir + "/svc.log.1", F_OK) == 0)
            #expect(access(dir + "/svc.log.2", F_OK) == 0)
            #expect(access(dir + "/svc.log.3", F_OK) != 0)
            var st = stat()
            stat(dir + "/svc.log", &st)
            #expect(st.st_size <= 100)
            #expect(LogFile.tail(dir + "/svc.log", lines: 1).first?.hasPrefix("line 19") == true)
        }
    }

    @Test func loggerWritesOneQuotedLinePerEvent() async throws {
        try await withTemporaryDirectory { dir in
            let logger = Logger(service: "svc", level: .info, file: LogFile(path: dir + "/svc.log"), toStderr: false)
            logger.debug("hidden")
            logger.info("hello", ("key", "two words"), ("n", 3))
            let lines = LogFile.tail(dir + "/svc.log", lines: 10)
            #expect(lines.count == 1)
            #expect(lines[0].hasSuffix(" svc info hello key=\"two words\" n=3"))
        }
    }
}
