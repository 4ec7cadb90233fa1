import Testing
@testable import Shared

@Suite struct ServiceOptionsTests {
    @Test func flagsWinOverTheEnvironmentWhichWinsOverTheConfigFile() async throws {
        try await withTemporaryDirectory { dir in
            try AtomicFile.write(Array(#"{"paths": {"state_dir": "../var"}, "log_levels": {"default": "warning", "gateway": "debug"}}"#.utf8),
                                 to: dir + "/app_config.json")
            let fromConfig = try ServiceOptions.parse(["--config-dir", dir], environment: [:], service: "gateway")
            #expect(fromConfig.paths.stateDir == absolutePath(dir + "/../var"))
            #expect(fromConfig.logLevel == .debug)
            #expect(try ServiceOptions.parse(["--config-dir", dir], environment: [:], service: "metrics-service").logLevel == .warning)
            #expect(fromConfig.childArguments == ["--state-dir", absolutePath(dir + "/../var"), "--config-dir", dir], "a configured level is not forced on children")
            let fromEnv = try ServiceOptions.parse(["--config-dir=\(dir)"], environment: ["LLAMA_RUNNER_STATE_DIR": "/tmp/env-state"])
            #expect(fromEnv.paths.stateDir == "/tmp/env-state")
            let fromFlag = try ServiceOptions.parse(["up", "--state-dir", "/tmp/flag", "--config-dir", dir, "--log-level", "debug"],
                                                    environment: ["LLAMA_RUNNER_STATE_DIR": "/tmp/env-state", "LLAMA_RUNNER_LOG_STDERR": "0"])
            #expect(fromFlag.paths.stateDir == "/tmp/flag")
            #expect(fromFlag.arguments == ["up"])
            #expect(fromFlag.logLevel == .debug)
            #expect(!fromFlag.logToStderr)
            #expect(fromFlag.childArguments == ["--state-dir", "/tmp/flag", "--config-dir", dir, "--log-level", "debug"])
        }
    }

    @Test func badUsageIsAnError() {
        #expect(throws: ServiceOptions.UsageError.self) { try ServiceOptions.parse(["--state-dir"], environment: [:]) }
        #expect(throws: ServiceOptions.UsageError.self) { try ServiceOptions.parse(["--bogus"], environment: [:]) }
        #expect(throws: ServiceOptions.UsageError.self) { try ServiceOptions.parse(["--log-level", "loud"], environment: [:]) }
        #expect((try? ServiceOptions.parse(["-h"], environment: [:]))?.wantsHelp == true)
    }
}
