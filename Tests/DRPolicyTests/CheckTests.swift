import CEL
import DRFacts
import DRInventory
import DRPlanning
import Foundation
import Testing
import TestSupport
import DRReports
@testable import DRPolicy

@Suite("Check")
struct CheckTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    static let now = RuleExamples.defaultNow

    func check(_ paths: [String], policies: [String] = [], now: Timestamp = CheckTests.now, options: CheckOptions = CheckOptions()) throws -> CheckResult {
        try Check.run(inventory: InventoryLoader.load(paths: paths), policies: PolicyLoader.load(directories: policies), now: now, options: options)
    }

    func ids(_ findings: [Finding]) -> Set<String> {
        Set(findings.map { "\($0.rule) \($0.subject)" + ($0.related.map { "/" + $0 } ?? "") })
    }

    /// The header of each sample states its findings; the engine must raise exactly those.
    @Test("each sample raises exactly the findings its header states", arguments: ["small-office", "betpro", "clinic", "clean"])
    func sampleHeaders(name: String) throws {
        let path = Self.root + "/samples/\(name).yaml"
        let text = try String(contentsOfFile: path, encoding: .utf8)
        var expected = Set<String>(), waived = Set<String>()
        var now: Timestamp?
        for line in text.split(separator: "\n") where line.hasPrefix("#") {
            let words = line.dropFirst().split(separator: " ").map(String.init)
            if let i = words.firstIndex(of: "--now"), i + 1 < words.count { now = try Timestamp.parse(words[i + 1]) }
            if words.count >= 2, words[0].range(of: #"^DR\d{3}$"#, options: .regularExpression) != nil { expected.insert("\(words[0]) \(words[1])") }
            if words.count >= 3, words[0] == "Waived:" { waived.insert("\(words[1]) \(words[2])") }
        }
        let at = try #require(now, "the header of \(name) names no --now")
        // As `drplan check` runs it: with the planner's scenarios, for DR407.
        var options = CheckOptions()
        options.lostIn = Scenario.lostIn(Scenario.defaultPlans(try InventoryLoader.load(paths: [path]), now: at, measured: MeasuredEvidence()))
        let r = try check([path], now: at, options: options)
        #expect(ids(r.active) == expected)
        #expect(ids(r.findings.filter { $0.status == .waived }) == waived)
        #expect(r.passed == expected.isEmpty)
    }

    @Test("a waiver applies until its expiry instant and lapses after it, raising DR900")
    func waiverBoundary() throws {
        let dir = try TempDir(); defer { dir.cleanup() }
        let f = try dir.write("inv.yaml", """
            drplan: 1
            sites: [{ id: hq, kind: datacenter }]
            storage: [{ id: nas, kind: nas, site: hq }]
            assets: [{ id: db, kind: database, site: hq }]
            jobs: [{ id: j, assets: [db], schedule: "@daily", targets: [nas], monitoring: { alert_on_failure: ["file:alerts.log"] } }]
            waivers: [{ rule: DR702, subject: nas, reason: pending, approved_by: ciso, expires: 2027-03-31T00:00:00Z }]
            """)
        let at = try Timestamp.parse("2027-03-31T00:00:00Z")
        let on = try check([f], now: at)
        #expect(on.findings.first { $0.rule == "DR702" }?.status == .waived)
        #expect(!on.findings.contains { $0.rule == "DR900" })
        let after = try check([f], now: at.adding(seconds: 1))
        #expect(after.findings.first { $0.rule == "DR702" }?.status == .active)
        #expect(ids(after.findings.filter { $0.rule == "DR900" }) == ["DR900 nas/DR702"])
        let before = try check([f], now: at.adding(seconds: -86_400))
        #expect(before.findings.first { $0.rule == "DR702" }?.waiver?.approvedBy == "ciso")
    }

    @Test("a baseline round trip: findings already reported are existing and do not fail")
    func baseline() throws {
        let path = Self.root + "/samples/small-office.yaml"
        let first = try check([path])
        #expect(!first.passed)
        let json = Data(JSONFormat.render(first, context: ReportContext(toolVersion: "0.1.0", generatedAt: Self.now)).utf8)
        var options = CheckOptions()
        options.baseline = try Check.baselineFingerprints(json)
        let second = try check([path], options: options)
        #expect(second.passed)
        #expect(second.existing == first.active.count)
        #expect(second.active.isEmpty)
        // Fingerprints depend only on (rule, subject kind, subject, related).
        #expect(Set(first.findings.map(\.fingerprint)) == Set(second.findings.map(\.fingerprint)))
        #expect(first.findings.first?.fingerprint.count == 64)
        #expect(throws: InputError.self) { try Check.baselineFingerprints(Data("{\"x\":1}".utf8)) }
    }

    @Test("a custom policy directory with 'each', interpolated messages and overrides")
    func customPolicies() throws {
        let dir = try TempDir(); defer { dir.cleanup() }
        try dir.write("policies/acme.yaml", """
            drplan-policy: 1
            rules:
              - id: ACME001
                name: phi-second-region
                title: PHI has a copy in a second region
                severity: high
                subject: asset
                when: "'phi' in asset.data_classes"
                assert: "asset.copies.exists(c, c.region != asset.region)"
                message: "{{asset.id}} holds PHI but every copy is in {{asset.region}}"
                controls: ["hipaa:164.308(a)(7)(ii)(A)"]
              - id: ACME002
                name: no-usb-targets
                severity: medium
                subject: job
                each: "job.targets"
                as: t
                assert: "inventory.by_id[t].media != 'removable'"
                message: "{{job.id}} writes to removable {{t}}"
                controls: ["iso27001:A.8.13"]
            overrides:
              - { rule: DR702, enabled: false }
              - { rule: DR101, severity: critical }
            """)
        let inv = try dir.write("phi.yaml", """
            drplan: 1
            sites: [{ id: a, kind: office, region: r1 }, { id: b, kind: office, region: r1 }, { id: c, kind: colo, region: r2 }]
            storage: [{ id: nas, kind: nas, site: b }, { id: far, kind: nas, site: c }]
            assets: [{ id: x, kind: server, site: a, data_classes: [phi] }, { id: y, kind: server, site: a, data_classes: [phi] }, { id: z, kind: server, site: a }]
            jobs: [{ id: j, assets: [x, z], schedule: "@daily", targets: [nas] }, { id: k, assets: [y], schedule: "@daily", targets: [far] }]
            """)
        let r = try check([inv], policies: [dir.path + "/policies"])
        #expect(ids(r.active.filter { $0.rule == "ACME001" }) == ["ACME001 x"])
        #expect(r.active.first { $0.rule == "ACME001" }?.message == "x holds PHI but every copy is in r1")
        #expect(r.notApplicable.contains { $0.rule == "ACME001" && $0.subject == "z" })
        // The clinic keeps PHI in a second region (cloud archive, colo): no finding there.
        #expect(try check([Self.root + "/samples/clinic.yaml"], policies: [dir.path + "/policies"]).active.filter { $0.rule == "ACME001" }.isEmpty)
        let small = try check([Self.root + "/samples/small-office.yaml"], policies: [dir.path + "/policies"])
        #expect(ids(small.active.filter { $0.rule == "ACME002" }) == ["ACME002 share-to-usb/usb-drive"])
        #expect(small.active.first { $0.rule == "ACME002" }?.message == "share-to-usb writes to removable usb-drive")
        #expect(!small.findings.contains { $0.rule == "DR702" })
        let clinic = try check([Self.root + "/samples/clinic.yaml"], policies: [dir.path + "/policies"])
        #expect(clinic.findings.first { $0.rule == "DR101" }?.severity == .critical)
    }

    /// Each bad policy is rejected at load time, with file, line and column.
    @Test("bad policies get located errors", arguments: [
        ("assert: \"asset.copy_count >= \"", "policies/bad.yaml:9:34: error: syntax error in 'assert' of rule BAD001: unexpected end of input"),
        ("assert: \"asset.copy_cnt >= 3\"", "policies/bad.yaml:9:19: error: in 'assert' of rule BAD001: asset has no field 'copy_cnt' (did you mean 'copy_count'?)"),
        ("assert: \"sizee(asset.jobs) > 0\"", "policies/bad.yaml:9:14: error: in 'assert' of rule BAD001: unknown function 'sizee' (did you mean 'size'?)"),
        ("assert: \"asset.copy_count > 'three'\"", "policies/bad.yaml:9:31: error: in 'assert' of rule BAD001: no matching overload for '_>_' applied to (int, string)"),
        ("assert: \"asset.rpo < 5\"", "policies/bad.yaml:9:24: error: in 'assert' of rule BAD001: no matching overload for '_<_' applied to (duration, int)"),
        ("assert: \"asset.copy_count\"", "policies/bad.yaml:9:13: error: 'assert' of rule BAD001 must be a bool expression, not int"),
        ("asert: \"true\"", "policies/bad.yaml:9:5: error: unknown key 'asert' in rule BAD001 (did you mean 'assert'?)"),
        // A field drplan no longer derives names its replacements.
        ("assert: \"size(asset.dependencies) < 5\"", "policies/bad.yaml:9:24: error: in 'assert' of rule BAD001: asset has no field 'dependencies': "
            + "the transitive list was removed (it grows with the square of a chain's length); use asset.depends_on for direct dependencies, "
            + "asset.dependency_depth, or asset.slowest_dependency (docs/facts.md)"),
    ] as [(String, String)])
    func badPolicies(line: String, expected: String) throws {
        let dir = try TempDir(); defer { dir.cleanup() }
        try dir.write("policies/bad.yaml", """
            drplan-policy: 1
            rules:
              - id: BAD001
                name: bad
                severity: low
                subject: asset
                controls: ["iso27001:A.8.13"]
                when: "asset.protected"
                \(line)
            """)
        do {
            _ = try PolicyLoader.load(builtin: false, directories: [dir.path + "/policies"])
            Issue.record("the bad policy was accepted")
        } catch {
            let lines = error.diagnostics.map { $0.description.replacingOccurrences(of: dir.path + "/", with: "") }
            #expect(lines.contains(expected), "got \(lines)")
        }
    }

    @Test("an evaluation error is reported with the rule, the subject and the policy's place, never a silent pass")
    func evaluationError() throws {
        let dir = try TempDir(); defer { dir.cleanup() }
        try dir.write("p/div.yaml", """
            drplan-policy: 1
            rules:
              - { id: DIV001, name: divide, severity: low, subject: asset, assert: "asset.copy_count / (asset.copy_count - asset.copy_count) > 0" }
            """)
        let inventory = try InventoryLoader.load(paths: [Self.root + "/samples/clean.yaml"])
        let policies = try PolicyLoader.load(directories: [dir.path + "/p"])
        do throws(RuleEvaluationError) {
            _ = try Check.run(inventory: inventory, policies: policies, now: Self.now, options: CheckOptions())
            Issue.record("a division by zero passed silently")
        } catch {
            #expect(error.rule == "DIV001" && error.subject == "erp-db")
            #expect(error.message.contains("division by zero"))
            #expect(error.location.file.hasSuffix("p/div.yaml") && error.location.line == 3)
        }
    }

    @Test("--framework limits findings and the control matrix; policy.frameworks only chooses matrices")
    func frameworks() throws {
        var options = CheckOptions()
        options.frameworks = ["gdpr"]
        let r = try check([Self.root + "/samples/small-office.yaml"], options: options)
        #expect(r.findings.allSatisfy { f in f.controls.contains { $0.hasPrefix("gdpr:") } })
        #expect(!r.findings.contains { $0.rule == "DR703" })   // no GDPR control
        #expect(r.controls.allSatisfy { $0.control.hasPrefix("gdpr:") })
        let all = try check([Self.root + "/samples/small-office.yaml"])
        #expect(all.findings.contains { $0.rule == "DR703" })
        #expect(Set(all.controls.map { String($0.control.split(separator: ":")[0]) }) == ["gdpr", "iso27001"])
        #expect(all.controls.first { $0.control == "gdpr:Art.32(1)(a)" }?.status == .fail)
        let clean = try check([Self.root + "/samples/clean.yaml"])
        #expect(clean.controls.allSatisfy { $0.status == .pass || $0.status == .notAssessed || $0.status == .manual })
        #expect(clean.controls.contains { $0.status == .manual && $0.ask != nil })
    }

    @Test("fail-on thresholds")
    func failOn() throws {
        var options = CheckOptions()
        options.failOn = FailThreshold("critical")
        let clinic = try check([Self.root + "/samples/clinic.yaml"], options: options)
        #expect(clinic.passed)
        options.failOn = FailThreshold("none")
        #expect(try check([Self.root + "/samples/betpro.yaml"], options: options).passed)
        options.failOn = FailThreshold("medium")
        #expect(!(try check([Self.root + "/samples/clinic.yaml"], options: options).passed))
        #expect(FailThreshold("urgent") == nil)
    }

    @Test("secret values never appear in any report format")
    func noSecrets() throws {
        for sample in ["small-office", "betpro"] {
            let r = try check([Self.root + "/samples/\(sample).yaml"])
            let context = ReportContext(toolVersion: "0.1.0", generatedAt: Self.now)
            var rendered: [String] = []
            for format in [TextFormat.self] + ReportFormats.all { rendered.append(try format.render(r, context: context)) }
            for secret in ["wJalrXUtnFEMI", "Summer2019!"] {
                for output in rendered { #expect(!output.contains(secret)) }
            }
        }
    }

    @Test("not applicable is tracked with a reason")
    func notApplicable() throws {
        let r = try check([Self.root + "/samples/betpro.yaml"])
        #expect(r.notApplicable.contains { $0.rule == "DR403" && $0.subject == "hr-files" && $0.reason == "no rto" })
        #expect(r.notApplicable.contains { $0.rule == "DR001" && $0.subject == "dev-sandbox" && $0.reason == "backup: none" })
        #expect(!r.notApplicable.contains { $0.rule == "DR101" && $0.subject == "trades-db" })
    }
}
