import CEL
import Crypto
import Foundation
import ZIPFoundation

/// An evidence bundle: a zip of files an auditor keeps, with `MANIFEST.sha256` listing each
/// file's SHA-256 in `sha256sum` format, so the bundle can be checked with drplan or by hand.
public enum EvidenceBundle {
    public static let manifestName = "MANIFEST.sha256"

    /// Writes the files and their manifest atomically (a temporary file, then a rename).
    public static func write(_ files: [(name: String, data: Data)], to url: URL, modified: Date) throws(RepositoryError) {
        let manifest = files.map { "\(JSONWriter.hex(SHA256.hash(data: $0.data)))  \($0.name)" }.joined(separator: "\n") + "\n"
        let all = files + [(manifestName, Data(manifest.utf8))]
        let tmp = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).tmp-\(UUID().uuidString)")
        do {
            let archive = try Archive(url: tmp, accessMode: .create)
            for (name, data) in all {
                try archive.addEntry(with: name, type: .file, uncompressedSize: Int64(data.count), modificationDate: modified, compressionMethod: .deflate) { pos, size in
                    data.subdata(in: Int(pos)..<Int(pos) + size)
                }
            }
        } catch {
            try? FileManager.default.removeItem(at: tmp)
            throw RepositoryError(.io, "cannot write the bundle: \(error)")
        }
        guard rename(tmp.path, url.path) == 0 else {
            try? FileManager.default.removeItem(at: tmp)
            throw RepositoryError(.io, "cannot write \(url.path): \(String(cString: strerror(errno)))")
        }
    }

    /// Problems found: a file whose content no longer matches, one missing, one not listed.
    public static func verify(_ url: URL) throws(RepositoryError) -> [String] {
        let archive: Archive
        do { archive = try Archive(url: url, accessMode: .read) } catch {
            throw RepositoryError(.corrupt, "\(url.path) is not a readable zip file: \(error)")
        }
        var contents: [String: Data] = [:]
        for entry in archive where entry.type == .file {
            var data = Data()
            do { _ = try archive.extract(entry) { data.append($0) } } catch { return ["\(entry.path) cannot be read: \(error)"] }
            contents[entry.path] = data
        }
        guard let manifest = contents[manifestName].map({ String(decoding: $0, as: UTF8.self) }) else { return ["the bundle has no \(manifestName)"] }
        var problems: [String] = []
        var listed = Set<String>()
        for line in manifest.split(separator: "\n") {
            let parts = line.split(separator: " ", maxSplits: 1)
            guard parts.count == 2 else { problems.append("malformed manifest line: \(line)"); continue }
            let name = parts[1].trimmingCharacters(in: .whitespaces)
            listed.insert(name)
            guard let data = contents[name] else { problems.append("\(name) is listed but missing"); continue }
            if JSONWriter.hex(SHA256.hash(data: data)) != String(parts[0]) { problems.append("\(name) does not match its SHA-256 in the manifest") }
        }
        for name in contents.keys.sorted() where name != manifestName && !listed.contains(name) { problems.append("\(name) is in the bundle but not in the manifest") }
        return problems
    }
}
