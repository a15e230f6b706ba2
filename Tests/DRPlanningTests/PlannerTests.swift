import DRInventory
import Foundation
import Testing
import TestSupport
@testable import DRPlanning

@Suite("Planning")
struct PlannerTests {
    func inventory(_ text: String) throws -> Inventory {
        try InventoryLoader.load(texts: [("plan-test.yaml", "drplan: 1\n" + text)])
    }

    func row(_ p: ScenarioPlan, _ id: String) throws -> PlanRow {
        try #require(p.rows.first { $0.asset == id }, "no row for \(id)")
    }

    static let twoSites = """
        sites: [{ id: hq, kind: datacenter, region: north }, { id: dr, kind: datacenter, region: south }]
        """

    @Test("a fast asset waits for its slow dependency")
    func dependencyChain() throws {
        let inv = try inventory(Self.twoSites + """

            storage: [{ id: dr-disk, kind: disk, site: dr, restore_rate: 100MB/s }]
            assets:
              - { id: db, kind: database, site: hq, size: 360GB, rto: 2h, rpo: 1h }
              - { id: app, kind: application, site: hq, size: 1GB, rto: 30m, depends_on: [db] }
            jobs: [{ id: j, assets: [db, app], schedule: "0 * * * *", targets: [dr-disk] }]
            """)
        let p = Planner(inv).plan(.site("hq"))
        let db = try row(p, "db"), app = try row(p, "app")
        #expect(db.wave == 1 && db.start == 0 && db.restoreTime == 3600 && db.readyAt == 3600 && db.meetsRTO == true)
        #expect(db.dataLoss == 3600 && db.meetsRPO == true)
        #expect(app.wave == 2 && app.start == 3600 && app.restoreTime == 10 && app.readyAt == 3610 && app.meetsRTO == false)
        #expect(p.summary.late == ["app"] && p.summary.criticalPath == ["db", "app"] && p.summary.allBackAt == 3610)
        #expect(p.verdict.hasPrefix("FAIL site:hq"))
    }

    @Test("a restore from a bucket is estimated at the rate its last restore test measured, else at restore_rate")
    func measuredRate() throws {
        let inv = try inventory(Self.twoSites + """

            storage: [{ id: bucket, kind: cloud-object, site: dr, url: "s3://b/p", restore_rate: 50MB/s }]
            assets: [{ id: db, kind: database, site: hq, size: 360GB, rto: 4h }]
            jobs: [{ id: j, assets: [db], schedule: "@daily", targets: [bucket] }]
            """)
        #expect(try row(Planner(inv).plan(.site("hq")), "db").restoreTime == 7200)
        let measured = Planner(inv, measuredRates: ["bucket": 200e6]).plan(.site("hq"))
        #expect(try row(measured, "db").restoreTime == 1800)
    }

    @Test("an asset lost for good blocks what depends on it, transitively")
    func lostAndBlocked() throws {
        let inv = try inventory(Self.twoSites + """

            storage: [{ id: hq-nas, kind: nas, site: hq }, { id: dr-disk, kind: disk, site: dr }]
            assets:
              - { id: x, kind: database, site: hq, size: 1GB }
              - { id: y, kind: server, site: hq, size: 1GB, rto: 1h, depends_on: [x] }
              - { id: z, kind: application, site: hq, size: 1GB, depends_on: [y] }
              - { id: free, kind: server, site: hq, size: 1GB }
            jobs:
              - { id: local, assets: [x], schedule: "@daily", targets: [hq-nas] }
              - { id: remote, assets: [y, z, free], schedule: "@daily", targets: [dr-disk] }
            """)
        let p = Planner(inv).plan(.site("hq"))
        #expect(try row(p, "x").recoverable == false)
        #expect(try row(p, "y").recoverable && row(p, "y").blocked && row(p, "y").readyAt == nil && row(p, "y").meetsRTO == false)
        #expect(try row(p, "y").source == "dr-disk")   // a blocked asset keeps its source
        #expect(try row(p, "z").blocked)
        #expect(try !row(p, "free").blocked && row(p, "free").readyAt == 5)
        #expect(p.summary.lost == ["x"] && p.summary.blocked == ["y", "z"])
    }

