import Glibc
import Shared

/// Watching the files for edits made by hand.
extension RegistryStore {
    // MARK: Hand edits

    /// Picks up files edited (or removed) by hand. An invalid edit keeps the last good config and is
    /// reported in `status` and health until the file is fixed.
    func checkForHandEdits() {
        defer { republish() }  // the files' errors and warnings change here too
        var candidateApp = app
        var candidateModels = models
        var changed: [String] = []
        var unparsable: [String: String] = [:]
        for name in [ConfigFiles.appName, ConfigFiles.modelsName] {
            let isApp = name == ConfigFiles.appName
            let stamp = FileStamp.of(files.path(name))
            guard stamp != (isApp ? appState.stamp : modelsState.stamp) else { continue }
            if isApp { appState.stamp = stamp } else { modelsState.stamp = stamp }
            changed.append(name)
            switch files.read(name) {
            case .success(nil):
                if isApp { candidateApp = BuiltInConfig.app } else { candidateModels = BuiltInConfig.models }
            case .success(let (doc, _)?):
                if isApp { candidateApp = doc } else { candidateModels = doc }
            case .failure(let issue):
                unparsable[name] = issue.description
            }
        }
        guard !changed.isEmpty else { return }
        for (name, message) in unparsable {
            setErrors(name, [message])
            logger.warning("ignoring the hand edit of \(name): \(message); the last good configuration stays in force")
        }
        let parsed = changed.filter { unparsable[$0] == nil }
        guard !parsed.isEmpty else { return }
        var issues = ConfigValidator.validate(app: candidateApp, models: candidateModels)
        if !issues.contains(where: { $0.severity == .error }) { issues += pinnedMemoryIssues(app: candidateApp, models: candidateModels) }
        let errors = issues.filter { $0.severity == .error }
        guard errors.isEmpty, let typed = try? AppConfig.from(candidateApp) else {
            for name in parsed {
                // An edit of one file can break the other (a runtime removed from app_config.json):
                // the edited file carries the errors either way.
                let mine = errors.filter { $0.file == name }
                let shown = (mine.isEmpty ? errors : mine).map(\.description)
                setErrors(name, shown.isEmpty ? ["\(name): the edited configuration cannot be used"] : shown)
                logger.warning("ignoring the hand edit of \(name): \(shown.joined(separator: "; ")); the last good configuration stays in force")
            }
            return
        }
        for name in parsed {
            let isApp = name == ConfigFiles.appName
            let warnings = issues.filter { $0.severity == .warning && $0.file == name }.map(\.description)
            let usingDefault = access(files.path(name), F_OK) != 0
            if isApp {
                appState.errors = []
                appState.warnings = warnings
                appState.usingDefault = usingDefault
            } else {
                modelsState.errors = []
                modelsState.warnings = warnings
                modelsState.usingDefault = usingDefault
            }
        }
        if candidateApp != app || candidateModels != models {
            logger.info("picked up a hand edit of the configuration")
            apply(app: candidateApp, models: candidateModels, typed: typed)
        }
    }

    func setErrors(_ name: String, _ errors: [String]) {
        if name == ConfigFiles.appName { appState.errors = errors } else { modelsState.errors = errors }
    }
}
