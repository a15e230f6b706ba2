import ArgumentParser
import CEL
import Crypto
import DREvidence
import DRInventory
import DRPolicy
import DRRuns
import Foundation

struct EvidenceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "evidence",
        abstract: "Work with the evidence store: sign it, verify it, export it for an audit.",
        subcommands: [EvidenceKeygenCommand.self, EvidenceExportCommand.self, EvidenceVerifyCommand.self, EvidenceMigrateCommand.self, EvidenceCopyCommand.self])
}

struct EvidenceKeygenCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keygen",
        abstract: "Write an Ed25519 key pair that signs checkpoints of the audit log and evidence bundles.",
        discussion: """
            Example:
              drplan evidence keygen -o /etc/drplan/evidence.key

            Writes FILE (the private key, mode 0600) and FILE.pub (the public key, for the auditor). Neither is ever overwritten. Configure it with 'evidence: { signing_key: file:FILE }' in the inventory: every run then appends a signed checkpoint beside the evidence store, and 'evidence export' signs the bundle.
            """)

    @Option(name: .short, help: ArgumentHelp("The private key file to write (the public key goes to FILE.pub).", valueName: "file"))
    var output: String

    func run() throws {
        let (pub, id) = try reporting { () throws(RepositoryError) in try EvidenceKeys.generate(privatePath: output) }
        Console.out("wrote \(output) (private key, mode 0600) and \(pub) (public key); key id \(id)")
        Console.out("next: add 'evidence: { signing_key: file:\(output) }' to the inventory, and give \(pub) to your auditor")
    }
}

struct EvidenceVerifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Check the evidence store (audit log, runs, checkpoints), or an evidence bundle.",
        discussion: """
            Example:
              drplan evidence verify -i samples/demo/drplan.yaml --key evidence.key.pub
              drplan evidence verify evidence-2026-q4.zip --key evidence.key.pub

            The store: the audit log's hash chain, every run against its entries, and the signed checkpoints beside it (with --key, their signatures: truncation and a recomputed chain are then caught). A bundle: its signature, its manifest (nothing missing, added or escaping), its chain extract against the attested head, and every run against its entry; it ends with a paragraph for the working papers. The head is always printed, so that it can be written down.

            Exit status 0 when everything is intact, 1 when something was edited, deleted or added, 3 when it cannot be read.
            """)

    @OptionGroup var global: GlobalOptions

    @Argument(help: "An evidence bundle to check (default: the evidence store).")
    var bundle: String?

    @Option(name: .long, help: ArgumentHelp("The public key (written by 'evidence keygen') to check signatures with.", valueName: "file"))
    var key: String?

    func run() throws {
        global.apply()
        let publicKey = try key.map { k throws(CommandFailure) in try reporting { () throws(RepositoryError) in try EvidenceKeys.verifier(path: k) } }
        if let bundle {
            let verdict: BundleVerdict
            do { verdict = try BundleVerifier.verify(URL(fileURLWithPath: bundle), key: publicKey, now: GlobalOptions.wallClock()) } catch {
                Console.error("drplan: error: \(error.message)")
                throw CommandFailure(status: .environment)
            }
            for p in verdict.problems { Console.error("drplan: \(bundle): \(p)") }
            for n in verdict.notes where !global.quiet { Console.error("drplan: note: \(n)") }
            if !global.quiet || !verdict.intact { Console.out(verdict.paragraph) }
            if !verdict.intact { throw CommandFailure(status: .findings) }
            return
        }
        try global.learnEvidenceLocation()
        guard let store = try global.readStore() else {
            Console.error("drplan: error: no evidence store at \(global.evidenceDisplay); record runs with 'drplan backup' first, or pass --evidence")
            throw CommandFailure(status: .environment)
        }
        let v: StoreVerification
        do { v = try store.verification(key: publicKey, previous: GlobalOptions.mark(for: store)) } catch {
            Console.error("drplan: error: \(error.message)")
            throw CommandFailure(status: .environment)
        }
        for n in v.notes { Console.error("drplan: note: \(store.path): \(n)") }
        if let mark = v.mark { GlobalOptions.keep(mark) }
        var facts = [v.headLine]
        if v.unbound > 0 { facts.append("\(v.unbound) run(s) recorded before runs were bound to the log are not checked") }
        if v.checkpoints.isEmpty {
            facts.append("no signed checkpoint: a truncated log or a recomputed chain cannot be detected (see docs/evidence.md)")
        } else {
            facts.append("\(v.checkpoints.count) checkpoint(s) checked against the chain, signatures \(publicKey.map { "checked with key \(EvidenceKeys.keyId($0))" } ?? "not checked (pass --key)")")
            if v.unanchored > 0 { facts.append("\(v.unanchored) entr\(v.unanchored == 1 ? "y" : "ies") after the last checkpoint") }
        }
        if v.problems.isEmpty {
            if !global.quiet { Console.out("ok: the audit log of \(store.path) is intact and every run matches it; " + facts.joined(separator: "; ")) }
            return
        }
        for p in v.problems { Console.error("drplan: \(store.path): \(p)") }
        Console.out("FAILED: the evidence of \(store.path) has \(v.problems.count) problem(s); " + facts.joined(separator: "; "))
        throw CommandFailure(status: .findings)
    }
}