    @Test("a continuous replica survives the site loss but not ransomware")
    func replica() throws {
        let inv = try inventory(Self.twoSites + """

            storage: [{ id: dr-san, kind: san, site: dr, immutable: true }]
            assets: [{ id: wallets, kind: database, site: hq, size: 200GB, rpo: 1m, rto: 1h }]
            jobs: [{ id: rep, assets: [wallets], type: replica, schedule: continuous, lag: 30s, targets: [dr-san] }]
            """)
        let site = Planner(inv).plan(.site("hq"))
        #expect(try row(site, "wallets").recoverable && row(site, "wallets").dataLoss == 30 && row(site, "wallets").meetsRPO == true)
        let ransom = Planner(inv).plan(.ransomware)
        #expect(try !row(ransom, "wallets").recoverable)   // even on immutable storage: a replica copies the encryption
        #expect(ransom.summary.lost == ["wallets"])
        let corrupt = Planner(inv).plan(.asset("wallets"))
        #expect(try !row(corrupt, "wallets").recoverable)
    }

    @Test("ransomware spares versioned copies on immutable or air-gapped storage, with their own data loss")
    func ransomwareSurvivors() throws {
        let inv = try inventory(Self.twoSites + """

            storage: [{ id: nas, kind: nas, site: hq }, { id: lock, kind: cloud-object, site: dr, immutable: true }, { id: vault, kind: tape, site: dr, air_gapped: true }]
            assets: [{ id: db, kind: database, site: hq, size: 100GB, rpo: 1h }]
            jobs:
              - { id: hourly, assets: [db], schedule: "0 * * * *", targets: [nas] }
              - { id: mirror, assets: [db], type: mirror, schedule: "*/5 * * * *", targets: [lock] }
              - { id: weekly, assets: [db], schedule: "0 3 * * 0", targets: [vault, lock] }
            """)
        let p = Planner(inv).plan(.ransomware)
        let db = try row(p, "db")
        #expect(db.recoverable)
        #expect(db.dataLoss == Double(7 * 86_400))     // only the weekly job's copies survive
        #expect(db.meetsRPO == false)
        #expect(db.source == "vault")                   // no rto: the fastest surviving copy (tape 150MB/s > object 50MB/s)
    }

    @Test("with an RTO, the copy losing the least data among those that meet it is chosen")
    func sourceChoice() throws {
        let inv = try inventory(Self.twoSites + """

            storage: [{ id: lock, kind: cloud-object, site: dr, immutable: true }, { id: vault, kind: tape, site: dr, air_gapped: true }]
            assets: [{ id: db, kind: database, site: hq, size: 100GB, rto: 1h }]
            jobs:
              - { id: hourly, assets: [db], schedule: "0 * * * *", targets: [lock] }
              - { id: monthly, assets: [db], schedule: "0 4 1 * *", targets: [vault] }
            """)
        let db = try row(Planner(inv).plan(.site("hq")), "db")
        #expect(db.source == "lock" && db.restoreTime == 2000 && db.dataLoss == 3600)
        #expect(Planner.choose([(4000, 1, 10), (100, 2, 99)], rto: 3600) == 1)   // only the second meets the RTO
        #expect(Planner.choose([(4000, 1, 10), (5000, 2, 99)], rto: 3600) == 1)  // none meets it: the fastest
        #expect(Planner.choose([(nil, 1, 10), (nil, 3, 99)], rto: 3600) == 1)    // unknown size: the fastest rate
    }

    @Test("--parallel limits concurrent restores, critical first")
    func parallel() throws {
        let inv = try inventory(Self.twoSites + """

            storage: [{ id: dr-disk, kind: disk, site: dr, restore_rate: 100MB/s }]
            assets:
              - { id: d, kind: server, site: hq, size: 100GB, tier: low }
              - { id: c, kind: server, site: hq, size: 100GB, tier: medium }
              - { id: b, kind: server, site: hq, size: 100GB, tier: high }
              - { id: a, kind: server, site: hq, size: 100GB, tier: critical }
            jobs: [{ id: j, assets: [a, b, c, d], schedule: "@daily", targets: [dr-disk] }]
            """)
        let two = Planner(inv).plan(.site("hq"), parallel: 2)
        #expect(try [row(two, "a").start, row(two, "b").start, row(two, "c").start, row(two, "d").start] == [0, 0, 1000, 1000])
        #expect(two.summary.allBackAt == 2000)
        let one = Planner(inv).plan(.site("hq"), parallel: 1)
        #expect(try [row(one, "a").readyAt, row(one, "b").readyAt, row(one, "c").readyAt, row(one, "d").readyAt] == [1000, 2000, 3000, 4000])
        let all = Planner(inv).plan(.site("hq"))
        #expect(all.rows.allSatisfy { $0.start == 0 && $0.readyAt == 1000 })
    }

