import CEL
import Crypto
import Foundation

/// A signed statement that the audit chain reached entry `seq` with hash `head`. Kept outside
/// the database, one JSON line each in an append-only file beside it (and copied into every
/// bundle): whoever can rewrite the database can recompute an unkeyed chain, but cannot sign
/// a checkpoint that matches the rewrite without the private key.
public struct Checkpoint: Sendable, Equatable {
    public var seq: Int64
    public var head: String
    public var at: String
    public var host: String
    public var key: String
    public var signature: String

    /// The exact bytes signed.
    public static func message(seq: Int64, head: String, at: String, host: String) -> Data {
        Data("drplan-checkpoint-v1\n\(seq)\n\(head)\n\(at)\n\(host)\n".utf8)
    }

    public func isSigned(by key: Curve25519.Signing.PublicKey) -> Bool {
        guard let sig = Data(base64Encoded: signature) else { return false }
        return key.isValidSignature(sig, for: Self.message(seq: seq, head: head, at: at, host: host))
    }

    public var json: String {
        JSONWriter(pretty: false).string(.object([
            ("seq", .int(seq)), ("head", .string(head)), ("at", .string(at)), ("host", .string(host)),
            ("key", .string(key)), ("signature", .string(signature)),
        ]))
    }
}

public enum Checkpoints {
    /// The checkpoint file of a store: beside it, so that it is backed up and moved with it.
    public static func path(forStore store: String) -> String { store + ".checkpoints" }

    public static func sign(seq: Int64, head: String, at: Date, with key: Curve25519.Signing.PrivateKey) throws(EvidenceError) -> Checkpoint {
        let at = EvidenceStore.iso(at), host = ThisHost.name
        let sig: Data
        do { sig = try key.signature(for: Checkpoint.message(seq: seq, head: head, at: at, host: host)) } catch {
            throw EvidenceError(kind: .unreadable, message: "cannot sign a checkpoint: \(error)")
        }
        return Checkpoint(seq: seq, head: head, at: at, host: host, key: EvidenceKeys.keyId(key.publicKey), signature: sig.base64EncodedString())
    }

    /// Appends one line and syncs it: a checkpoint that is not on disk anchors nothing.
    public static func append(_ c: Checkpoint, to path: String) throws(EvidenceError) {
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        guard fd >= 0 else { throw EvidenceError(kind: .unreadable, message: "cannot open \(path) to add a checkpoint: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let bytes = Array((c.json + "\n").utf8)
        let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        guard n == bytes.count, fsync(fd) == 0 else {
            throw EvidenceError(kind: .unreadable, message: "cannot write a checkpoint to \(path): \(String(cString: strerror(errno)))")
        }
    }

    /// Every checkpoint in the file (none when it does not exist). A line that does not parse
    /// is an error naming it: a damaged anchor file is not "no anchors".
    public static func read(_ path: String) throws(EvidenceError) -> [Checkpoint] {
        guard FileManager.default.fileExists(atPath: path) else { return [] }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw EvidenceError(kind: .unreadable, message: "cannot read \(path); check its permissions")
        }
        return try parse(data, name: path)
    }

    public static func parse(_ data: Data, name: String) throws(EvidenceError) -> [Checkpoint] {
        var out: [Checkpoint] = []
        for (i, line) in String(decoding: data, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false).enumerated() where !line.isEmpty {
            guard let obj = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any],
                  let seq = (obj["seq"] as? NSNumber)?.int64Value, let head = obj["head"] as? String, let at = obj["at"] as? String,
                  let host = obj["host"] as? String, let key = obj["key"] as? String, let sig = obj["signature"] as? String else {
                throw EvidenceError(kind: .unreadable, message: "\(name):\(i + 1): not a checkpoint line; the anchor file was damaged or edited")
            }
            out.append(Checkpoint(seq: seq, head: head, at: at, host: host, key: key, signature: sig))
        }
        return out
    }

    /// Checks checkpoints against a chain: `hashAt(seq)` is the chain's hash at that entry
    /// (nil when the chain has no such entry), `headSeq` its last entry. With `key`, each
    /// checkpoint's signature is checked too; without, only its agreement with the chain.
    /// `signaturesFrom`: the first checkpoint whose signature is checked (those before were
    /// checked with this key by an earlier verification on this machine).
    public static func problems(_ checkpoints: [Checkpoint], headSeq: Int64, key: Curve25519.Signing.PublicKey?, signaturesFrom: Int = 0,
                                hashAt: (Int64) -> String?) -> [String] {
        var problems: [String] = []
        var lastSeq: Int64 = 0
        for (i, c) in checkpoints.enumerated() {
            let name = "checkpoint \(i + 1) (entry \(c.seq), signed \(c.at) on \(c.host))"
            if let key, i >= signaturesFrom {
                if c.key != EvidenceKeys.keyId(key) {
                    problems.append("\(name) was signed by key \(c.key), not by the key given (\(EvidenceKeys.keyId(key)))")
                } else if !c.isSigned(by: key) {
                    problems.append("\(name) does not carry a valid signature of this key: it was forged or edited")
                }
            }
            if c.seq < lastSeq { problems.append("\(name) goes back from entry \(lastSeq): the checkpoint file was reordered or edited") }
            lastSeq = max(lastSeq, c.seq)
            if c.seq > headSeq {
                problems.append("the audit log ends at entry \(headSeq), but \(name) covers entry \(c.seq): entries were removed from the end (the log was truncated)")
            } else if let h = hashAt(c.seq), h != c.head {
                problems.append("entry \(c.seq) differs from \(name): the chain was rewritten after it was signed")
            } else if hashAt(c.seq) == nil {
                problems.append("entry \(c.seq), which \(name) covers, is missing from the audit log")
            }
        }
        return problems
    }
}
