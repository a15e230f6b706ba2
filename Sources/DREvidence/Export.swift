import CEL
import Crypto
import DRFacts
import DRInventory
import DRPlanning
import DRPolicy
import DRReports
import DRRuns
import Foundation

/// What `drplan evidence export` is asked for.
public struct ExportRequest: Sendable {
    public var inventory: Inventory
    public var policies: PolicySet
    public var options: CheckOptions
    public var from: Timestamp, to: Timestamp
    /// The evidence store, opened read-only and already verified; nil when there is none.
    public var store: EvidenceStore?
    public var verification: StoreVerification?
    public var signer: Curve25519.Signing.PrivateKey?
    public var identity: Identity
    /// When the bundle is made (the wall clock; an injected one in tests).
    public var generatedAt: Timestamp
    public var baseDirectory: String
    public var inventoryArgs: String

    public init(inventory: Inventory, policies: PolicySet, options: CheckOptions, from: Timestamp, to: Timestamp, store: EvidenceStore?,
                verification: StoreVerification?, signer: Curve25519.Signing.PrivateKey?, identity: Identity, generatedAt: Timestamp,
                baseDirectory: String, inventoryArgs: String) {
        self.inventory = inventory; self.policies = policies; self.options = options; self.from = from; self.to = to
        self.store = store; self.verification = verification; self.signer = signer; self.identity = identity
        self.generatedAt = generatedAt; self.baseDirectory = baseDirectory; self.inventoryArgs = inventoryArgs
    }
}

/// Why a bundle could not be made.
public struct ExportError: Error, Sendable {
    public enum Kind: Sendable { case evidence, evaluation, render, write }
    public var kind: Kind
    public var message: String
}

/// A bundle's files, in the order they are written, and what the command reports.
public struct ExportedBundle: Sendable {
    public var files: [(name: String, data: Data)]
    public var runs: Int
    public var auditEntries: Int
    public var signed: Bool
    /// Inventory files left out because they could not be redacted for certain.
    public var withheld: [(path: String, reason: String)]
    public var waiversInForce: [Waiver]
    /// Audit entries for the waivers the bundle's findings relied on.
    public var waiversApplied: [(event: String, detail: [String: String])]
}

