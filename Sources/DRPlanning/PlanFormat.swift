import CEL
import DRInventory
import Foundation
import Mustache

/// How plans are written: a table for people, JSON for programs, a runbook for an incident.
public enum PlanFormat {
    /// `1h30m`, `45s`, `2d3h`: seconds rounded to whole seconds.
    public static func duration(_ s: Double) -> String {
        s == 0 ? "0s" : (s < 1 ? String(format: "%.2fs", s) : TimeSpan(seconds: Int64(s.rounded())).description)
    }

    static func opt(_ s: Double?) -> String { s.map(duration) ?? "unknown" }

    // MARK: text

    public static func text(_ plans: [ScenarioPlan]) -> String {
        var out = plans.map(\.verdict)
        for p in plans {
            out.append("")
            out.append("\(p.scenario):")
            if p.rows.isEmpty { out.append("  nothing to restore"); continue }
            if case .storage = p.scenario {
                out.append("  asset                  tier      copies left  3-2-1   only offsite lost")
                for r in p.rows {
                    out.append("  " + [pad(r.asset, 22), pad(r.tier.rawValue, 9), pad(String(r.remainingCopies ?? 0), 12), pad(r.below321 == true ? "BROKEN" : "ok", 7), r.lostOnlyOffsite == true ? "YES" : "no"].joined(separator: " "))
                }
                continue
            }
            out.append("  wave  asset                  tier      source           restore     data loss   start       ready at    RTO   RPO")
            for r in p.rows {
                let state: String
                if r.notBackedUp { state = "REBUILD: backup: none" }
                else if !r.recoverable { state = "LOST: no copy survives" }
                else if r.blocked { state = "BLOCKED: waits for \(r.waitsFor.joined(separator: ", "))" }
                else { state = "" }
                var cells = [pad(r.wave.map(String.init) ?? "-", 4), pad(r.asset, 22), pad(r.tier.rawValue, 9), pad(r.source ?? "-", 16),
                             pad(opt(r.restoreTime), 11), pad(opt(r.dataLoss), 11)]
                if state.isEmpty {
                    cells += [pad(opt(r.start), 11), pad(opt(r.readyAt), 11), pad(mark(r.meetsRTO), 5), mark(r.meetsRPO)]
                } else {
                    cells.append(state)
                }
                out.append("  " + cells.joined(separator: " "))
            }
            if !p.summary.criticalPath.isEmpty { out.append("  critical path: \(p.summary.criticalPath.joined(separator: " -> "))") }
        }
        return out.joined(separator: "\n") + "\n"
    }

