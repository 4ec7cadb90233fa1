import Shared

LauncherCommand.main(Array(CommandLine.arguments.dropFirst()))
