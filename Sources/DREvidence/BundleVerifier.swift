import CEL
import Crypto
import DRInventory
import DRRuns
import Foundation
import ZIPFoundation

/// `drplan evidence verify BUNDLE.zip [--key PUB]`: the signature, the manifest (no file
/// missing, none extra, no path that escapes, the exact bytes), the chain extract against the
/// attested head, and every run against its chain entry. Everything is read from the zip
/// itself; nothing is extracted to disk.
public struct BundleVerdict: Sendable {
    public var problems: [String]
    /// Notes that are not failures (an unsigned bundle checked without a key, say).
    public var notes: [String]
    /// One paragraph an auditor can paste into working papers.
    public var paragraph: String
    public var intact: Bool { problems.isEmpty }
}

public enum BundleVerifier {
    /// No evidence file comes near this; a larger entry is a zip bomb, not evidence.
    static let entryLimit: UInt64 = 1 << 30

    public static func verify(_ url: URL, key: Curve25519.Signing.PublicKey?, now: Timestamp) throws(ExportError) -> BundleVerdict {
        guard FileManager.default.isReadableFile(atPath: url.path) else {
            throw ExportError(kind: .evidence, message: "cannot read \(url.path): no such file, or no permission to read it")
        }
        let archive: Archive
        do { archive = try Archive(url: url, accessMode: .read) } catch {
            throw ExportError(kind: .evidence, message: "\(url.path) is not a readable zip file: \(error)")
        }
        var problems: [String] = [], notes: [String] = []
        var contents: [String: Data] = [:]
        for entry in archive {
            let name = entry.path
            let parts = (name.hasSuffix("/") ? String(name.dropLast()) : name).split(separator: "/", omittingEmptySubsequences: false)
            if name.hasPrefix("/") || name.contains("\\") || parts.contains("..") || parts.contains("") {
                problems.append("the entry '\(Escape.line(name))' has a path that could escape the folder it is unpacked into"); continue
            }
            // A folder entry carries nothing (zip -r writes them when a bundle is re-packed).
            if entry.type == .directory { continue }
            guard entry.type == .file else { problems.append("the entry '\(Escape.line(name))' is not a plain file (a \(entry.type)); a bundle holds only files"); continue }
            if contents[name] != nil { problems.append("the entry '\(Escape.line(name))' appears twice"); continue }
            guard entry.uncompressedSize <= entryLimit else { problems.append("the entry '\(Escape.line(name))' is larger than any evidence file (\(entry.uncompressedSize) bytes)"); continue }
            var data = Data()
            do { _ = try archive.extract(entry, skipCRC32: false) { data.append($0) } } catch {
                problems.append("the entry '\(Escape.line(name))' cannot be read: \(error)"); continue
            }
            contents[name] = data
        }
        guard let manifest = contents[EvidenceBundle.manifestName] else {
            return verdict(url, problems + ["the bundle has no \(EvidenceBundle.manifestName)"], notes, attestation: nil, key: key, now: now)
        }
        // The manifest, exactly: "<64 hex>  <name>" per line, each name once.
        var listed = Set<String>()
        for line in String(decoding: manifest, as: UTF8.self).split(separator: "\n") {
            let hash = line.prefix(64), sep = line.dropFirst(64).prefix(2), name = String(line.dropFirst(66))
            guard hash.count == 64, hash.allSatisfy(\.isHexDigit), sep == "  ", !name.isEmpty else { problems.append("malformed manifest line: \(Escape.line(String(line)))"); continue }
            if !listed.insert(name).inserted { problems.append("\(name) is listed twice in the manifest") }
            guard let data = contents[name] else { problems.append("\(name) is listed in the manifest but missing from the bundle"); continue }
            if JSONWriter.hex(SHA256.hash(data: data)) != hash.lowercased() { problems.append("\(name) does not match its SHA-256 in the manifest: it was changed") }
        }
        for name in contents.keys.sorted() where name != EvidenceBundle.manifestName && name != EvidenceBundle.signatureName && !listed.contains(name) {
            problems.append("\(name) is in the bundle but not in the manifest: it was added")
        }
        // The signature over the manifest's bytes.
        let attestation = contents["attestation.json"].flatMap { (try? JSONSerialization.jsonObject(with: $0)) as? [String: Any] }
        if attestation == nil { problems.append("attestation.json is missing or is not JSON") }
        let signedBy = (attestation?["signature"] as? [String: Any])?["key"] as? String
        switch (contents[EvidenceBundle.signatureName], key) {
        case (let sig?, let key?):
            let raw = Data(base64Encoded: String(decoding: sig, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
            if raw.map({ key.isValidSignature($0, for: manifest) }) != true {
                problems.append("\(EvidenceBundle.signatureName) is not a valid signature of the manifest by key \(EvidenceKeys.keyId(key)): the bundle was changed after it was signed, or another key signed it")
            } else if let signedBy, signedBy != EvidenceKeys.keyId(key) {
                problems.append("attestation.json names key \(signedBy), but the signature is by \(EvidenceKeys.keyId(key))")
            }
        case (_?, nil):
            notes.append("the bundle is signed (key \(signedBy ?? "unnamed")) but no --key was given, so the signature was not checked; anyone can re-sign a bundle with a key of their own")
        case (nil, _?):
            problems.append("the bundle is not signed (no \(EvidenceBundle.signatureName)), but --key expects a signature")
        case (nil, nil):
            notes.append("the bundle is not signed: its manifest shows accidental damage, not deliberate edits")
        }
        // The chain extract and the runs.
        var entries: [EvidenceStore.AuditEntry] = []
        if let data = contents["audit-log.json"] {
            switch ChainExtract.parse(data) {
            case .success(let e): entries = e; problems += EvidenceStore.AuditEntry.chainProblems(e, from: nil, prefix: "audit-log.json: ")
            case .failure(let p): problems.append(p.message)
            }
        } else { problems.append("audit-log.json is missing") }
        if let evidence = attestation?["evidence"] as? [String: Any] {
            problems += headProblems(evidence, entries)
        }
        if let data = contents["checkpoints.jsonl"] {
            do {
                let cps = try Checkpoints.parse(data, name: "checkpoints.jsonl")
                let bySeq = Dictionary(entries.map { ($0.seq, $0.hash) }, uniquingKeysWith: { a, _ in a })
                let inRange = cps.filter { c in entries.first.map { c.seq >= $0.seq } ?? false }
                problems += Checkpoints.problems(inRange, headSeq: entries.last?.seq ?? 0, key: key) { bySeq[$0] }
                // Older checkpoints lie before the extract: only their signatures can be checked.
                if let key {
                    for c in cps where !inRange.contains(c) && !c.isSigned(by: key) {
                        problems.append("checkpoints.jsonl: the checkpoint of entry \(c.seq) does not carry a valid signature of key \(EvidenceKeys.keyId(key))")
                    }
                }
            } catch { problems.append(error.message) }
        }
        problems += runProblems(contents, entries)
        return verdict(url, problems, notes, attestation: attestation, key: key, now: now)
    }

    /// The extract must end at the head the attestation names, and hold the period-end head.
    static func headProblems(_ evidence: [String: Any], _ entries: [EvidenceStore.AuditEntry]) -> [String] {
        func head(_ key: String) -> (Int64, String)? {
            guard let h = evidence[key] as? [String: Any], let seq = (h["seq"] as? NSNumber)?.int64Value, let hash = h["sha256"] as? String else { return nil }
            return (seq, hash)
        }
        var problems: [String] = []
        if let (seq, hash) = head("head_at_export") {
            if entries.last?.seq != seq || entries.last?.hash != hash {
                problems.append("audit-log.json does not end at the attested head (entry \(seq), sha256 \(hash)): the extract was cut or replaced")
            }
        } else if !entries.isEmpty {
            problems.append("attestation.json names no chain head, but the bundle holds audit entries")
        }
        if let (seq, hash) = head("head_at_period_end"), let e = entries.first(where: { $0.seq == seq }), e.hash != hash {
            problems.append("entry \(seq) of audit-log.json is not the attested head at the period's end")
        }
        return problems
    }

    /// Each run in runs.json must match the digest of its last entry in the extract, and
    /// runs.csv must say what runs.json says.
    static func runProblems(_ contents: [String: Data], _ entries: [EvidenceStore.AuditEntry]) -> [String] {
        guard let data = contents["runs.json"] else { return ["runs.json is missing"] }
        let rows: [[(String, Value)]]
        switch RunsFile.parse(data) {
        case .success(let r): rows = r
        case .failure(let p): return [p.message]
        }
        var last: [String: String] = [:]
        var problems: [String] = []
        for e in entries where e.event.hasPrefix("run.") {
            guard let obj = (try? JSONSerialization.jsonObject(with: Data(e.detail.utf8))) as? [String: String], let run = obj["run"] else {
                problems.append("audit-log.json: entry \(e.seq) (\(e.event)) does not name its run"); continue
            }
            last[run] = obj["row_sha256"] ?? ""
        }
        for row in rows {
            let id = RunsFile.field(row, "id")
            guard let digest = last[id] else { problems.append("run \(id) in runs.json has no entry in audit-log.json: it was added"); continue }
            if digest.isEmpty { continue }   // recorded before runs were bound to the log
            if EvidenceStore.runDigest(row) != digest { problems.append("run \(id) in runs.json differs from what the audit log recorded: it was edited") }
        }
        if let csv = contents["runs.csv"], csv != Data(RunsFile.csv(rows).utf8) {
            problems.append("runs.csv does not say what runs.json says: one of them was edited")
        }
        if let csv = contents["restore-tests.csv"], csv != Data(RunsFile.csv(rows.filter { RunsFile.field($0, "kind") == "restore_test" }).utf8) {
            problems.append("restore-tests.csv does not say what runs.json says: one of them was edited")
        }
        return problems
    }

    static func verdict(_ url: URL, _ problems: [String], _ notes: [String], attestation: [String: Any]?, key: Curve25519.Signing.PublicKey?, now: Timestamp) -> BundleVerdict {
        let scope = attestation?["scope"] as? [String: Any], period = attestation?["period"] as? [String: Any]
        let generated = attestation?["generated"] as? [String: Any], evidence = attestation?["evidence"] as? [String: Any]
        let org = scope?["organization"] as? String ?? "an unnamed organization"
        let from = period?["from"] as? String ?? "?", to = period?["to"] as? String ?? "?"
        let who = "\(generated?["user"] as? String ?? "?")@\(generated?["host"] as? String ?? "?")"
        let version = generated?["drplan_version"] as? String ?? "?", at = generated?["at"] as? String ?? "?"
        let runs = (evidence?["runs_in_period"] as? NSNumber)?.intValue ?? 0
        let head = (evidence?["head_at_export"] as? [String: Any]).map { h in "entry \((h["seq"] as? NSNumber)?.int64Value ?? 0), sha256 \(h["sha256"] as? String ?? "?")" } ?? "no entries"
        let name = url.lastPathComponent
        let what = "The evidence bundle \(name) (\(org), period \(from) to \(to), made by \(who) with drplan \(version) at \(at))"
        let paragraph: String
        if problems.isEmpty {
            let signature = key.map { "its manifest carries a valid Ed25519 signature by key \(EvidenceKeys.keyId($0)), which was checked" }
                ?? "its signature, if any, was not checked (no public key was given)"
            paragraph = "\(what) was verified with drplan evidence verify on \(now): every file matches MANIFEST.sha256, none is missing or added; \(signature); "
                + "its audit-log extract is an unbroken hash chain ending at the attested head (\(head)); and each of the \(runs) run(s) in the period matches the digest its audit entry recorded. "
                + "This shows the bundle is as drplan produced it\(key == nil ? "" : " and as the key holder signed it")"
                + "; it cannot show that the evidence store was complete before the extract, nor detect edits by someone who holds the signing key."
        } else {
            paragraph = "\(what) FAILED verification with drplan evidence verify on \(now): \(problems.count) problem(s) were found (listed above). "
                + "Do not rely on its contents; ask the organization for a fresh export and its public key."
        }
        return BundleVerdict(problems: problems, notes: notes, paragraph: paragraph)
    }
}