public enum EvidenceExport {
    /// Builds every file of the bundle, attestation and signature included. Nothing is written.
    public static func build(_ r: ExportRequest) throws(ExportError) -> ExportedBundle {
        let startDate = Date(timeIntervalSince1970: TimeInterval(r.from.seconds)), endDate = Date(timeIntervalSince1970: TimeInterval(r.to.seconds))
        var allRuns: [RunRecord] = [], rows: [[(String, Value)]] = [], extract: [EvidenceStore.AuditEntry] = []
        var measuredEnd = MeasuredEvidence(), measuredStart = MeasuredEvidence()
        var periodEndHead: (seq: Int64, hash: String)? = nil
        if let store = r.store {
            do {
                let stored = try store.runs()
                allRuns = stored.filter { $0.startedAt <= endDate }
                rows = try store.runRows(from: startDate, to: endDate)
                measuredEnd = try store.measured(until: endDate, runs: stored)
                measuredStart = try store.measured(until: startDate, runs: stored)
                // From the period's first entry to the head now: the runs of the period end in
                // entries that may come after it, and each must be checkable against the chain.
                // A period with no entry of its own still gets the head, so the extract always
                // ends at the head it attests.
                let headSeq = try store.auditHead().seq
                if headSeq > 0 { extract = try store.audit(fromSeq: try store.firstSeq(atOrAfter: startDate) ?? headSeq) }
                periodEndHead = try store.head(atOrBefore: endDate)
            } catch {
                throw ExportError(kind: .evidence, message: error.message)
            }
        }
        // Planned once at the period's end: for the runbook, the scenarios and DR407.
        let plans = Scenario.defaultPlans(r.inventory, now: r.to, measured: measuredEnd)
        let atEnd = try check(r, now: r.to, measured: measuredEnd, plans: plans)
        let atStart = try check(r, now: r.from, measured: measuredStart, plans: Scenario.defaultPlans(r.inventory, now: r.from, measured: measuredStart))
        let inPeriod = allRuns.filter { $0.startedAt >= startDate }
        let context = ReportContext(toolVersion: r.identity.toolVersion, generatedAt: r.generatedAt)

        var files: [(name: String, data: Data)] = []
        func add(_ name: String, _ text: String) { files.append((name, Data(text.utf8))) }
        for format in [JSONFormat.self, HTMLFormat.self, SARIFFormat.self, JUnitFormat.self] as [any ReportFormat.Type] {
            do { add(format.fileName, try format.render(atEnd, context: context)) } catch {
                throw ExportError(kind: .render, message: "cannot render the \(format.name) report: \(error); this is a bug in drplan, please report it")
            }
        }
        let table = ControlTable.build(atEnd, runs: inPeriod)
        add("controls.csv", table.csv)
        add("controls.html", table.html(organization: r.inventory.organization, from: r.from, to: r.to))
        let figures = PeriodFigures.compute(inventory: r.inventory, runs: allRuns, from: r.from, to: r.to, atStart: atStart, atEnd: atEnd)
        add("period.json", figures.json)
        add("period.csv", figures.csv)
        add("runbook.md", PlanFormat.markdown(plans, inventory: r.inventory, inventoryArgs: r.inventoryArgs, asOf: r.to, baseDirectory: r.baseDirectory))
        add("scenarios.json", PlanFormat.json(plans, asOf: r.to))
        add("runs.json", RunsFile.json(rows))
        add("runs.csv", RunsFile.csv(rows))
        add("restore-tests.csv", RunsFile.csv(rows.filter { RunsFile.field($0, "kind") == "restore_test" }))
        add("audit-log.json", ChainExtract.json(extract))
        var checkpoints: [Checkpoint] = []
        if let store = r.store {
            do { checkpoints = try store.checkpoints() } catch { throw ExportError(kind: .evidence, message: error.message) }
        }
        add("checkpoints.jsonl", checkpoints.map { $0.json + "\n" }.joined())
        for (name, text) in DRPolicy.PolicySet.builtinFiles { add("policies/builtin/" + (name as NSString).lastPathComponent, text) }
        for (i, f) in r.policies.files.enumerated() { files.append(("policies/\(i + 1)-\((f.path as NSString).lastPathComponent)", Data(f.bytes))) }
        let (inventoryFiles, withheld) = redactedInventory(r.inventory)
        files += inventoryFiles

        let waivers = r.inventory.waivers.filter { $0.expires >= r.to }
        let attestation = Attestation.make(r, atEnd: atEnd, runs: rows.count, extract: extract, periodEndHead: periodEndHead, checkpoints: checkpoints,
                                           waivers: waivers)
        files.insert(("attestation.json", Data(attestation.utf8)), at: 0)
        let manifest = EvidenceBundle.manifest(files)
        files.append((EvidenceBundle.manifestName, manifest))
        if let signer = r.signer {
            do { files.append((EvidenceBundle.signatureName, Data((try signer.signature(for: manifest).base64EncodedString() + "\n").utf8))) } catch {
                throw ExportError(kind: .evidence, message: "cannot sign the bundle: \(error)")
            }
        }
        return ExportedBundle(files: files, runs: rows.count, auditEntries: extract.count, signed: r.signer != nil, withheld: withheld, waiversInForce: waivers,
                              waiversApplied: WaiverAudit.applied(atEnd))
    }

    static func check(_ r: ExportRequest, now: Timestamp, measured: MeasuredEvidence, plans: [ScenarioPlan]) throws(ExportError) -> CheckResult {
        var options = r.options
        options.lostIn = Scenario.lostIn(plans)
        do {
            var result = try Check.run(inventory: r.inventory, policies: r.policies, now: now, measured: measured, options: options)
            if let v = r.verification {
                result.evidenceStatus = EvidenceStatus(state: v.state.rawValue, head: v.headLine, problems: v.problems, scope: v.scopeLine)
                result.unverifiedEvidence = v.problems
            }
            return result
        } catch {
            throw ExportError(kind: .evaluation, message: error.description)
        }
    }

    /// The inventory as it was written, every secret masked where it stands (the bundle leaves
    /// the machine; the attestation hashes the original bytes). A file that cannot be redacted
    /// for certain is left out and named.
    static func redactedInventory(_ inventory: Inventory) -> ([(name: String, data: Data)], [(path: String, reason: String)]) {
        var files: [(name: String, data: Data)] = [], withheld: [(String, String)] = [], notes: [String] = []
        for (i, f) in inventory.files.enumerated() {
            let name = "inventory/\(i + 1)-\((f.path as NSString).lastPathComponent)"
            switch SourceRedaction.redact(f.bytes) {
            case .redacted(let text, let masked):
                files.append((name, Data(text.utf8)))
                notes.append("\(name): \(f.path), \(masked == 0 ? "copied as it is (no secret found)" : "copied with secrets masked (\(Redaction.mask)) in \(masked) place(s)")")
            case .withheld(let reason):
                notes.append("\(name): \(f.path), not included: \(reason); drplan will not copy what it cannot redact for certain")
                withheld.append((f.path, reason))
            }
        }
        let readme = ["The inventory files this bundle was made from, with every literal secret replaced by \(Redaction.mask) in place (line and column numbers are unchanged).",
                      "attestation.json gives the SHA-256 of each original file, as it was read.", ""] + notes
        files.append(("inventory/README.txt", Data((readme.joined(separator: "\n") + "\n").utf8)))
        return (files, withheld)
    }
}
