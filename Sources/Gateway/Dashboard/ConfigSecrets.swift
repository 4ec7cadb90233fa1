import Shared

/// The secrets of `app_config.json` — `dashboard.admin_token`, each surface's `api_keys` and each
/// peer's `api_key` — never
/// leave through the dashboard API: reads show `redacted` in their place (anything that can read the
/// API, a page on another machine included, would otherwise learn the token that guards writes), and a
/// write that sends `redacted` back keeps the secret that stands at that place in the current file.
enum ConfigSecrets {
    static let redacted = "<redacted>"
    static let surfaces = ["ollama", "lmstudio"]

    static func redact(_ app: JSONValue) -> JSONValue {
        var out = app
        if out["dashboard"]?["admin_token"]?.stringValue != nil { out["dashboard"]?["admin_token"] = .string(redacted) }
        for s in surfaces {
            if let keys = out["proxies"]?[s]?["api_keys"]?.arrayValue {
                out["proxies"]?[s]?["api_keys"] = .array(keys.map { _ in .string(redacted) })
            }
        }
        for name in out["peers"]?.objectValue?.keys ?? [] where out["peers"]?[name]?["api_key"]?.stringValue != nil {
            out["peers"]?[name]?["api_key"] = .string(redacted)
        }
        return out
    }

    /// `sent` with each `redacted` replaced by the secret at the same place in `current`; a placeholder
    /// with nothing behind it is dropped, never written as a secret.
    static func restore(_ sent: JSONValue, from current: JSONValue) -> JSONValue {
        var out = sent
        if out["dashboard"]?["admin_token"]?.stringValue == redacted {
            out["dashboard"]?["admin_token"] = current["dashboard"]?["admin_token"] ?? .null
        }
        for s in surfaces {
            guard let keys = out["proxies"]?[s]?["api_keys"]?.arrayValue else { continue }
            let old = current["proxies"]?[s]?["api_keys"]?.arrayValue ?? []
            out["proxies"]?[s]?["api_keys"] = .array(keys.enumerated().compactMap { i, k in
                k.stringValue == redacted ? (i < old.count ? old[i] : nil) : k
            })
        }
        for name in out["peers"]?.objectValue?.keys ?? [] where out["peers"]?[name]?["api_key"]?.stringValue == redacted {
            // A renamed peer has no key behind its placeholder: the placeholder is dropped.
            out["peers"]?[name]?["api_key"] = current["peers"]?[name]?["api_key"]
        }
        return out
    }
}
