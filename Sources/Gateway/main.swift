import Shared

ServiceMain.run(.gateway, summary: "serves the Ollama, LM Studio and dashboard ports") { context in
    [try await GatewayService.make(context: context)]
}
