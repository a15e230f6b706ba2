import CEL
import DRInventory
import Foundation

/// The restic engine: drives the real `restic` binary (Debian package `restic`).
///
/// - The repository is the storage's `url` when it has one (restic's `sftp:`, `rest:`, `s3:`
///   or a path), else `<storage path>/drplan-restic`; it is initialised on first use.
/// - The password reaches restic through `RESTIC_PASSWORD_FILE` (a `file:` secret) or
///   `RESTIC_PASSWORD` in restic's environment (an `env:` secret), never on its command line.
/// - A single-path source is backed up from inside that directory (`restic backup .`), so its
///   files sit at the snapshot's root, as with the other engines.
public struct ResticEngine: BackupEngine {
    public enum Password: Sendable { case file(String), value(String) }

    public let repository: String
    public let password: Password
    public let binary: String
    public var progress: ProgressSink?
    public var name: String { "restic" }
    /// Credentials for the repository's backend (AWS_ACCESS_KEY_ID, B2_ACCOUNT_ID…), from the
    /// storage's `credentials:` map: cron's empty environment has none of the user's.
    public var credentials: [String: String] = [:]
    /// Whether a backup may run `restic init` when restic says there is no repository.
    public var create = false

    /// Finds `restic`; a missing binary is a `missingTool` error (exit 3).
    public init(repository: String, password: Password, progress: ProgressSink? = nil, credentials: [String: String] = [:], create: Bool = false) throws(RepositoryError) {
        self.repository = repository
        self.password = password
        self.progress = progress
        self.credentials = credentials
        self.create = create
        binary = try ExternalTool.locate("restic", package: "restic")
    }

    /// The environment name restic reads for a `credentials:` key: the S3 names map to
    /// AWS's, anything else is passed upper-cased (`b2_account_id` → `B2_ACCOUNT_ID`).
    public static func environmentName(_ key: String) -> String {
        switch key {
        case "access_key_id": return "AWS_ACCESS_KEY_ID"
        case "secret_access_key": return "AWS_SECRET_ACCESS_KEY"
        case "session_token": return "AWS_SESSION_TOKEN"
        case "region": return "AWS_DEFAULT_REGION"
        default: return key.uppercased()
        }
    }

    /// restic's environment: the password only, with any RESTIC_* settings of the caller's
    /// shell removed so they cannot point restic at another repository or key.
    var environment: [String: String?] {
        var env: [String: String?] = ["RESTIC_REPOSITORY": nil, "RESTIC_REPOSITORY_FILE": nil, "RESTIC_PASSWORD_COMMAND": nil,
                                      "RESTIC_PASSWORD": nil, "RESTIC_PASSWORD_FILE": nil]
        switch password {
        case .file(let path): env["RESTIC_PASSWORD_FILE"] = path
        case .value(let v): env["RESTIC_PASSWORD"] = v
        }
        for (k, v) in credentials { env[k] = v }
        return env
    }

    func restic(_ what: String, _ args: [String], cwd: String? = nil, onLine: ((Substring) -> Void)? = nil) throws(RepositoryError) -> ExternalTool.Result {
        let r = try ExternalTool.run(binary, ["--repo", repository] + args, cwd: cwd, environment: environment, onLine: onLine)
        if r.status != 0 { try classify(what, r) }
        return r
    }

    /// restic's exit status is coarse (1 for almost everything), so the reason comes from its
    /// stderr. Wrong keys and missing repositories are permanent; anything else may pass on retry.
    func classify(_ what: String, _ r: ExternalTool.Result) throws(RepositoryError) {
        if r.stderr.contains("wrong password or no key found") {
            throw RepositoryError(.wrongPassphrase, RunMessages.resticWrongPassword(repository))
        }
        // Only a config that is not there means "no repository": an access-denied or a
        // network error while opening one must never lead to `restic init` over it.
        if r.stderr.contains("unable to open config file"),
           ["no such file or directory", "does not exist", "NoSuchKey", "Not Found"].contains(where: { r.stderr.contains($0) }) {
            throw RepositoryError(.notARepository, RunMessages.resticFailed(what, status: r.status, r.stderr))
        }
        if r.stderr.contains("ciphertext verification failed") || r.stderr.contains("Fatal: repository contains errors") {
            throw RepositoryError(.corrupt, RunMessages.resticFailed(what, status: r.status, r.stderr))
        }
        throw RepositoryError(.io, RunMessages.resticFailed(what, status: r.status, r.stderr))
    }

    /// Creates the repository when restic says there is none and the storage allows it
    /// (`create: true`); any other failure to open it is reported as it is.
    func ensureRepository() throws(RepositoryError) {
        do { _ = try restic("cat config", ["cat", "config"]) } catch where error.kind == .notARepository {
            guard create else {
                throw RepositoryError(.notARepository, "there is no restic repository at \(repository); set 'create: true' on the storage to let the first backup create it, or run 'restic init' yourself")
            }
            _ = try restic("init", ["init"])
        }
    }

