import CEL
import Foundation
import Testing
import TestSupport
@testable import DRInventory

@Suite("Loading and validation")
struct LoaderTests {
    static let invalidDir = Fixtures.root + "/invalid"
    static let invalidFixtures: [String] = ((try? FileManager.default.contentsOfDirectory(atPath: invalidDir)) ?? [])
        .filter { $0.hasSuffix(".yaml") }.sorted()

    func problems(_ paths: [String]) -> [String] {
        do {
            _ = try InventoryLoader.load(paths: paths)
            return []
        } catch {
            return error.diagnostics.map(\.description)
        }
    }

    /// Each `invalid/NAME.yaml` is rejected with exactly the lines in `NAME.errors`.
    @Test("golden error messages", arguments: invalidFixtures)
    func golden(name: String) throws {
        let expected = try String(contentsOfFile: Self.invalidDir + "/" + name.replacingOccurrences(of: ".yaml", with: ".errors"), encoding: .utf8)
            .split(separator: "\n").map(String.init)
        let actual = problems([Self.invalidDir + "/" + name]).map { $0.replacingOccurrences(of: Self.invalidDir + "/", with: "") }
        #expect(!expected.isEmpty)
        #expect(actual == expected)
    }

    @Test("the golden set covers every kind of bad inventory the spec lists")
    func coverage() {
        for needed in ["yaml-syntax", "missing-version", "unsupported-version", "unknown-keys", "wrong-values", "duplicate-ids",
                       "references", "cycle", "backup-none", "include-missing", "include-self"] {
            #expect(Self.invalidFixtures.contains(needed + ".yaml"), "no fixture for \(needed)")
        }
    }

    @Test("every field of the format is read, with includes and defaults")
    func fullFixture() throws {
        let inv = try InventoryLoader.load(paths: [Fixtures.root + "/valid/full.yaml"])
        #expect(inv.files.count == 2)
        #expect(inv.organization == "Full Coverage GmbH")
        #expect(inv.policy.frameworks.count == 7)
        #expect(inv.policy.failOn == .medium)
        #expect(inv.policy.capacityThreshold == 0.9)
        #expect(inv.policy.restoreRate(for: .tape) == 300_000_000)
        #expect(inv.policy.restoreRate(for: .disk) == 200_000_000)
        #expect(inv.sites.map(\.id) == ["hq", "lone"])
        #expect(inv.sites[0].labels.first?.1 == "42")
        let lib = try #require(inv.storage.first)
        #expect(lib.capacity == 1_125_899_906_842_624)
        #expect(lib.airGapped && lib.mfaDelete && lib.networkIsolated && !lib.immutable)
        #expect(lib.encryption.passphrase == .env("TAPE_KEY"))
        #expect(lib.credentials.map(\.0) == ["token", "api_key"])
        #expect(lib.credentials[0].1 == .literal)
        let db = try #require(inv.assets.first { $0.id == "db" })
        #expect(db.rpo?.seconds == 5400)
        #expect(db.size == 1_500_000_000_000)
        #expect(db.retention.min == TimeSpan(seconds: 365 * 86_400))
        guard case .postgres(let dsn, let pw)? = db.source else { Issue.record("source not read"); return }
        #expect(dsn.hasPrefix("postgresql://"))
        #expect(pw == .env("PGPASSWORD"))
        let wal = try #require(inv.jobs.first { $0.id == "db-wal" })
        #expect(wal.assets == ["db"])
        #expect(wal.schedule == .continuous && wal.lag.seconds == 60)
        #expect(wal.retention?.keepLast == 10)
        #expect(wal.encryption.keyStorage == "lib")
        #expect(wal.lastSuccess?.description == "2026-11-20T09:00:00Z")
        let dir = try #require(inv.jobs.first { $0.id == "dir-nightly" })
        #expect(dir.type == .snapshot && dir.engine == .builtin)
        #expect(inv.restoreTests.first?.scope == .failover)
        #expect(inv.waivers.first?.expires.description == "2027-01-01T00:00:00Z")
        #expect(inv.plaintextSecrets.map(\.path) == ["storage.lib.credentials.token", "jobs.db-wal.options.password"])
    }

    @Test("defaults are applied")
    func defaults() throws {
        let dir = try TempDir(); defer { dir.cleanup() }
        let f = try dir.write("inv.yaml", """
            drplan: 1
            sites: [{ id: s, kind: office }]
            storage: [{ id: t, kind: tape, site: s }]
            assets: [{ id: a, kind: server, site: s }]
            jobs: [{ id: j, assets: [a], schedule: "@daily", targets: [t] }]
            restore_tests: [{ id: r, job: j }]
            """)
        let inv = try InventoryLoader.load(paths: [f])
        #expect(inv.policy.failOn == .high)
        #expect(inv.policy.restoreTestEvery.seconds == 90 * 86_400)
        #expect(inv.policy.minRecoveryWindow.seconds == 35 * 86_400)
        #expect(inv.policy.capacityThreshold == 0.8)
        #expect(inv.policy.frameworks == Framework.allCases)
        #expect(inv.storage[0].media == .tape && !inv.storage[0].immutable)
        #expect(inv.assets[0].tier == .medium && inv.assets[0].media == .disk && inv.assets[0].backup == .required)
        #expect(inv.jobs[0].type == .full && inv.jobs[0].engine == .builtin && inv.jobs[0].lag == .zero)
        #expect(inv.restoreTests[0].scope == .sample)
        #expect(inv.restoreTests[0].interval(policy: inv.policy).seconds == 90 * 86_400)
    }