    @Test("an unknown size gives an unknown time, reported as such, and no crash")
    func unknownSize() throws {
        let inv = try inventory(Self.twoSites + """

            storage: [{ id: dr-disk, kind: disk, site: dr }]
            assets:
              - { id: mystery, kind: database, site: hq, rto: 1h }
              - { id: app, kind: application, site: hq, size: 1GB, depends_on: [mystery] }
            jobs: [{ id: j, assets: [mystery, app], schedule: "@daily", targets: [dr-disk] }]
            """)
        for parallel in [nil, 1] as [Int?] {
            let p = Planner(inv).plan(.site("hq"), parallel: parallel)
            #expect(try row(p, "mystery").restoreTime == nil && row(p, "mystery").readyAt == nil && row(p, "mystery").meetsRTO == nil)
            #expect(try row(p, "app").start == nil && row(p, "app").readyAt == nil)
            #expect(p.summary.allBackAt == nil && p.summary.unknownTimes == ["app", "mystery"])
            #expect(p.verdict.contains("restore time unknown"))
        }
        let json = PlanFormat.json([Planner(inv).plan(.site("hq"))], asOf: Timestamp(seconds: 0))
        #expect(json.contains("\"restore_time\": null"))
    }

    @Test("losing one storage target shows which assets drop below 3-2-1 or lose their only offsite copy")
    func storageLoss() throws {
        let inv = try inventory(Self.twoSites + """

            storage: [{ id: nas, kind: nas, site: hq }, { id: tape, kind: tape, site: hq }, { id: off, kind: cloud-object, site: dr }]
            assets: [{ id: a, kind: server, site: hq }, { id: b, kind: server, site: hq }]
            jobs: [{ id: j, assets: [a], schedule: "@daily", targets: [nas, off] }, { id: k, assets: [b], schedule: "@daily", targets: [nas, tape, off] }]
            """)
        let p = Planner(inv).plan(.storage("off"))
        #expect(try row(p, "a").remainingCopies == 2 && row(p, "a").below321 == true && row(p, "a").lostOnlyOffsite == true)
        #expect(try row(p, "b").remainingCopies == 3 && row(p, "b").lostOnlyOffsite == true)
        #expect(p.verdict.hasPrefix("RISK storage:off"))
    }

