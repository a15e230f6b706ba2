import CEL
import Crypto
import Foundation

/// The rsync engine: `rsync -a --delete` mirrors each asset into `<storage path>/drplan-rsync/<job>/<asset>`.
/// A mirror keeps no history (the `mirror` job type): its one "snapshot" is its current state.
public struct RsyncEngine: BackupEngine {
    public let root: URL
    public let binary: String
    public var name: String { "rsync" }
    public var keepsHistory: Bool { false }
    public var progress: ProgressSink?

    /// Finds `rsync` on PATH; its absence is a permanent error naming the package to install.
    public static func locate() throws(RepositoryError) -> String {
        try ExternalTool.locate("rsync", package: "rsync")
    }

    public init(root: URL) throws(RepositoryError) {
        self.root = root
        binary = try Self.locate()
    }

    func run(_ args: [String]) throws(RepositoryError) -> String {
        let r = try ExternalTool.run(binary, args)
        guard r.status == 0 else { throw RepositoryError(.io, "rsync exited with status \(r.status): \(RunMessages.tail(r.stderr))") }
        return r.stdout
    }

    static func number(after label: String, in stats: String) -> Int64 {
        guard let line = stats.split(separator: "\n").first(where: { $0.contains(label) }) else { return 0 }
        return Int64(line.split(separator: ":").last.map { $0.filter(\.isNumber) } ?? "") ?? 0
    }

    public func backup(paths: [String], exclude: [String], tags: [String]) throws(RepositoryError) -> EngineBackup {
        let asset = tags.last ?? "data"
        let dest = root.appendingPathComponent(asset)
        do { try FileManager.default.createDirectory(at: dest, withIntermediateDirectories: true) } catch {
            throw RepositoryError(.io, "cannot create \(dest.path): \(error.localizedDescription)")
        }
        var written: Int64 = 0
        for p in paths {
            // One path mirrors into the asset's folder itself; several get a folder each.
            let target = paths.count == 1 ? dest.path + "/" : dest.path + "/" + (p as NSString).lastPathComponent + "/"
            let stats = try run(["-a", "--delete", "--stats"] + exclude.map { "--exclude=\($0)" } + [p.hasSuffix("/") ? p : p + "/", target])
            written += Self.number(after: "Total transferred file size", in: stats)
        }
        // rsync's "Total file size" counts symlink targets too; engines report regular files.
        let (files, read) = Self.regularFiles(dest.path)
        return EngineBackup(snapshot: "mirror-\(asset)", files: files, bytesRead: read, bytesWritten: written)
    }

    /// One "snapshot" per asset folder: the mirror's current state. No folder yet is no
    /// snapshot; a folder that cannot be listed is an error.
    public func snapshots(tag: String?) throws(RepositoryError) -> [EngineSnapshot] {
        let job = root.lastPathComponent
        guard tag == nil || tag == job else { return [] }
        let assets: [String]
        do { assets = try LocalStorage(root: root.path).list("") } catch where error.kind == .missing { return [] }
        var out: [EngineSnapshot] = []
        for a in assets {
            let mtime = try LocalStorage(root: root.path).info(a)?.modified ?? Date()
            out.append(EngineSnapshot(id: "mirror-\(a)", time: Int64(mtime.timeIntervalSince1970), tags: [job, a]))
        }
        return out
    }

    public func restore(snapshot: String, to target: URL, options: RestoreOptions, select: (([String]) -> Set<String>)?) throws(RepositoryError) -> EngineRestore {
        let mirror = root.appendingPathComponent(String(snapshot.dropFirst("mirror-".count)))
        try BuiltinRepository.checkTarget(target.path, follow: options.follow)
        let (files, _, _) = try Self.digests(mirror.path)
        if !options.force, let items = try? FileManager.default.contentsOfDirectory(atPath: target.path), !items.isEmpty {
            throw RepositoryError(.targetNotEmpty, "\(target.path) is not empty; restore into an empty or new directory")
        }
        let chosen = select?(files.keys.sorted())
        var args = ["-a"]
        if let chosen {
            let list = target.deletingLastPathComponent().appendingPathComponent(".drplan-files-\(UUID().uuidString)")
            do { try chosen.sorted().joined(separator: "\n").write(to: list, atomically: true, encoding: .utf8) } catch {
                throw RepositoryError(.io, "cannot write rsync's file list \(list.path): \(error)")
            }
            defer { try? FileManager.default.removeItem(at: list) }
            args += ["--files-from=\(list.path)"]
            _ = try run(args + [mirror.path + "/", target.path + "/"])
        } else {
            _ = try run(args + [mirror.path + "/", target.path + "/"])
        }
        let (restored, restoredBytes, _) = try Self.digests(target.path)
        var damaged: [String: String] = [:]
        for (path, digest) in files where (chosen?.contains(path) ?? true) && restored[path] != digest {
            damaged[path] = restored[path] == nil ? "missing after the restore" : "content differs from the mirror"
        }
        return EngineRestore(files: restored.count - damaged.count, bytes: restoredBytes, damaged: damaged)
    }

    /// How many regular files the mirror holds, and their bytes.
    static func regularFiles(_ root: String) -> (count: Int, bytes: Int64) {
        var count = 0, total: Int64 = 0
        for rel in (FileManager.default.enumerator(atPath: root)?.allObjects as? [String]) ?? [] {
            var st = stat()
            if lstat(root + "/" + rel, &st) == 0, st.st_mode & S_IFMT == S_IFREG { count += 1; total += Int64(st.st_size) }
        }
        return (count, total)
    }

    /// SHA-256 of every regular file under `root`, by relative path.
    public static func digests(_ root: String) throws(RepositoryError) -> (files: [String: String], bytes: Int64, count: Int) {
        var out: [String: String] = [:], bytes: Int64 = 0
        let all = (FileManager.default.enumerator(atPath: root)?.allObjects as? [String]) ?? []
        for rel in all {
            let full = root + "/" + rel
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: full, isDirectory: &isDir), !isDir.boolValue,
                  (try? FileManager.default.destinationOfSymbolicLink(atPath: full)) == nil,
                  let data = FileManager.default.contents(atPath: full) else { continue }
            out[rel] = JSONWriter.hex(SHA256.hash(data: data))
            bytes += Int64(data.count)
        }
        return (out, bytes, out.count)
    }
}
