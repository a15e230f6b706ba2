import ArgumentParser
import CEL
import Crypto
import DRPolicy
import DRFacts
import DRInventory
import DRRuns
import Foundation
import Synchronization

/// Options every command accepts (docs/cli.md: global options follow the subcommand).
struct GlobalOptions: ParsableArguments {
    @Option(name: [.short, .customLong("inventory")], help: ArgumentHelp("Inventory file or directory (repeatable).", valueName: "path"))
    var inventory: [String] = []

    @Option(name: .long, help: ArgumentHelp("Evaluate as of this instant (RFC 3339 or YYYY-MM-DD); default now.", valueName: "timestamp"))
    var now: String?

    @Option(name: .long, help: ArgumentHelp("Evidence store: a file, or postgresql://USER@HOST:PORT/DB?sslmode=… for a fleet; default: the inventory's evidence.url, else .drplan/evidence.sqlite beside the first inventory file.", valueName: "path|url"))
    var evidence: String?

    @Option(name: .long, help: ArgumentHelp("The host to act as: backup, restore-test and schedule take this host's jobs, and runs are recorded under it; default DRPLAN_HOST, else this machine's hostname.", valueName: "name"))
    var host: String?

    @Option(name: .long, help: ArgumentHelp("Wait up to this long for a repository lock another process holds (e.g. 10m); default: fail at once, naming the holder.", valueName: "duration"))
    var retryLock: String?

    @Flag(name: .long, help: "Never colour output (also: NO_COLOR).")
    var noColor = false

    @Flag(name: .shortAndLong, help: "Print only errors.")
    var quiet = false

    @Flag(name: .shortAndLong, help: "Print what is read and done.")
    var verbose = false

    @Flag(name: .long, help: "Use measured evidence even from a store that fails verification (the report says so).")
    var allowUnverifiedEvidence = false

    @Flag(name: .long, help: "Read the whole audit log and every run, instead of the entries written since this machine last verified the store (docs/evidence.md).")
    var fullVerification = false

    /// The inventory paths, defaulting to ./drplan.yaml.
    var inventoryPaths: [String] { inventory.isEmpty ? ["drplan.yaml"] : inventory }

    func validate() throws {
        if let r = retryLock {
            do { _ = try TimeSpan.parse(r) } catch { throw ValidationError("invalid --retry-lock '\(r)': \(error.reason)") }
        }
        if let e = evidence, PostgresLocation.isURL(e) {
            do { _ = try PostgresLocation.parse(e) } catch { throw ValidationError(error.message) }
        }
        if let now {
            do { _ = try Timestamp.parse(now) } catch {
                throw ValidationError("invalid --now '\(now)': \(error.reason)")
            }
        }
    }

    /// The instant to evaluate at.
    func instant() -> Timestamp {
        if let now, let t = try? Timestamp.parse(now) { return t }
        return Self.wallClock()
    }

    /// The real time, in whole seconds: when a report was written (unlike `--now`, the instant
    /// the inventory is evaluated at).
    static func wallClock() -> Timestamp { Timestamp(seconds: Timestamp(Date()).seconds) }