struct EvidenceExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Write an evidence bundle for an audit period: attestation, reports, control table, period figures, runs, chain extract, runbook, policies, inventory.",
        discussion: """
            Example:
              drplan evidence export -i samples/demo/drplan.yaml --from 2026-10-01 --to 2026-11-30 -o evidence.zip

            The evidence store is verified first (as 'check' does; exit 3 when it fails, unless --allow-unverified-evidence). The bundle is signed with --sign, else with the inventory's evidence.signing_key; check it with 'drplan evidence verify FILE.zip --key KEY.pub' (or 'sha256sum -c MANIFEST.sha256' for the files alone). docs/evidence.md lists every file.
            """)

    @OptionGroup var global: GlobalOptions

    @Option(name: .long, help: ArgumentHelp("Start of the period.", valueName: "timestamp"))
    var from: String

    @Option(name: .long, help: ArgumentHelp("End of the period; the reports are as of this instant. Not in the future.", valueName: "timestamp"))
    var to: String

    @Option(name: .long, help: ArgumentHelp("Limit findings and control tables to a framework (repeatable), as 'check' does.", valueName: "name"))
    var framework: [String] = []

    @Option(name: .long, help: ArgumentHelp("Add the policy files under this directory (repeatable), as 'check' does: the bundle judges what the CI gate judges.", valueName: "dir"))
    var policies: [String] = []

    @Option(name: .long, help: ArgumentHelp("Sign with this private key (default: the inventory's evidence.signing_key).", valueName: "file"))
    var sign: String?

    @Option(name: .short, help: ArgumentHelp("The zip file to write.", valueName: "file"))
    var output: String

    func validate() throws {
        let (start, end) = try period()
        for f in framework where Framework(rawValue: f) == nil { throw ValidationError("invalid --framework '\(f)'") }
        // Evidence of a period that has not ended cannot be complete, and a bundle dated in
        // the future would claim what nobody has seen yet.
        if end > global.instant() { throw ValidationError("--to \(to) is in the future (now is \(global.instant())); an evidence period must have ended") }
        if start > end { throw ValidationError("--from \(from) is after --to \(to)") }
    }

    /// The period as instants: a date alone means from its first second to its last. A value
    /// that does not parse is the usage error that names the flag.
    func period() throws(ValidationError) -> (Timestamp, Timestamp) {
        func parse(_ flag: String, _ v: String) throws(ValidationError) -> Timestamp {
            do { return try Timestamp.parse(v) } catch { throw ValidationError("invalid \(flag) '\(v)': \(error.reason)") }
        }
        let start = try parse("--from", from)
        var end = try parse("--to", to)
        if to.count == 10 { end = end.adding(seconds: 86_399) }
        return (start, end)
    }

    func run() throws {
        global.apply()
        let (start, end) = try period()
        let inventory = try global.loadInventory()
        let policySet = try Loaders.policies(policies, quiet: global.quiet)
        let signer: Curve25519.Signing.PrivateKey?
        if let sign {
            signer = try reporting { () throws(RepositoryError) in try EvidenceKeys.signer(.file(sign), relativeTo: FileManager.default.currentDirectoryPath) }
        } else {
            signer = try global.signingKey(inventory)
        }
        // Verified as 'check' verifies: a bundle of edited evidence is refused, not exported.
        let verified = try global.verifiedStore(key: signer?.publicKey ?? global.publicKey(inventory))
        var options = CheckOptions()
        options.frameworks = framework
        let request = ExportRequest(inventory: inventory, policies: policySet, options: options, from: start, to: end, store: verified?.0,
                                    verification: verified?.1, signer: signer, identity: Identity.current(toolVersion: Drplan.version),
                                    generatedAt: GlobalOptions.wallClock(), baseDirectory: global.baseDirectory,
                                    inventoryArgs: global.inventory.map { "-i \($0) " }.joined())
        let bundle: ExportedBundle
        do {
            bundle = try EvidenceExport.build(request)
            try EvidenceBundle.write(bundle.files, to: URL(fileURLWithPath: output), modified: Date(timeIntervalSince1970: TimeInterval(end.seconds)))
        } catch {
            Console.error(error.kind == .evaluation ? error.message : "drplan: error: \(error.message)")
            throw CommandFailure(status: error.kind == .evaluation || error.kind == .write ? .badInput : .environment)
        }
        for w in bundle.withheld { Console.error("drplan: warning: \(w.path) is not in the bundle: \(w.reason)") }
        if signer == nil && !global.quiet { Console.error("drplan: warning: the bundle is not signed; configure evidence.signing_key or pass --sign (docs/evidence.md)") }
        guard let zip = FileManager.default.contents(atPath: output) else {
            Console.error("drplan: error: \(output) was written but cannot be read back")
            throw CommandFailure(status: .environment)
        }
        try global.audit(inventory, [(event: "bundle.exported", detail: [
            "path": output, "sha256": Digests.sha256Hex([Array(zip)]), "from": start.description, "to": end.description,
            "signed_by": signer.map { EvidenceKeys.keyId($0.publicKey) } ?? "", "runs": String(bundle.runs),
        ])] + bundle.files.filter { $0.name.hasPrefix("report.") || $0.name.hasPrefix("controls.") || $0.name == "attestation.json" }.map { f in
            (event: "report.written", detail: ["path": "\(output)!\(f.name)", "format": (f.name as NSString).pathExtension, "sha256": Digests.sha256Hex([Array(f.data)])])
        } + bundle.waiversApplied)
        if !global.quiet {
            Console.out("wrote \(output): \(bundle.files.count) files, \(bundle.runs) runs, \(bundle.auditEntries) audit entries, \(bundle.signed ? "signed" : "unsigned")")
        }
    }
}
