import Shared

ServiceMain.run(.runners, summary: "supervises llama-server and whisper-server processes") { context in
    [RunnerService(context: context)]
}