    static func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s : s + String(repeating: " ", count: n - s.count) }
    static func mark(_ b: Bool?) -> String { b.map { $0 ? "yes" : "NO" } ?? "-" }

    // MARK: JSON

    public static func json(_ plans: [ScenarioPlan], asOf: Timestamp) -> String {
        func num(_ d: Double?) -> Value { d.map(Value.double) ?? .null }
        func bool(_ b: Bool?) -> Value { b.map(Value.bool) ?? .null }
        let scenarios: [Value] = plans.map { p in
            let s = p.summary
            let rows: [Value] = p.rows.map { r in
                var pairs: [(String, Value)] = [
                    ("asset", .string(r.asset)), ("lost", .bool(r.lost)), ("recoverable", .bool(r.recoverable)), ("blocked", .bool(r.blocked)),
                    ("source", r.source.map(Value.string) ?? .null), ("restore_time", num(r.restoreTime)), ("data_loss", num(r.dataLoss)),
                    ("wave", r.wave.map { .int(Int64($0)) } ?? .null), ("start", num(r.start)), ("ready_at", num(r.readyAt)),
                    ("meets_rto", bool(r.meetsRTO)), ("meets_rpo", bool(r.meetsRPO)), ("waits_for", .strings(r.waitsFor)),
                ]
                if let c = r.remainingCopies { pairs += [("remaining_copies", .int(Int64(c))), ("below_3_2_1", bool(r.below321)), ("lost_only_offsite", bool(r.lostOnlyOffsite))] }
                return .object(pairs)
            }
            return .object([
                ("scenario", .string(p.scenario.description)), ("verdict", .string(p.verdict)),
                ("summary", .object([
                    ("affected", .int(Int64(s.affected))), ("lost", .strings(s.lost)), ("blocked", .strings(s.blocked)), ("late", .strings(s.late)),
                    ("over_rpo", .strings(s.overRPO)), ("rebuild", .strings(s.rebuild)), ("critical_path", .strings(s.criticalPath)), ("all_back_at", num(s.allBackAt)),
                    ("unknown_times", .strings(s.unknownTimes)),
                ])),
                ("assets", .list(rows)),
            ])
        }
        return JSONWriter().string(.object([("as_of", .timestamp(asOf)), ("scenarios", .list(scenarios))])) + "\n"
    }

    // MARK: runbook

    /// Where runbooks restore to unless told otherwise (`drplan plan --restore-root`).
    public static let defaultRestoreRoot = "/restore"

    /// The engine's own restore command for a row's source and job: the real repository
    /// location (restic's `<path>/drplan-restic`, or its `url`), and `--from` the copy that
    /// survives, so that the command works in the incident it is written for.
    /// `baseDirectory` is the inventory's folder, which relative paths in it are relative to:
    /// restic, unlike drplan, needs them spelled out.
    public static func restoreCommand(_ r: PlanRow, inventory: Inventory, inventoryArgs: String, restoreRoot: String = defaultRestoreRoot, baseDirectory: String = "") -> String {
        guard let source = r.source, let jobId = r.job else { return "" }
        let s = inventory.storage.first { $0.id == source }
        let target = restoreRoot + "/" + r.asset
        let job = inventory.jobs.first { $0.id == jobId }
        func resolved(_ p: String) -> String { p.hasPrefix("/") || p.hasPrefix("~") || baseDirectory.isEmpty || baseDirectory == "." ? p : baseDirectory + "/" + p }
        if job?.engine(for: source) == .restic {
            let repo = s?.url ?? s?.path.map { resolved($0) + "/drplan-restic" } ?? "<repository of \(source)>"
            var cmd = "restic -r \(repo)"
            switch job?.encryption.passphrase ?? s?.encryption.passphrase {
            case .file(let f)?: cmd += " --password-file \(resolved(f))"
            case .env(let v)?: cmd = "RESTIC_PASSWORD=\"$\(v)\" " + cmd
            default: break
            }
            return cmd + " restore latest --tag \(jobId),\(r.asset) --target \(target) --verify"
        }
        return "drplan restore \(jobId) \(inventoryArgs)--from \(source) --target \(target)"
    }

    /// Where the key to a row's copy comes from, and whether the scenario takes it away: a
    /// backup whose only key burns with the site cannot be decrypted.
    public static func keyNote(_ r: PlanRow, scenario: Scenario, inventory: Inventory) -> (text: String, danger: Bool) {
        guard let source = r.source, let job = inventory.jobs.first(where: { $0.id == r.job }) else { return ("", false) }
        let s = inventory.storage.first { $0.id == source }
        var parts: [String] = []
        let ref = job.encryption.passphrase ?? s?.encryption.passphrase
        switch ref {
        case .file(let f)?: parts.append("the passphrase is read from the file \(f)" + (f.hasPrefix("/") || f.hasPrefix("~") ? "" : " (relative to the inventory)"))
        case .env(let v)?: parts.append("the passphrase is read from the environment variable \(v)")
        case .vault(let p)?: parts.append("the passphrase is in the vault at \(p)")
        case .literal?: parts.append("the passphrase is written in the inventory itself (rule DR703)")
        case nil: parts.append(job.encryption.atRest || s?.encryption.atRest == true ? "no passphrase secret is declared" : "the copy is not encrypted by drplan")
        }
        let creds = s?.credentials.map { k, v -> String in
            switch v {
            case .env(let e): return "\(k) from $\(e)"
            case .file(let f): return "\(k) from the file \(f)"
            case .vault(let p): return "\(k) from the vault at \(p)"
            case .literal: return "\(k) (written in the inventory)"
            }
        } ?? []
        if !creds.isEmpty { parts.append("the storage's credentials: " + creds.joined(separator: ", ")) }
        var danger = false
        if let keyStorage = job.encryption.keyStorage, let ks = inventory.storage.first(where: { $0.id == keyStorage }) {
            let region: (String) -> String = { site in inventory.sites.first { $0.id == site }?.region ?? site }
            switch scenario {
            case .site(let id): danger = ks.site == id
            case .region(let rg): danger = region(ks.site) == rg
            case .storage(let id): danger = ks.id == id
            default: danger = false
            }
            parts.append("its copy is kept on \(keyStorage) (site \(ks.site))")
            if danger { parts.append("THE ONLY DECLARED COPY OF THE KEY IS LOST IN THIS SCENARIO: without another copy, this backup cannot be decrypted") }
        } else if ref != nil {
            parts.append("no 'key_storage' says where a copy of it is kept: make sure one is off the site being lost")
        }
        return (parts.joined(separator: "; "), danger)
    }

    /// The check that proves the restore worked: the asset's restore test on the surviving
    /// copy, else the engine's own verification.
    public static func verification(_ r: PlanRow, inventory: Inventory, inventoryArgs: String) -> String {
        let covering = inventory.restoreTests.first { test in
            if let a = test.asset { return a == r.asset }
            return inventory.jobs.first { $0.id == test.job }?.assets.contains(r.asset) == true
        }
        if let t = covering {
            return "drplan restore-test \(t.id) \(inventoryArgs)" + (r.source.map { "--from \($0)" } ?? "")
        }
        if r.engine == .restic, let s = inventory.storage.first(where: { $0.id == r.source }) {
            return "restic -r \(s.url ?? s.path.map { $0 + "/drplan-restic" } ?? "<repository>") check --read-data-subset 10%"
        }
        return "compare the restored files with the snapshot manifest: drplan restore verifies every byte against its SHA-256"
    }

    public static func markdown(_ plans: [ScenarioPlan], inventory: Inventory, inventoryArgs: String, asOf: Timestamp, restoreRoot: String = defaultRestoreRoot, baseDirectory: String = "") -> String {
        // User-supplied text goes through Escape.markdown (prose) or markdownCode (code).
        var out = ["# Disaster-recovery runbook: \(Escape.markdown(inventory.organization ?? "inventory"))", "", "Planned as of \(asOf). One section per scenario; follow the waves in order.", ""]
        out += plans.map { "- " + $0.verdict }
        for p in plans {
            out += ["", "## \(p.scenario)", "", p.verdict, ""]
            if case .storage = p.scenario {
                out += ["| asset | copies left | 3-2-1 | lost its only offsite copy |", "|---|---|---|---|"]
                for r in p.rows { out.append("| \(r.asset) | \(r.remainingCopies ?? 0) | \(r.below321 == true ? "broken" : "holds") | \(r.lostOnlyOffsite == true ? "yes" : "no") |") }
                continue
            }
            if !p.summary.criticalPath.isEmpty { out += ["Critical path: \(p.summary.criticalPath.joined(separator: " → ")).", ""] }
            let lost = p.rows.filter { !$0.recoverable && !$0.notBackedUp }
            if !p.summary.rebuild.isEmpty { out += ["Not backed up by design (`backup: none`), rebuild instead: \(p.summary.rebuild.joined(separator: ", ")).", ""] }
            if !lost.isEmpty { out += ["**Lost for good** (no copy survives): \(lost.map(\.asset).joined(separator: ", ")). Escalate: these need rebuilding from other sources.", ""] }
            let blocked = p.rows.filter(\.blocked)
            if !blocked.isEmpty { out += ["**Blocked** (a dependency is lost for good): \(blocked.map { "\($0.asset) (waits for \($0.waitsFor.joined(separator: ", ")))" }.joined(separator: "; ")).", ""] }
            let waves = Dictionary(grouping: p.rows.filter { $0.wave != nil }, by: { $0.wave ?? 0 })
            for w in waves.keys.sorted() {
                out += ["### Wave \(w)", ""]
                for r in waves[w] ?? [] {
                    out += [
                        "#### \(r.asset) (\(r.tier.rawValue))", "",
                        "- Source: `\(Escape.markdownCode(r.source ?? "-"))` (job `\(Escape.markdownCode(r.job ?? "-"))`, engine \(r.engine?.rawValue ?? "-"))",
                        "- Start: \(opt(r.start)) after the incident; expected duration \(opt(r.restoreTime)); ready at \(opt(r.readyAt))" + (r.meetsRTO == false ? " — **misses its RTO**" : ""),
                        "- Data lost: up to \(opt(r.dataLoss))" + (r.meetsRPO == false ? " — **more than its RPO**" : ""),
                        r.waitsFor.isEmpty ? "- Waits for: nothing" : "- Waits for: \(r.waitsFor.joined(separator: ", "))",
                        "- Keys: " + { () -> String in
                            let k = keyNote(r, scenario: p.scenario, inventory: inventory)
                            return k.danger ? "**⚠ \(k.text)**" : k.text
                        }(),
                        "- Restore:", "", "  ```sh", "  " + Escape.markdownCode(restoreCommand(r, inventory: inventory, inventoryArgs: inventoryArgs, restoreRoot: restoreRoot, baseDirectory: baseDirectory)), "  ```", "",
                        "- Verify: `\(Escape.markdownCode(verification(r, inventory: inventory, inventoryArgs: inventoryArgs)))`", "",
                    ]
                }
            }
        }
        return out.joined(separator: "\n") + "\n"
    }
}
