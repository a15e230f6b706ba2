import CEL
import Crypto
import DRInventory
import Foundation

/// The Ed25519 key pair that anchors evidence (docs/evidence.md). The private key signs
/// checkpoints of the audit chain and evidence bundles; the public key goes to the auditor,
/// who can then tell a log that was truncated or rewritten from one that was not.
///
/// Files are one line of text: `drplan-ed25519-private:BASE64` (the 32-byte seed, mode 0600)
/// and `drplan-ed25519-public:BASE64` (32 bytes).
public enum EvidenceKeys {
    static let privatePrefix = "drplan-ed25519-private:"
    static let publicPrefix = "drplan-ed25519-public:"

    /// A short, stable name for a public key: the first 16 hex digits of its SHA-256.
    public static func keyId(_ key: Curve25519.Signing.PublicKey) -> String {
        String(JSONWriter.hex(SHA256.hash(data: key.rawRepresentation)).prefix(16))
    }

    /// Writes a new key pair: `privatePath` (mode 0600, never overwritten) and
    /// `privatePath + ".pub"`. Returns the public key's path and id.
    public static func generate(privatePath: String) throws(RepositoryError) -> (publicPath: String, keyId: String) {
        let key = Curve25519.Signing.PrivateKey()
        let publicPath = privatePath + ".pub"
        for p in [privatePath, publicPath] where FileManager.default.fileExists(atPath: p) {
            throw RepositoryError(.io, "\(p) already exists; drplan never overwrites a key (evidence signed with it could no longer be checked). Choose another path, or move the old key away first")
        }
        try writeNew(privatePath, privatePrefix + key.rawRepresentation.base64EncodedString() + "\n", mode: 0o600)
        try writeNew(publicPath, publicPrefix + key.publicKey.rawRepresentation.base64EncodedString() + "\n", mode: 0o644)
        return (publicPath, keyId(key.publicKey))
    }

    /// O_EXCL with the mode given at creation: the private key is never readable by others,
    /// not even for the moment between writing and a chmod.
    static func writeNew(_ path: String, _ text: String, mode: mode_t) throws(RepositoryError) {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL, mode)
        guard fd >= 0 else { throw RepositoryError(.io, "cannot create \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let bytes = Array(text.utf8)
        let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        guard written == bytes.count, fsync(fd) == 0 else {
            unlink(path)
            throw RepositoryError(.io, "cannot write \(path): \(String(cString: strerror(errno)))")
        }
    }

    /// Reads a private key. A file that others can read is refused, as ssh refuses one: a key
    /// anyone on the machine could copy proves nothing about who signed.
    public static func signer(_ ref: SecretRef, relativeTo dir: String) throws(RepositoryError) -> Curve25519.Signing.PrivateKey {
        let text: String
        if case .file(let path) = ref {
            let full = Secrets.filePath(path, relativeTo: dir)
            var st = stat()
            guard stat(full, &st) == 0 else {
                throw RepositoryError(.passphraseRequired, "the evidence signing key file:\(path) cannot be read: \(String(cString: strerror(errno))); create one with 'drplan evidence keygen -o \(path)'")
            }
            if st.st_mode & 0o077 != 0 {
                throw RepositoryError(.passphraseRequired, "the evidence signing key file:\(path) can be read by others (mode \(String(st.st_mode & 0o777, radix: 8))); run 'chmod 600 \(full)'")
            }
        }
        text = try Secrets.resolve(ref, relativeTo: dir)
        return try parsePrivate(text, what: ref.display)
    }

    public static func parsePrivate(_ text: String, what: String) throws(RepositoryError) -> Curve25519.Signing.PrivateKey {
        let line = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard line.hasPrefix(privatePrefix), let raw = Data(base64Encoded: String(line.dropFirst(privatePrefix.count))),
              let key = try? Curve25519.Signing.PrivateKey(rawRepresentation: raw) else {
            throw RepositoryError(.passphraseRequired, "\(what) is not a drplan evidence private key (a line '\(privatePrefix)…' written by 'drplan evidence keygen')")
        }
        return key
    }

    /// Reads a public key file (`--key`).
    public static func verifier(path: String) throws(RepositoryError) -> Curve25519.Signing.PublicKey {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw RepositoryError(.io, "cannot read the public key \(path); pass the .pub file 'drplan evidence keygen' wrote")
        }
        let line = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        if line.hasPrefix(privatePrefix) {
            throw RepositoryError(.io, "\(path) is a private key; give the auditor, and --key, the .pub file beside it")
        }
        guard line.hasPrefix(publicPrefix), let raw = Data(base64Encoded: String(line.dropFirst(publicPrefix.count))),
              let key = try? Curve25519.Signing.PublicKey(rawRepresentation: raw) else {
            throw RepositoryError(.io, "\(path) is not a drplan evidence public key (a line '\(publicPrefix)…' written by 'drplan evidence keygen')")
        }
        return key
    }
}
