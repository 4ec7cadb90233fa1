import Glibc
import Shared

/// Discovery: new GGUF files in the models folders become models.
extension RegistryStore {
    // MARK: Discovery

    /// Scans the models folders and merges new files into `models_config.json` (saved with a backup).
    /// One at a time: a request while a scan runs gets that scan's report.
    func discover() async -> DiscoveryReport {
        if let discovery { return await discovery.value }
        let task = Task { await self.scanAndMerge() }
        discovery = task
        let report = await task.value
        discovery = nil
        return report
    }

    /// What a scan found, read off the actor: the files, and the headers of those not cached yet.
    struct Scan: Sendable {
        let found: [FoundFile]
        let problems: [String]
        let read: [String: CachedMetadata]
        let imported: [ImportedModel]
    }

    func scanAndMerge() async -> DiscoveryReport {
        let folders = appConfig.modelsDirs.map { resolvePath($0, configDir: configDir) }
        var known: [String: FileStamp] = persisted.mapValues(\.stamp)
        for (path, cached) in metadataCache { known[path] = cached.stamp }
        let knownStamps = known
        let caches = CacheImports.settings(from: appConfig.importSources)
        let scan = await BlockingPool.shared.run { () -> Scan in
            let (found, problems) = ModelScanner.scan(folders)
            let imported = CacheImports.scan(caches)
            var read: [String: CachedMetadata] = [:]
            for path in found.filter({ !$0.isProjector }).map(\.path) + imported.map(\.path) {
                guard let stamp = FileStamp.of(path), knownStamps[path] != stamp else { continue }
                let result = Result<GGUFMetadata, GGUFError> { () throws(GGUFError) -> GGUFMetadata in try GGUFReader.read(path: path) }
                read[path] = CachedMetadata(stamp: stamp, result: result)
            }
            return Scan(found: found, problems: problems, read: read, imported: imported)
        }
        let importsChanged = imported != scan.imported
        imported = scan.imported
        for (path, cached) in scan.read {
            metadataCache[path] = cached
            if case .success(let meta) = cached.result {
                persisted[path] = MetadataCacheFile.Entry(stamp: cached.stamp, value: meta.cacheValue)
                persistedDirty = true
            }
        }
        let (found, problems) = (scan.found, scan.problems)
        var unreadable: [String] = []
        let runtime = appConfig.runtimes.filter { $0.value.kind == .llamaServer }.keys.sorted().first ?? "llama-server"
        let merge = DiscoveryMerge(configDir: configDir, runtime: runtime)
        let outcome = merge.merge(models, found: found, metadata: { path in
            switch metadata(path) {
            case .success(let meta)?: return meta.summary
            case .failure(let error)?:
                unreadable.append(error.description)
                return nil
            case nil: return nil
            }
        }, exists: { access($0, F_OK) == 0 })
        if outcome.document != models {
            do {
                try commit(models: outcome.document)
                logger.info("discovery updated models_config.json", ("added", outcome.added.joined(separator: ",")),
                            ("updated", outcome.updated.joined(separator: ",")))
            } catch {
                logger.error("discovery could not save models_config.json: \(error)")
            }
        }
        for problem in unreadable + problems { logger.warning("discovery: \(problem)") }
        // Metadata or file states may have changed even when the document did not.
        cachedSnapshot = nil
        let report = DiscoveryReport(revision: revision, added: outcome.added, updated: outcome.updated, missing: outcome.missing,
                                     unreadable: unreadable + problems, scannedFiles: found.count)
        lastDiscovery = report
        republish()
        // The documents may be unchanged while the caches' models changed: tell the services.
        if importsChanged { onChange(snapshotRevision) }
        return report
    }
}
