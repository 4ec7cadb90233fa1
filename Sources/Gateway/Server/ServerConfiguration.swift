import Shared

extension AppConfig.HTTPSettings {
    /// The public ports' server configuration these settings describe, with the request body limit.
    func serverConfiguration(maxBodyBytes: Int) -> HTTPServer.Configuration {
        var c = HTTPServer.Configuration()
        c.limits.maxHeaderBytes = maxHeaderBytes
        c.limits.maxBodyBytes = maxBodyBytes
        c.headerTimeout = headerTimeoutSeconds
        c.keepAliveTimeout = keepAliveTimeoutSeconds
        c.bodyTimeout = bodyTimeoutSeconds
        return c
    }
}

extension AppConfig.HTTPSettings {
    /// The WebSocket limits these settings describe (LM Studio's SDK protocol).
    var websocketConfiguration: WebSocket.Configuration {
        var c = WebSocket.Configuration()
        c.maxMessageBytes = websocketMaxMessageBytes
        c.pingInterval = websocketPingIntervalSeconds
        return c
    }
}
