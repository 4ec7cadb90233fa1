import Shared

// Request records, runner samples and Prometheus output arrive with issue 7; today the service
// runs its control socket under the launcher like every other.
ServiceMain.run(.metrics, summary: "collects request records and runner samples") { _ in [] }