    @Test("a directory loads its YAML files in name order; includes merge and diamonds load once")
    func directoriesAndIncludes() throws {
        let dir = try TempDir(); defer { dir.cleanup() }
        try dir.write("inv/b.yaml", "drplan: 1\nsites: [{ id: b, kind: office }]\ninclude: [parts/*.yaml]\n")
        try dir.write("inv/a.yml", "drplan: 1\norganization: Acme\nsites: [{ id: a, kind: office }]\ninclude: parts/common.yaml\n")
        try dir.write("inv/notes.txt", "not yaml")
        try dir.write("inv/parts/common.yaml", "drplan: 1\nsites: [{ id: c, kind: office }]\n")
        try dir.write("inv/parts/d.yaml", "drplan: 1\nsites: [{ id: d, kind: office }]\n")
        let inv = try InventoryLoader.load(paths: [dir.path + "/inv"])
        #expect(inv.sites.map(\.id) == ["a", "c", "b", "d"])
        #expect(inv.organization == "Acme")
    }

    @Test("organization and policy may appear in one file only; ids are unique across files")
    func acrossFiles() throws {
        let dir = try TempDir(); defer { dir.cleanup() }
        let a = try dir.write("a.yaml", "drplan: 1\norganization: A\nsites: [{ id: s, kind: office }]\n")
        let b = try dir.write("b.yaml", "drplan: 1\norganization: B\nstorage: [{ id: s, kind: nas, site: s }]\n")
        let p = problems([a, b])
        #expect(p == [
            "\(b):2:1: error: 'organization' may appear in one inventory file only; it is already set at \(a):2:1",
            "\(b):3:17: error: duplicate id 's': storage reuses the id of the site at \(a):3:15; ids are unique across the whole inventory",
        ])
    }

    @Test("a missing file and an empty directory are reported by path")
    func missingPaths() throws {
        let dir = try TempDir(); defer { dir.cleanup() }
        #expect(problems([dir.path + "/nope.yaml"]) == ["\(dir.path)/nope.yaml: error: inventory file '\(dir.path)/nope.yaml' does not exist; pass an existing file or directory with -i, or create one with 'drplan init'"])
        #expect(problems([dir.path]).first?.contains("holds no *.yaml or *.yml files") == true)
    }

    @Test("YAML merge keys and anchors work as users expect")
    func mergeKeys() throws {
        let dir = try TempDir(); defer { dir.cleanup() }
        let f = try dir.write("inv.yaml", """
            drplan: 1
            x-defaults: &nightly { type: incremental, schedule: "0 1 * * *", targets: [nas] }
            sites: [{ id: s, kind: office }]
            storage: [{ id: nas, kind: nas, site: s }]
            assets: [{ id: a, kind: server, site: s }]
            jobs:
              - { <<: *nightly, id: j1, assets: [a] }
              - { <<: *nightly, id: j2, assets: [a], schedule: "0 3 * * *" }
            """)
        let inv = try InventoryLoader.load(paths: [f])
        #expect(inv.jobs.map(\.scheduleText) == ["0 1 * * *", "0 3 * * *"])
        #expect(inv.jobs.allSatisfy { $0.type == .incremental && $0.targets == ["nas"] })
    }

    @Test("plaintext secrets are found anywhere, with list items named by id or index")
    func secretPaths() throws {
        let dir = try TempDir(); defer { dir.cleanup() }
        let f = try dir.write("inv.yaml", """
            drplan: 1
            sites: [{ id: s, kind: office }]
            storage:
              - { id: s3-eu, kind: cloud-object, site: s, credentials: { access_key: "env:K", secret_key: "AKIAEXAMPLE" } }
            x-legacy:
              - { host: a, password: "hunter2" }
              - { host: b, PASSWORD: 1234, token: "file:/etc/t" }
            """)
        let inv = try InventoryLoader.load(paths: [f])
        #expect(inv.plaintextSecrets.map(\.path) == ["storage.s3-eu.credentials.secret_key", "x-legacy.0.password", "x-legacy.1.PASSWORD"])
        #expect(inv.plaintextSecrets[0].location.line == 4)
    }

    // MARK: hostile input

    @Test("invalid UTF-8 is located at the bad byte")
    func invalidUTF8() throws {
        let dir = try TempDir(); defer { dir.cleanup() }
        let f = try dir.write("inv.yaml", Data("drplan: 1\norganization: Caf".utf8) + Data([0xE9, 0x0A]))
        #expect(problems([f]) == ["\(f):2:18: error: the file is not UTF-8 text (byte 0xE9 cannot start or continue a character); save it as UTF-8"])
    }

    @Test("binary garbage is rejected, never crashes", arguments: 1...20)
    func garbage(seed: UInt64) throws {
        let dir = try TempDir(); defer { dir.cleanup() }
        var rng = SplitMix(seed: seed)
        let bytes = (0..<(Int(seed) * 997)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        let f = try dir.write("garbage.yaml", Data(bytes))
        let p = problems([f])
        #expect(!p.isEmpty)
        #expect(p.allSatisfy { $0.hasPrefix(f + ":") })
    }

    @Test("printable garbage and odd shapes are rejected with located errors", arguments: [
        "drplan: 1\nsites: 5\n", "drplan: 1\nsites: [1, 2]\n", "drplan: 1\nassets: [{ id: [x] }]\n", "\"just a string\"\n",
        "drplan: 1\njobs: [{ id: j, assets: a, targets: {x: 1}, schedule: [1] }]\n", "drplan: 1\n? [a, b]\n: c\n",
        "drplan: 1\nsites: [{ id: s, kind: office, labels: [x] }]\n", "---\ndrplan: 1\n---\ndrplan: 1\n", "drplan: 1\nx: *undefined\n",
        "\t\tdrplan: 1\n", "drplan: 1\npolicy: { retention: { pii: 5y } }\n",
    ])
    func oddShapes(text: String) throws {
        let dir = try TempDir(); defer { dir.cleanup() }
        let f = try dir.write("odd.yaml", text)
        let p = problems([f])
        #expect(!p.isEmpty)
        #expect(p.allSatisfy { $0.hasPrefix(f + ":") && $0.contains(": error: ") })
    }

    @Test("deep nesting is refused by the parser, not by a stack overflow")
    func deepNesting() throws {
        let dir = try TempDir(); defer { dir.cleanup() }
        let f = try dir.write("deep.yaml", "drplan: 1\nx-deep: " + String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000) + "\n")
        let p = problems([f])
        #expect(p.count == 1)
        #expect(p.first?.contains("YAML syntax error") == true)
        let g = try dir.write("deep-block.yaml", "drplan: 1\nx-deep:\n" + (1...600).map { String(repeating: " ", count: $0) + "k:" }.joined(separator: "\n") + " 1\n")
        #expect(!problems([g]).isEmpty || (try? InventoryLoader.load(paths: [g])) != nil)
    }

    @Test("a billion-laughs alias bomb is refused without exhausting memory")
    func aliasBomb() throws {
        let dir = try TempDir(); defer { dir.cleanup() }
        var text = "drplan: 1\nx-a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
        for i in 1...12 {
            text += "x-a\(i): &a\(i) [" + Array(repeating: "*a\(i - 1)", count: 9).joined(separator: ", ") + "]\n"
        }
        let f = try dir.write("bomb.yaml", text)
        let p = problems([f])
        #expect(p.count == 1)
        #expect(p.first?.contains("alias bomb") == true)
    }

    @Test("a 50 MB file is read without a crash, and its size does not trip the alias budget")
    func fiftyMegabytes() throws {
        let dir = try TempDir(); defer { dir.cleanup() }
        var text = "drplan: 1\nsites: [{ id: s, kind: office }]\nx-blob: "
        text += String(repeating: "abcdefghij", count: 5_000_000) + "\n"
        let f = try dir.write("big.yaml", text)
        let inv = try InventoryLoader.load(paths: [f])
        #expect(inv.sites.count == 1)
        #expect(inv.files.first?.bytes.count ?? 0 > 50_000_000)
    }

    @Test("moderate alias use is accepted")
    func aliasesAccepted() throws {
        let dir = try TempDir(); defer { dir.cleanup() }
        let f = try dir.write("inv.yaml", """
            drplan: 1
            x-classes: &classes [pii, financial]
            sites: [{ id: s, kind: office }]
            assets:
              - { id: a, kind: server, site: s, data_classes: *classes }
              - { id: b, kind: server, site: s, data_classes: *classes }
            """)
        let inv = try InventoryLoader.load(paths: [f])
        #expect(inv.assets.map(\.dataClasses) == [["pii", "financial"], ["pii", "financial"]])
    }

    @Test("the starter inventory from drplan init validates")
    func starter() throws {
        let dir = try TempDir(); defer { dir.cleanup() }
        let f = try dir.write("drplan.yaml", StarterInventory.text)
        let inv = try InventoryLoader.load(paths: [f])
        #expect(inv.assets.count == 1 && inv.jobs.count == 1)
    }
}

