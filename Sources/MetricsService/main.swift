import Shared

ServiceMain.run(.metrics, summary: "collects request records and runner samples") { context in
    [MetricsService(context: context)]
}
