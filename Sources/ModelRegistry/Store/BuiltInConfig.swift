import Shared

/// The configuration in force when a file is absent: serve the demo model from the default models
/// folder. (`config/models_config.json` in the repository holds the same; a test keeps them equal.)
enum BuiltInConfig {
    static let modelsText = """
    {
      "default_model": "smollm2-135m-instruct",
      "default_parameters": {
        "ctx_size": 2048
      },
      "models": {
        "smollm2-135m-instruct": {
          "model_path": "../models/SmolLM2-135M-Instruct.Q4_1.gguf",
          "llama_cpp_runtime": "llama-server",
          "parameters": {},
          "auto_discovered": false,
          "auto_update_model": false
        },
        "whisper-tiny-en": {
          "model_path": "../models/ggml-tiny.en.bin",
          "llama_cpp_runtime": "whisper-server",
          "kind": "audio",
          "display_name": "Whisper tiny.en (speech to text)",
          "parameters": {},
          "auto_discovered": false,
          "auto_update_model": false
        }
      }
    }
    """

    static var models: JSONValue { (try? JSONParser.parse(modelsText)) ?? .object(JSONObject()) }
    static var app: JSONValue { .object(JSONObject()) }
}