    @Test("scenario names are checked against the inventory")
    func parsing() throws {
        let inv = try inventory(Self.twoSites)
        #expect(try Scenario.parse("site:hq", in: inv) == .site("hq"))
        #expect(try Scenario.parse("region:south", in: inv) == .region("south"))
        #expect(try Scenario.parse("ransomware", in: inv) == .ransomware)
        #expect(throws: ScalarError.self) { try Scenario.parse("site:hqq", in: inv) }
        #expect(throws: ScalarError.self) { try Scenario.parse("flood", in: inv) }
        do { _ = try Scenario.parse("site:hqq", in: inv) } catch { #expect(error.reason.contains("did you mean 'hq'")) }
    }

    /// The reference for `waitsFor`: lost assets reached through intact ones, walked per asset.
    static func lostDependencies(_ id: String, lost: Set<String>, in inv: Inventory) -> [String] {
        let assets = Dictionary(inv.assets.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        var out: [String] = [], seen: Set<String> = [id], stack = assets[id]?.dependsOn ?? []
        while let d = stack.popLast() {
            guard seen.insert(d).inserted else { continue }
            if lost.contains(d) { out.append(d) } else { stack.append(contentsOf: assets[d]?.dependsOn ?? []) }
        }
        return out.sorted()
    }

    /// The reference for the parallel schedule: the first implementation, which rescanned
    /// everything pending in every round (quadratic, and obviously right).
    static func rescanSimulation(_ rows: [PlanRow], limit: Int) -> [String: (start: Double?, readyAt: Double?)] {
        let index = Dictionary(rows.enumerated().map { ($0.element.asset, $0.offset) }, uniquingKeysWith: { a, _ in a })
        var start: [Int: Double?] = [:], readyAt: [Int: Double] = [:]
        var finished: [Int: Double?] = [:]
        var running: [(end: Double, row: Int)] = []
        var pending = Set(rows.indices.filter { rows[$0].recoverable && !rows[$0].blocked })
        var clock = 0.0
        func ready(_ i: Int) -> Bool { rows[i].waitsFor.compactMap { index[$0] }.allSatisfy { finished[$0] != nil } }
        while !pending.isEmpty || !running.isEmpty {
            let candidates = pending.filter(ready).sorted { (rows[$0].tier.priority, rows[$0].asset) < (rows[$1].tier.priority, rows[$1].asset) }
            var started = false
            for i in candidates where running.count < limit {
                pending.remove(i)
                let depsDone = rows[i].waitsFor.compactMap { index[$0] }.map { finished[$0] ?? nil }
                if depsDone.contains(where: { $0 == nil }) || rows[i].restoreTime == nil {
                    finished[i] = .some(nil)
                    start[i] = depsDone.contains(where: { $0 == nil }) ? nil : clock
                    started = true
                    continue
                }
                start[i] = clock
                running.append((clock + (rows[i].restoreTime ?? 0), i))
                started = true
            }
            if started { continue }
            guard let next = running.min(by: { $0.end < $1.end }) else { break }
            clock = next.end
            for r in running where r.end <= clock { finished[r.row] = .some(r.end); readyAt[r.row] = r.end }
            running.removeAll { $0.end <= clock }
        }
        var out: [String: (start: Double?, readyAt: Double?)] = [:]
        for i in rows.indices { out[rows[i].asset] = (start[i] ?? nil, readyAt[i]) }
        return out
    }

    @Test("a 20,000-asset chain lost with its site plans in waves 1 to 20,000, its critical path the whole chain")
    func longChain() throws {
        let n = 20_000
        var text = Self.twoSites + "\nstorage: [{ id: dr-disk, kind: disk, site: dr, restore_rate: 100MB/s }]\nassets:\n"
        text += "  - { id: a0, kind: server, site: hq, size: 1GB }\n"
        for i in 1..<n { text += "  - { id: a\(i), kind: server, site: hq, size: 1GB, depends_on: [a\(i - 1)] }\n" }
        text += "jobs: [{ id: j, assets: [\((0..<n).map { "a\($0)" }.joined(separator: ", "))], schedule: \"@daily\", targets: [dr-disk] }]\n"
        let planner = Planner(try inventory(text))
        for parallel in [nil, 4] as [Int?] {
            let p = planner.plan(.site("hq"), parallel: parallel)
            #expect(p.rows.count == n && p.rows.last?.wave == n && p.rows.last?.asset == "a\(n - 1)")
            #expect(p.summary.criticalPath.count == n && p.summary.criticalPath.first == "a0")
            #expect(p.summary.allBackAt == Double(n) * 10)   // 1 GB at 100 MB/s, one after another
        }
    }

    /// Property: no asset is ever ready before its dependencies, and an asset with a versioned
    /// copy on immutable or air-gapped storage is never lost to ransomware.
    @Test("property: dependency order and ransomware survival hold on 200 random inventories")
    func properties() throws {
        var rng = SplitMix(seed: 2026)
        for round in 0..<200 {
            let n = 3 + Int(rng.next() % 12)
            var text = Self.twoSites + "\nstorage:\n"
            let kinds = ["nas", "tape", "cloud-object", "san"]
            for s in 0..<4 {
                text += "  - { id: s\(s), kind: \(kinds[s]), site: \(rng.next() % 2 == 0 ? "hq" : "dr"), immutable: \(rng.next() % 3 == 0), air_gapped: \(rng.next() % 4 == 0) }\n"
            }
            text += "assets:\n"
            for i in 0..<n {
                let deps = i == 0 ? [] : (0..<Int(rng.next() % 3)).map { _ in "a\(Int(rng.next() % UInt64(i)))" }
                let size = rng.next() % 5 == 0 ? "" : ", size: \(1 + rng.next() % 500)GB"
                text += "  - { id: a\(i), kind: server, site: \(rng.next() % 2 == 0 ? "hq" : "dr"), tier: \(["critical", "high", "medium", "low"][Int(rng.next() % 4)]), rto: \(1 + rng.next() % 8)h\(size), depends_on: [\(Set(deps).sorted().joined(separator: ", "))] }\n"
            }
            text += "jobs:\n"
            let types = ["full", "incremental", "mirror", "replica", "snapshot"]
            for i in 0..<n where rng.next() % 6 != 0 {
                let type = types[Int(rng.next() % 5)]
                text += "  - { id: j\(i), assets: [a\(i)], type: \(type), schedule: \(type == "replica" ? "continuous" : "\"@daily\""), targets: [s\(rng.next() % 4)] }\n"
            }
            let inv = try inventory(text)
            let planner = Planner(inv)
            for scenario in [Scenario.ransomware, .site("hq"), .site("dr"), .region("north")] {
                for parallel in [nil, 1, 2] as [Int?] {
                    let p = planner.plan(scenario, parallel: parallel)
                    let lost = Set(p.rows.map(\.asset))
                    for r in p.rows {
                        #expect(r.waitsFor == Self.lostDependencies(r.asset, lost: lost, in: inv), "round \(round) \(scenario): \(r.asset) waits for")
                    }
                    if let limit = parallel {
                        let expected = Self.rescanSimulation(p.rows, limit: limit)
                        for r in p.rows where r.recoverable && !r.blocked {
                            #expect(r.start == expected[r.asset]?.start && r.readyAt == expected[r.asset]?.readyAt,
                                    "round \(round) \(scenario) parallel \(limit): \(r.asset) at \(String(describing: r.start)), reference \(String(describing: expected[r.asset]))")
                        }
                    }
                    let ready = Dictionary(p.rows.map { ($0.asset, $0.readyAt) }, uniquingKeysWith: { a, _ in a })
                    for r in p.rows {
                        guard let start = r.start else { continue }
                        for d in r.waitsFor {
                            if let dr = ready[d] ?? nil { #expect(start >= dr, "round \(round) \(scenario): \(r.asset) starts before \(d) is ready") }
                            else { Issue.record("round \(round) \(scenario): \(r.asset) started although \(d) is never ready") }
                        }
                    }
                }
            }
            let ransom = planner.plan(.ransomware)
            for a in inv.assets {
                let safe = inv.jobs.contains { j in
                    j.assets.contains(a.id) && j.type.isVersioned && j.targets.contains { t in inv.storage.first { $0.id == t }.map { $0.immutable || $0.airGapped } ?? false }
                }
                if safe { #expect(ransom.rows.first { $0.asset == a.id }?.recoverable == true, "round \(round): \(a.id) lost to ransomware despite an immutable copy") }
            }
        }
    }
}

@Suite("Planning outputs")
struct PlanOutputTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

