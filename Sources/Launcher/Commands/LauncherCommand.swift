import Glibc
import Shared

/// Parses the launcher's command line and runs the subcommand.
enum LauncherCommand {
    static let help = """
    launcher — runs Llama Runner: model-registry, metrics-service, runner-manager and gateway

    usage: launcher <command> [options]

    commands:
      up                 start every service in the foreground and keep them running (Ctrl+C stops all)
      status             show each service's pid, state, restarts and uptime
      restart <service>  restart one service (model-registry, metrics-service, runner-manager, gateway)
      down               stop every service and the running launcher
      check              check configuration, runtimes, models, ports, directories, disk and memory
      clean              remove stale sockets, records of dead runners, old rotated logs and
                         metadata cached for model files that no longer exist
      pull NAME [QUANT]  download a model from the Hugging Face Hub into the models folder and register
                         it: hf.co/user/repo[:quant], user/repo[:quant] or user/repo/file.gguf

    options:
    \(ServiceOptions.helpText)

    exit codes: 0 ok, 1 failure, 3 not running (status), 64 usage, 69 executables missing, 78 configuration
    """

    static func main(_ arguments: [String]) -> Never {
        ignoreSIGPIPE()
        var all = sigset_t()
        sigfillset(&all)
        pthread_sigmask(SIG_UNBLOCK, &all, nil)
        let options: ServiceOptions
        do {
            options = try ServiceOptions.parse(arguments, service: "launcher")
        } catch {
            printError("launcher: \(error)\n\n\(help)")
            exit(ExitCode.usage)
        }
        let command = options.arguments.first
        if options.wantsHelp || command == "help" || command == nil {
            print(help)
            exit(command == nil && !options.wantsHelp ? ExitCode.usage : ExitCode.ok)
        }
        let rest = Array(options.arguments.dropFirst())
        switch command! {
        case "up":
            guard rest.isEmpty else { usage("up takes no arguments") }
            UpCommand.run(options)
        case "status", "down":
            guard rest.isEmpty else { usage("\(command!) takes no arguments") }
            runAsync { command == "status" ? await ControlCommands.status(options) : await ControlCommands.down(options) }
        case "check":
            guard rest.isEmpty else { usage("check takes no arguments") }
            runAsync { await CheckCommand.run(options) }
        case "clean":
            guard rest.isEmpty else { usage("clean takes no arguments") }
            exit(CleanCommand.run(options))
        case "restart":
            guard rest.count == 1 else { usage("restart takes one service name") }
            runAsync { await ControlCommands.restart(options, service: rest[0]) }
        case "pull":
            guard rest.count == 1 || rest.count == 2 else { usage("pull takes a model name and, optionally, a quantization tag") }
            runAsync { await PullCommand.run(options, name: rest[0], quantization: rest.count == 2 ? rest[1] : nil) }
        default:
            usage("unknown command \(command!)")
        }
    }

    static func usage(_ message: String) -> Never {
        printError("launcher: \(message)\n\n\(help)")
        exit(ExitCode.usage)
    }

    static func runAsync(_ body: @escaping @Sendable () async -> Int32) -> Never {
        Task(executorPreference: EventLoop.shared) { exit(await body()) }
        parkMainThread()
    }
}
