import CEL
import Crypto
import Foundation
import ZIPFoundation

/// An evidence bundle: a zip of files an auditor keeps, with `MANIFEST.sha256` listing each
/// file's SHA-256 in `sha256sum` format (checkable with drplan or by hand), and, when signed,
/// `attestation.sig`: an Ed25519 signature over the manifest's exact bytes.
public enum EvidenceBundle {
    public static let manifestName = "MANIFEST.sha256"
    public static let signatureName = "attestation.sig"

    /// The manifest of `files`, in their order.
    static func manifest(_ files: [(name: String, data: Data)]) -> Data {
        Data((files.map { "\(JSONWriter.hex(SHA256.hash(data: $0.data)))  \($0.name)" }.joined(separator: "\n") + "\n").utf8)
    }

    /// Writes the files atomically (a temporary file beside the target, then a rename), so
    /// that a bundle is either whole or absent.
    public static func write(_ files: [(name: String, data: Data)], to url: URL, modified: Date) throws(ExportError) {
        let tmp = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).tmp-\(UUID().uuidString)")
        do {
            let archive = try Archive(url: tmp, accessMode: .create)
            for (name, data) in files {
                try archive.addEntry(with: name, type: .file, uncompressedSize: Int64(data.count), modificationDate: modified, compressionMethod: .deflate) { pos, size in
                    data.subdata(in: Int(pos)..<Int(pos) + size)
                }
            }
        } catch {
            try? FileManager.default.removeItem(at: tmp)
            throw ExportError(kind: .write, message: "cannot write the bundle \(url.path): \(error); check that its folder exists and is writable")
        }
        guard rename(tmp.path, url.path) == 0 else {
            let reason = String(cString: strerror(errno))
            try? FileManager.default.removeItem(at: tmp)
            throw ExportError(kind: .write, message: "cannot write \(url.path): \(reason)")
        }
    }
}
