import Shared

// Runner supervision (llama-server / whisper-server children) arrives with issue 5; today the
// service runs its control socket under the launcher like every other.
ServiceMain.run(.runners, summary: "supervises llama-server and whisper-server processes") { _ in [] }
