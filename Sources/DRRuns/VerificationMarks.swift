import CEL
import Crypto
import Foundation

/// This machine's verification marks, one small JSON file per store in drplan's cache
/// (`DRPLAN_CACHE_DIR`, else `$XDG_CACHE_HOME/drplan`, else `~/.cache/drplan`), under
/// `verified/`. A cache, like restic's: deleting it costs one full verification, and nothing
/// in the store depends on it. Reading commands write it, never the store.
public enum VerificationMarks {
    public static func directory(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        if let d = environment["DRPLAN_CACHE_DIR"], !d.isEmpty { return d + "/verified" }
        if let x = environment["XDG_CACHE_HOME"], !x.isEmpty { return x + "/drplan/verified" }
        return (environment["HOME"] ?? NSHomeDirectory()) + "/.cache/drplan/verified"
    }

    /// The file for a store: named by the SHA-256 of its absolute location.
    public static func file(for store: String) -> String {
        let absolute = store.contains("://") || store.hasPrefix("/") ? store
            : URL(fileURLWithPath: store, relativeTo: URL(fileURLWithPath: FileManager.default.currentDirectoryPath)).standardizedFileURL.path
        return directory() + "/" + JSONWriter.hex(SHA256.hash(data: Data(absolute.utf8))) + ".json"
    }

    /// The mark for a store (nil: none). A file that cannot be read or parsed is an error
    /// naming it: the caller says so and reads the whole log.
    public static func load(for store: String) throws(EvidenceError) -> VerificationMark? {
        let path = file(for: store)
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw EvidenceError(kind: .unreadable, message: "cannot read the verification cache \(path)")
        }
        let mark: VerificationMark
        do { mark = try JSONDecoder().decode(VerificationMark.self, from: data) } catch {
            throw EvidenceError(kind: .unreadable, message: "the verification cache \(path) cannot be used (another drplan version wrote it, or it is damaged: \(error)); it is replaced once the whole log verifies")
        }
        // Two stores whose locations hash alike would be a SHA-256 collision; a file copied
        // from another store's name is this.
        guard mark.store == store else { return nil }
        return mark
    }

    /// Writes the mark atomically (a temporary file renamed over the old one).
    public static func save(_ mark: VerificationMark) throws(EvidenceError) {
        let path = file(for: mark.store)
        do {
            try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
            try encoder.encode(mark).write(to: URL(fileURLWithPath: path), options: .atomic)
        } catch {
            throw EvidenceError(kind: .unreadable, message: "cannot write the verification cache \(path): \(error)")
        }
    }
}