    public func backup(paths: [String], exclude: [String], tags: [String]) throws(RepositoryError) -> EngineBackup {
        try ensureRepository()
        // One path: back up "." from inside it. Several with one parent: their names from the
        // parent, a folder each. Otherwise restic's absolute layout.
        var cwd: String? = nil, targets = paths
        let parents = Set(paths.map { ($0 as NSString).deletingLastPathComponent })
        if paths.count == 1 {
            cwd = paths[0]; targets = ["."]
        } else if parents.count == 1, let parent = parents.first {
            cwd = parent; targets = paths.map { ($0 as NSString).lastPathComponent }
        }
        var args = ["backup", "--json"]
        for t in tags { args += ["--tag", t] }
        for e in exclude { args += ["--exclude", e] }
        args += ["--"] + targets
        let sink = progress
        var summary: [String: Any]? = nil
        var failedItems: [String] = []
        _ = try restic("backup", args, cwd: cwd) { line in
            guard let obj = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else { return }
            switch obj["message_type"] as? String {
            case "status":
                sink?(RunProgress(files: Self.int(obj["files_done"]), bytes: Self.int(obj["bytes_done"]),
                                  totalFiles: obj["total_files"].map { Self.int($0) }, totalBytes: obj["total_bytes"].map { Self.int($0) }))
            case "summary": summary = obj
            case "error": failedItems.append((obj["item"] as? String) ?? "?")
            default: break
            }
        }
        guard let summary, let id = summary["snapshot_id"] as? String else {
            throw RepositoryError(.io, "restic backup printed no summary; the snapshot may be incomplete")
        }
        return EngineBackup(snapshot: id, files: Int(Self.int(summary["total_files_processed"])),
                            bytesRead: Self.int(summary["total_bytes_processed"]), bytesWritten: Self.int(summary["data_added"]))
    }

    static func int(_ v: Any?) -> Int64 { (v as? NSNumber)?.int64Value ?? 0 }

    public func snapshots(tag: String?) throws(RepositoryError) -> [EngineSnapshot] {
        let r = try restic("snapshots", ["snapshots", "--json"] + (tag.map { ["--tag", $0] } ?? []))
        guard let list = try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [[String: Any]] else {
            throw RepositoryError(.io, "restic snapshots printed something other than JSON")
        }
        var parsed: [(id: String, time: Timestamp, tags: [String], host: String)] = []
        for s in list {
            guard let id = s["id"] as? String, let time = s["time"] as? String, let t = try? Timestamp.parse(time) else {
                throw RepositoryError(.io, "restic snapshots listed a snapshot without a readable id or time; nothing was changed")
            }
            parsed.append((id, t, s["tags"] as? [String] ?? [], s["hostname"] as? String ?? ""))
        }
        return parsed.sorted { ($0.time.seconds, $0.time.nanos, $0.id) < ($1.time.seconds, $1.time.nanos, $1.id) }
            .map { EngineSnapshot(id: $0.id, time: $0.time.seconds, tags: $0.tags, host: $0.host) }
    }

    /// The files of a snapshot, relative to its root, with their sizes (`restic ls --json`).
    func files(_ snapshot: String) throws(RepositoryError) -> [(path: String, size: Int64)] {
        let r = try restic("ls", ["ls", "--json", snapshot])
        return r.stdout.split(separator: "\n").compactMap { line in
            guard let o = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                  o["struct_type"] as? String == "node", o["type"] as? String == "file", let p = o["path"] as? String else { return nil }
            return (String(p.drop { $0 == "/" }), Self.int(o["size"]))
        }
    }