    @Test("the embedded runbook template matches reports/templates/")
    func templateEmbedded() throws {
        #expect(Templates.files.map(\.name) == ["reports/templates/plan.html.mustache"])
        for (name, text) in Templates.files {
            let onDisk = try String(contentsOfFile: Self.root + "/" + name, encoding: .utf8)
            #expect(text.trimmingCharacters(in: .newlines) == onDisk.trimmingCharacters(in: .newlines), "\(name): run scripts/embed-resources.py")
        }
    }

    @Test("the runbook names each asset's real restore command, its check and its duration")
    func runbook() throws {
        let inv = try InventoryLoader.load(paths: [Self.root + "/samples/betpro.yaml"])
        let plans = [Planner(inv).plan(.site("fra-dc1"))]
        let md = PlanFormat.markdown(plans, inventory: inv, inventoryArgs: "-i samples/betpro.yaml ", asOf: Timestamp(seconds: 0))
        // dns comes back from the restic repository on S3 that servers-daily writes.
        // The password's source is spelled out, and the tags pick this asset's snapshots.
        #expect(md.contains("restic -r s3:s3.eu-west-1.amazonaws.com/betpro-backup --password-file /etc/drplan/restic.key restore latest --tag servers-daily,dns --target /restore/dns --verify"))
        #expect(md.contains("- Keys: the passphrase is read from the file /etc/drplan/restic.key; the storage's credentials: access_key from $AWS_ACCESS_KEY_ID"))
        #expect(md.contains("restic -r s3:s3.eu-west-1.amazonaws.com/betpro-backup check --read-data-subset 10%"))
        // trades-db: S3 cannot restore 500 GB within its 1h RTO (6250s), the vault tape can (3333s).
        // Each command names the copy that survives.
        #expect(md.contains("drplan restore weekly-vault -i samples/betpro.yaml --from tape-vault --target /restore/trades-db"))
        // Verification runs the declared restore tests, on the surviving copy.
        #expect(md.contains("- Verify: `drplan restore-test wallets-failover -i samples/betpro.yaml --from "))
        #expect(md.contains("- Verify: `drplan restore-test auth-restore -i samples/betpro.yaml --from s3-eu`"))
        #expect(md.contains("### Wave 1") && md.contains("### Wave 3"))
        let html = try PlanHTML.render(plans, inventory: inv, inventoryArgs: "", asOf: Timestamp(seconds: 0))
        #expect(html.contains("<svg class=\"gantt\"") && html.contains("Wave 3"))
        #expect(html.range(of: #"(src|href)\s*=\s*["']?(https?:)?//"#, options: .regularExpression) == nil)
    }
}
