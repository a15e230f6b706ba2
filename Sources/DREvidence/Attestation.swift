import CEL
import Crypto
import DRInventory
import DRPolicy
import DRRuns
import Foundation

/// attestation.json: what the bundle covers, who made it and how, under which rules, and where
/// the chain stood. MANIFEST.sha256 covers it, and attestation.sig signs the manifest.
enum Attestation {
    static let format: Int64 = 1

    static func make(_ r: ExportRequest, atEnd: CheckResult, runs: Int, extract: [EvidenceStore.AuditEntry],
                     periodEndHead: (seq: Int64, hash: String)?, checkpoints: [Checkpoint], waivers: [Waiver]) -> String {
        let inv = r.inventory
        func ids(_ xs: [String]) -> Value { .list(xs.map(Value.string)) }
        func head(_ h: (seq: Int64, hash: String)?) -> Value {
            h.map { .object([("seq", .int($0.seq)), ("sha256", .string($0.hash))]) } ?? .null
        }
        let rules = r.policies.rules
        let evaluated = Set(atEnd.findings.map(\.rule)).union(atEnd.passedJudgements.keys).union(atEnd.notApplicable.map(\.rule))
        let inScope = rules.filter { $0.enabled && (r.options.frameworks.isEmpty || !$0.frameworks.isDisjoint(with: Set(r.options.frameworks))) }
        let scope: Value = .object([
            ("organization", inv.organization.map(Value.string) ?? .null),
            ("inventory_files", .list(inv.files.map { f in
                .object([("path", .string(f.path)), ("sha256", .string(Digests.sha256Hex([f.bytes]))), ("bytes", .int(Int64(f.bytes.count)))])
            })),
            ("inventory_sha256", .string(atEnd.inventorySHA256)),
            ("frameworks", ids(r.options.frameworks.isEmpty ? inv.policy.frameworks.map(\.rawValue) : r.options.frameworks)),
            ("sites", ids(inv.sites.map(\.id))), ("assets", ids(inv.assets.map(\.id))), ("jobs", ids(inv.jobs.map(\.id))),
            ("targets", ids(Array(Set(inv.jobs.flatMap(\.targets))).sorted())), ("restore_tests", ids(inv.restoreTests.map(\.id))),
        ])
        let generated: Value = .object([
            ("at", .string(r.generatedAt.description)), ("user", .string(r.identity.user)), ("host", .string(r.identity.host)),
            ("command_line", ids(r.identity.commandLine)), ("drplan_version", .string(r.identity.toolVersion)),
            ("drplan_binary_sha256", r.identity.binarySHA256.map(Value.string) ?? .null),
        ])
        let policy: Value = .object([
            ("catalog_sha256", .string(PolicySet.catalogSHA256)),
            ("policy_files", .list(r.policies.files.map { f in .object([("path", .string(f.path)), ("sha256", .string(Digests.sha256Hex([f.bytes])))]) })),
            ("overrides", .list(r.policies.overrides.map { o in
                .object([("rule", .string(o.rule)), ("enabled", o.enabled.map(Value.bool) ?? .null), ("severity", o.severity.map { .string($0.rawValue) } ?? .null),
                         ("at", .string(o.location.description))])
            })),
            ("rules_evaluated", ids(inScope.map(\.id).filter(evaluated.contains).sorted())),
            ("rules_in_scope", ids(inScope.map(\.id).sorted())),
            ("rules_disabled", ids(rules.filter { !$0.enabled }.map(\.id).sorted())),
        ])
        let waiverList: Value = .list(waivers.map { w in
            .object([("rule", .string(w.rule)), ("subject", .string(w.subject)), ("reason", .string(w.reason)), ("approved_by", .string(w.approvedBy)),
                     ("expires", .string(w.expires.description)), ("at", .string(w.origin.location.description))])
        })
        let last = checkpoints.last
        let evidence: Value = .object([
            ("store", r.store == nil ? .null : .string("present")),
            ("verification", r.verification.map { .string($0.state.rawValue) } ?? .string("no evidence store")),
            ("problems", ids(r.verification?.problems ?? [])),
            ("runs_in_period", .int(Int64(runs))),
            ("chain_extract", .object([("from_seq", extract.first.map { .int($0.seq) } ?? .null), ("to_seq", extract.last.map { .int($0.seq) } ?? .null)])),
            ("head_at_period_end", head(periodEndHead)),
            ("head_at_export", head(extract.last.map { ($0.seq, $0.hash) } ?? r.verification.map { $0.head })),
            ("last_checkpoint", last.map { c in
                .object([("seq", .int(c.seq)), ("sha256", .string(c.head)), ("at", .string(c.at)), ("host", .string(c.host)), ("key", .string(c.key))])
            } ?? .null),
        ])
        let signature: Value = r.signer.map { k in
            .object([("algorithm", .string("ed25519")), ("key", .string(EvidenceKeys.keyId(k.publicKey))),
                     ("public_key", .string(k.publicKey.rawRepresentation.base64EncodedString())),
                     ("covers", .string(EvidenceBundle.manifestName)), ("file", .string(EvidenceBundle.signatureName))])
        } ?? .null
        return JSONWriter().string(.object([
            ("drplan_attestation", .int(format)), ("scope", scope),
            ("period", .object([("from", .string(r.from.description)), ("to", .string(r.to.description))])),
            ("generated", generated), ("policy", policy), ("waivers_in_force", waiverList), ("evidence", evidence), ("signature", signature),
        ])) + "\n"
    }
}
