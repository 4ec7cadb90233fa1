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