    /// Where relative paths in the inventory are resolved: the first inventory's directory.
    var baseDirectory: String {
        let first = inventoryPaths[0]
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: first, isDirectory: &isDir), isDir.boolValue { return first }
        let dir = (first as NSString).deletingLastPathComponent
        return dir.isEmpty ? "." : dir
    }

    /// `--evidence`, else the inventory's `evidence.url` (known once it is loaded), else
    /// `.drplan/evidence.sqlite` beside the first inventory file. A URL is as given (its
    /// password, if any, is never printed: messages use the store's own `path`).
    var evidencePath: String {
        if let evidence { return evidence }
        if let url = InventoryEvidence.selected.withLock({ $0.url }) {
            return PostgresLocation.isURL(url) || url.hasPrefix("/") ? url : baseDirectory + "/" + url
        }
        return baseDirectory + "/.drplan/evidence.sqlite"
    }

    /// The evidence store as it may be printed.
    var evidenceDisplay: String { PostgresLocation.display(of: evidencePath) }

    /// The inventory's `evidence.password`, resolved (nil: none declared, so the PG
    /// environment and ~/.pgpass are used). Declared but unreadable is exit 3.
    func evidencePassword() throws(CommandFailure) -> String? {
        guard PostgresLocation.isURL(evidencePath), let ref = InventoryEvidence.selected.withLock({ $0.password }) else { return nil }
        do { return try Secrets.resolve(ref, relativeTo: baseDirectory) } catch {
            Console.error("drplan: error: evidence.password: \(error.message)")
            throw CommandFailure(status: .environment)
        }
    }

    /// For commands that need no inventory (`history`, `evidence verify`): reads the
    /// inventory, when there is one and no `--evidence`, to learn its `evidence.url`.
    func learnEvidenceLocation() throws(CommandFailure) {
        guard evidence == nil, FileManager.default.fileExists(atPath: inventoryPaths[0]) else { return }
        _ = try loadInventory()
    }

    /// The store opened for reading only, or nil when there is none yet (no file; a database
    /// without drplan's tables). Nothing is created, migrated or marked.
    func readStore() throws(CommandFailure) -> EvidenceStore? {
        let password = try evidencePassword()
        do { return try EvidenceStore.readingIfPresent(evidencePath, password: password) } catch {
            Console.error("drplan: error: \(error.message)")
            throw CommandFailure(status: .environment)
        }
    }

    /// Measured evidence for the facts. Commands that only read never create the store: a
    /// missing store is an empty one. A store whose audit log, runs or checkpoints fail
    /// verification is refused (exit 3): judging from edited evidence is what a forger wants.
    /// With `--allow-unverified-evidence` it is used, and `unverified` says why, for the report.
    func measured(_ inventory: Inventory) throws(CommandFailure) -> MeasuredEvidence { try measuredEvidence(inventory).evidence }

    func measuredEvidence(_ inventory: Inventory) throws(CommandFailure) -> ReadEvidence {
        guard let store = try readStore() else { return ReadEvidence() }
        let mark = fullVerification ? nil : Self.mark(for: store)
        let verification: StoreVerification, evidence: MeasuredEvidence
        let started = DispatchTime.now()
        do { (verification, evidence) = try store.verifiedEvidence(key: publicKey(inventory), after: mark) } catch {
            Console.error("drplan: error: \(error.message)")
            throw CommandFailure(status: .environment)
        }
        if verbose {
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - started.uptimeNanoseconds) / 1e9
            Console.error("drplan: evidence of \(store.path) verified and read in \(String(format: "%.2f", seconds)) s (\(verification.scopeLine))")
        }
        try judge(store, verification)
        return ReadEvidence(evidence: evidence, unverified: verification.problems,
                            status: EvidenceStatus(state: verification.state.rawValue, head: verification.headLine, problems: verification.problems,
                                                   scope: verification.scopeLine))
    }

    /// The store opened read-only and verified in full (nil: there is none). Failing
    /// verification is exit 3 with the problems printed, unless `--allow-unverified-evidence`.
    func verifiedStore(key: Curve25519.Signing.PublicKey?) throws(CommandFailure) -> (EvidenceStore, StoreVerification)? {
        guard let store = try readStore() else { return nil }
        let verification: StoreVerification
        do {
            verification = try store.verification(key: key, previous: Self.mark(for: store))
        } catch {
            Console.error("drplan: error: \(error.message)")
            throw CommandFailure(status: .environment)
        }
        try judge(store, verification)
        return (store, verification)
    }

    /// Prints a verification's notes and problems, and keeps its mark; problems are exit 3
    /// unless `--allow-unverified-evidence`.
    func judge(_ store: EvidenceStore, _ verification: StoreVerification) throws(CommandFailure) {
        for n in verification.notes { Console.error("drplan: note: \(store.path): \(n)") }
        if let mark = verification.mark { Self.keep(mark) }
        let problems = verification.problems
        if !problems.isEmpty {
            for p in problems.prefix(20) { Console.error("drplan: \(store.path): \(p)") }
            guard allowUnverifiedEvidence else {
                Console.error("drplan: error: the evidence store \(store.path) fails verification (\(problems.count) problem(s)); nothing was judged from it. Investigate with 'drplan evidence verify', or pass --allow-unverified-evidence to use it anyway")
                throw CommandFailure(status: .environment)
            }
            Console.error("drplan: warning: using evidence that fails verification (--allow-unverified-evidence)")
        }
    }

    /// This machine's mark for a store; a damaged cache is said and ignored (the whole log
    /// is read instead, which is the safe side).
    static func mark(for store: EvidenceStore) -> VerificationMark? {
        do { return try VerificationMarks.load(for: store.path) } catch {
            Console.error("drplan: warning: \(error.message); reading the whole log")
            return nil
        }
    }

    /// Keeps a mark; a cache that cannot be written costs the next command a full read,
    /// which is said, not fatal.
    static func keep(_ mark: VerificationMark) {
        do { try VerificationMarks.save(mark) } catch { Console.error("drplan: warning: \(error.message)") }
    }

    /// The public half of the inventory's signing key, to check checkpoints' signatures with.
    /// Where the private key cannot be read here (an auditor's machine), signatures are not
    /// checked (the chain and checkpoints still are); `evidence verify --key` checks them.
    func publicKey(_ inventory: Inventory) -> Curve25519.Signing.PublicKey? {
        guard let ref = inventory.evidence.signingKey else { return nil }
        do { return try EvidenceKeys.signer(ref, relativeTo: baseDirectory).publicKey } catch {
            if verbose { Console.error("drplan: checkpoint signatures not checked: \(error.message)") }
            return nil
        }
    }

    /// The inventory's signing key, for commands that record: configured but unusable is an
    /// error (exit 3), since evidence meant to be anchored would silently not be.
    func signingKey(_ inventory: Inventory) throws(CommandFailure) -> Curve25519.Signing.PrivateKey? {
        guard let ref = inventory.evidence.signingKey else { return nil }
        do { return try EvidenceKeys.signer(ref, relativeTo: baseDirectory) } catch {
            Console.error("drplan: error: \(error.message); nothing was run (evidence.signing_key is set, so every run must be anchored)")
            throw CommandFailure(status: .environment)
        }
    }

    /// Appends audit entries to the existing store (never creating one: a command that only
    /// wrote a report has no evidence to start), then a checkpoint when a key is configured.
    /// Any failure to record is exit 3: the artefact exists but its record does not.
    func audit(_ inventory: Inventory, _ entries: [(event: String, detail: [String: String])]) throws(CommandFailure) {
        guard !entries.isEmpty, try readStore() != nil else { return }
        let key = try signingKey(inventory)
        let password = try evidencePassword()
        try recording { () throws(EvidenceError) in
            let store = try EvidenceStore(path: evidencePath, create: false, password: password)
            try store.useSigningKey(key)
            for e in entries { try store.audit(e.event, e.detail) }
            try store.checkpoint()
        }
    }

    /// Opens (creating) the evidence store, for commands that record runs.
    /// `recovering`: a real restore never waits on the signing key (it may have burned with
    /// the site being recovered): without it, the restore runs unanchored, with a warning.
    func openStore(_ inventory: Inventory, recovering: Bool = false) throws(CommandFailure) -> EvidenceStore {
        let key: Curve25519.Signing.PrivateKey?
        if recovering, let ref = inventory.evidence.signingKey {
            do { key = try EvidenceKeys.signer(ref, relativeTo: baseDirectory) } catch {
                Console.error("drplan: warning: \(error.message); restoring anyway, without a signed checkpoint")
                key = nil
            }
        } else {
            key = try signingKey(inventory)
        }
        let password = try evidencePassword()
        do {
            let store = try EvidenceStore(path: evidencePath, password: password)
            try store.useSigningKey(key)
            return store
        } catch {
            Console.error("drplan: error: \(error.message)")
            throw CommandFailure(status: .environment)
        }
    }

    /// A runner over `inventory` that records into the evidence store and logs to stderr unless `-q`.
    func runner(_ inventory: Inventory, recovering: Bool = false) throws(CommandFailure) -> Runner {
        var runner = Runner(inventory: inventory, baseDirectory: baseDirectory, store: try openStore(inventory, recovering: recovering))
        runner.verbose = verbose
        runner.lockWait = retryLock.flatMap { try? TimeSpan.parse($0) }.map { TimeInterval($0.seconds) } ?? 0
        let quiet = self.quiet
        runner.log = { if !quiet { Console.error("drplan: " + Escape.line(Redaction.text($0))) } }
        return runner
    }

    /// A runner for commands that only read repositories: it uses the evidence store if one
    /// exists and never creates one.
    func readOnlyRunner(_ inventory: Inventory) throws(CommandFailure) -> Runner {
        let store: EvidenceStore
        let exists = try readStore() != nil, password = try evidencePassword()
        do { store = exists ? try EvidenceStore(path: evidencePath, create: false, password: password) : try EvidenceStore.ephemeral() } catch {
            Console.error("drplan: error: \(error.message)")
            throw CommandFailure(status: .environment)
        }
        var runner = Runner(inventory: inventory, baseDirectory: baseDirectory, store: store)
        let quiet = self.quiet
        runner.log = { if !quiet { Console.error("drplan: " + Escape.line(Redaction.text($0))) } }
        return runner
    }

    /// Runs something that records evidence; a store that cannot be used (or a held lock) is exit 3.
    func recording<T>(_ body: () throws(EvidenceError) -> T) throws(CommandFailure) -> T {
        do { return try body() } catch {
            Console.error("drplan: error: \(error.message)")
            throw CommandFailure(status: .environment)
        }
    }

    /// Applies presentation flags and the host identity; call first in `run()`.
    func apply() {
        Console.useColor = !noColor
        if let host { ThisHost.use(host) }
        if let e = evidence, PostgresLocation.isURL(e), let p = try? PostgresLocation.parse(e), p.hasURLPassword {
            Console.error("drplan: warning: the password in --evidence is visible to every user of this machine in its process list; use evidence.password (env: or file:), PGPASSWORD or ~/.pgpass")
        }
    }

    /// Loads and validates the inventory, printing every problem and failing with exit 2.
    func loadInventory() throws(CommandFailure) -> Inventory {
        do {
            let inv = try InventoryLoader.load(paths: inventoryPaths)
            InventoryEvidence.selected.withLock { $0 = (inv.evidence.url, inv.evidence.password) }
            if verbose { for f in inv.files { Console.error("drplan: read \(f.path) (\(f.bytes.count) bytes)") } }
            return inv
        } catch {
            for d in error.diagnostics { Console.diagnostic(d.location.description, d.message) }
            let n = error.diagnostics.count
            if !quiet { Console.error("drplan: \(n) problem\(n == 1 ? "" : "s") found; nothing was evaluated") }
            throw CommandFailure(status: .badInput)
        }
    }
}

/// Measured evidence as read for judging: the evidence, why it failed verification (when used
/// anyway), and its state for the reports' headers (nil: no store).
struct ReadEvidence {
    var evidence = MeasuredEvidence()
    var unverified: [String] = []
    var status: EvidenceStatus?
}

/// The inventory's `evidence.url` and `evidence.password`, once it is loaded: the store every
/// later step of the command uses unless `--evidence` names another (one command per process).
enum InventoryEvidence {
    static let selected = Mutex<(url: String?, password: SecretRef?)>((nil, nil))
}