    /// `restic restore --verify`: restic re-reads what it wrote and compares it with the
    /// snapshot. Files it could not restore or verify are reported by path.
    public func restore(snapshot: String, to target: URL, options: RestoreOptions, select: (([String]) -> Set<String>)?) throws(RepositoryError) -> EngineRestore {
        let fm = FileManager.default
        try BuiltinRepository.checkTarget(target.path, follow: options.follow)
        if !options.force, let items = try? fm.contentsOfDirectory(atPath: target.path), !items.isEmpty {
            throw RepositoryError(.targetNotEmpty, "\(target.path) is not empty; restore into an empty or new directory")
        }
        let all = try files(snapshot)
        let chosen = select?(all.map(\.path))
        var damaged: [String: String] = [:]
        // restic 0.14 takes includes only as arguments: batches keep command lines short.
        let batches: [[String]?] = chosen.map { c in stride(from: 0, to: c.count, by: 200).map { Array(c.sorted()[$0..<min($0 + 200, c.count)]) } } ?? [nil]
        var done: Int64 = 0
        for batch in batches {
            var args = ["restore", snapshot, "--target", target.path, "--verify"]
            for p in batch ?? [] { args += ["--include", "/" + Self.escapeGlob(p)] }
            let r = try ExternalTool.run(binary, ["--repo", repository] + args, environment: environment)
            for line in r.stderr.split(separator: "\n") where line.hasPrefix("ignoring error for ") {
                let rest = line.dropFirst("ignoring error for ".count)
                guard let colon = rest.range(of: ": ") else { continue }
                let path = String(rest[..<colon.lowerBound].drop { $0 == "/" })
                let reason = String(rest[colon.upperBound...])
                // restic's follow-on errors (setting times on a file it never wrote) add nothing.
                if damaged[path] == nil || reason.contains("verification") { damaged[path] = reason }
            }
            if r.status != 0 && damaged.isEmpty { try classify("restore", r) }
            done += Int64(batch?.count ?? all.count)
            progress?(RunProgress(files: done, bytes: 0, totalFiles: Int64(chosen?.count ?? all.count)))
        }
        let wanted = all.filter { chosen?.contains($0.path) ?? true }
        for f in wanted where damaged[f.path] == nil && !fm.fileExists(atPath: target.path + "/" + f.path) {
            damaged[f.path] = "missing after the restore"
        }
        let intact = wanted.filter { damaged[$0.path] == nil }
        return EngineRestore(files: intact.count, bytes: intact.reduce(0) { $0 + $1.size }, damaged: damaged)
    }

    /// `drplan check-repository` on restic: `restic check`, with `--read-data` or
    /// `--read-data-subset` as asked.
    public func check(readData: ReadDataSelection) throws(RepositoryError) -> RepositoryCheckReport {
        var args = ["--repo", repository, "check"]
        switch readData {
        case .none: break
        case .all: args.append("--read-data")
        case .percent(let p): args.append("--read-data-subset=\(max(1, Int(p.rounded(.up))))%")
        case .part(let n, let m): args.append("--read-data-subset=\(n)/\(m)")
        }
        let r = try ExternalTool.run(binary, args, environment: environment)
        if r.status == 0 { return RepositoryCheckReport() }
        if r.stderr.contains("wrong password") || r.stderr.contains("unable to open config file") { try classify("check", r) }
        let problems = (r.stdout + "\n" + r.stderr).split(separator: "\n").map(String.init)
            .filter { $0.contains("error") || $0.contains("Fatal") || $0.contains("invalid") || $0.contains("not found") }
        return RepositoryCheckReport(problems: problems.isEmpty ? [RunMessages.resticFailed("check", status: r.status, r.stderr)] : problems)
    }

    /// `restic check --read-data-subset=N%`: reads back that share of the packs.
    public func checkRepository(readDataPercent: Int) throws(RepositoryError) -> [String] {
        let pct = max(1, min(100, readDataPercent))
        let r = try ExternalTool.run(binary, ["--repo", repository, "check", "--read-data-subset=\(pct)%"], environment: environment)
        if r.status == 0 { return [] }
        if r.stderr.contains("wrong password") { try classify("check", r) }
        let problems = (r.stdout + "\n" + r.stderr).split(separator: "\n").map(String.init)
            .filter { $0.contains("error") || $0.contains("Fatal") || $0.contains("invalid") }
        return problems.isEmpty ? [RunMessages.resticFailed("check", status: r.status, r.stderr)] : Array(problems.prefix(10))
    }

    /// `restic forget ID…` then `restic prune`. restic keeps its own safety margins; `grace`
    /// does not apply to it.
    public func prune(forget ids: Set<String>, grace: TimeInterval, dryRun: Bool) throws(RepositoryError) -> String {
        let existing = Set(try snapshots(tag: nil).map(\.id))
        let gone = ids.filter { existing.contains($0) }.sorted()
        if dryRun {
            let r = try restic("prune --dry-run", ["prune", "--dry-run"])
            return "would forget \(gone.count) snapshot(s); restic prune --dry-run: " + RunMessages.tail(r.stdout)
        }
        if !gone.isEmpty { _ = try restic("forget", ["forget"] + gone) }
        let r = try restic("prune", ["prune"])
        let freed = r.stdout.split(separator: "\n").first { $0.contains("this removes") || $0.contains("to delete") }.map(String.init) ?? ""
        return "forgot \(gone.count) snapshot(s)" + (freed.isEmpty ? "" : "; restic: \(freed.trimmingCharacters(in: .whitespaces))")
    }

    /// restic's includes are globs: a file name with `*`, `?`, `[` or `\` must match only itself.
    static func escapeGlob(_ s: String) -> String {
        var out = ""
        for c in s {
            if "*?[]\\".contains(c) { out.append("\\") }
            out.append(c)
        }
        return out
    }
}
