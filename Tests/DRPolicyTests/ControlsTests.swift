import CEL
import DRInventory
import Foundation
import Testing
@testable import DRPolicy

/// The control lists (policies/controls/), the framework scopes (policies/frameworks.yaml),
/// and the control matrix's statuses built from them.
@Suite("Controls, scoping and the control matrix")
struct ControlsTests {
    @Test("the built-in control lists load, and every citation of the catalog is a listed control with its listed title")
    func citations() throws {
        #expect(ControlCatalog.builtinProblems.isEmpty, "\(ControlCatalog.builtinProblems)")
        let catalog = try PolicyLoader.load()
        #expect(catalog.catalog.citationProblems(catalog.rules).isEmpty, "\(catalog.catalog.citationProblems(catalog.rules))")
        for r in catalog.rules { for c in r.controls { #expect(r.controlTitles[c] != nil, "\(r.id) cites \(c) without its title") } }
        #expect(catalog.catalog.titles["pci-dss"] == "PCI DSS v4.0.1")
        #expect(!catalog.rules.contains { $0.controls.contains("pci-dss:9.4.1.1") }, "9.4.1.1 is about where offline media are kept, not immutability")
    }

    @Test("a made-up control id, an unknown framework and a wrong title are each named")
    func madeUp() throws {
        let text = """
            drplan-policy: 1
            rules:
              - id: X001
                name: x
                severity: low
                subject: asset
                assert: "true"
                message: "x"
                controls: ["nist-800-53:CP-99 Imaginary Control", "nist-800-53:CP-9 System Bakup", "iso9001:7.5 Documented information"]
            """
        let set = try PolicyLoader.load(texts: [("x.yaml", text)])
        let problems = set.catalog.citationProblems(set.rules)
        #expect(problems.contains("X001 cites nist-800-53:CP-99, which is not a control listed in policies/controls/nist-800-53.yaml"))
        #expect(problems.contains("X001 writes nist-800-53:CP-9 as 'System Bakup'; policies/controls/nist-800-53.yaml calls it 'System Backup'"))
        #expect(problems.contains("X001 cites iso9001:7.5: no framework 'iso9001' in policies/controls/"))
    }

    static let inventory = """
        drplan: 1
        policy: { frameworks: [gdpr, hipaa, iso27001, pci-dss] }
        sites: [{ id: hq, kind: office, region: a }, { id: dr, kind: cloud-region, region: b }]
        storage: [{ id: nas, kind: nas, site: hq }, { id: s3, kind: cloud-object, site: dr }]
        assets:
          - { id: crm, kind: database, site: hq, data_classes: [pii], tier: high, rpo: 1d, rto: 4h }
          - { id: dns, kind: server, site: hq, tier: low }
        jobs:
          - { id: crm-nightly, assets: [crm], schedule: "0 2 * * *", targets: [nas, s3], encryption: { at_rest: true, in_transit: true } }
        """

    static func check(_ inventory: String = Self.inventory, policies: [(String, String)] = []) throws -> CheckResult {
        let inv = try InventoryLoader.load(texts: [("inv.yaml", inventory)])
        let set = try PolicyLoader.load(texts: policies, builtin: true)
        return try Check.run(inventory: inv, policies: set, now: RuleExamples.defaultNow, options: CheckOptions())
    }

    @Test("an asset without personal data counts for no GDPR control, yet its findings show under the frameworks that apply")
    func scoping() throws {
        let r = try Self.check()
        let dns = r.findings.filter { $0.subject == "dns" }
        #expect(!dns.isEmpty, "dns has no backup: DR001 fires")
        for f in dns {
            #expect(!f.controls.contains { $0.hasPrefix("gdpr:") }, "\(f.rule) on dns cites GDPR")
            #expect(f.controls.contains { $0.hasPrefix("iso27001:") } || f.controls.isEmpty)
        }
        let crm = r.findings.filter { $0.subject == "crm" && $0.rule == "DR501" }
        #expect(crm.first?.controls.contains("gdpr:Art.32(1)(d)") == true)
        // GDPR's matrix is judged from crm alone.
        let gdpr = r.controls.filter { $0.control.hasPrefix("gdpr:") }
        #expect(gdpr.allSatisfy { !$0.subjects.contains("dns") }, "\(gdpr.map { ($0.control, $0.subjects) })")
        // Nothing holds card data: PCI DSS is not assessed, control by control, except what is manual.
        let pci = r.controls.filter { $0.control.hasPrefix("pci-dss:") }
        #expect(!pci.isEmpty && pci.allSatisfy { $0.status == .notAssessed || $0.status == .manual }, "\(pci.map { ($0.control, $0.status) })")
        // With --framework gdpr, dns's findings are not GDPR's.
        var options = CheckOptions()
        options.frameworks = ["gdpr"]
        let only = try Check.run(inventory: r.inventory, policies: r.policies, now: RuleExamples.defaultNow, options: options)
        #expect(!only.findings.contains { $0.subject == "dns" } && only.findings.contains { $0.subject == "crm" })
    }

    @Test("statuses: fail when a rule fails in scope, not assessed when a rule had no in-scope subject, manual with the question, pass otherwise")
    func statuses() throws {
        let r = try Self.check()
        let byId = Dictionary(r.controls.map { ($0.control, $0) }, uniquingKeysWith: { a, _ in a })
        // No restore test: DR501 fails for crm.
        #expect(byId["gdpr:Art.32(1)(d)"]?.status == .fail)
        // Encrypted at rest and in transit: DR201/DR202 pass; DR203 (key storage) has no
        // in-scope subject with a declared key, so Art.32(1)(a) is not assessed.
        let a = try #require(byId["gdpr:Art.32(1)(a)"])
        #expect(a.status == .notAssessed && a.subjects == ["crm-nightly"], "\(a)")
        let isoManual = try #require(byId["iso27001:A.6.3"])
        #expect(isoManual.status == .manual && isoManual.ask?.contains("recovery roles") == true && isoManual.rules.isEmpty, "\(isoManual)")
        // No PHI anywhere: HIPAA's observed controls are not assessed.
        #expect(r.controls.filter { $0.control.hasPrefix("hipaa:") && $0.status != .manual }.allSatisfy { $0.status == .notAssessed })
        // A control passes only when each of its rules judged an in-scope subject.
        for c in r.controls where c.status == .pass { #expect(!c.subjects.isEmpty, "\(c.control) passes with no subject") }
    }

    @Test("a policy file extends a framework's scope with more data classes")
    func extendScope() throws {
        let extra = ("scope.yaml", "drplan-policy: 1\nframeworks:\n  gdpr: { data_classes: [telemetry] }\n")
        let inv = Self.inventory.replacingOccurrences(of: "{ id: dns, kind: server, site: hq, tier: low }", with: "{ id: dns, kind: server, site: hq, tier: low, data_classes: [telemetry] }")
        let r = try Self.check(inv, policies: [extra])
        #expect(r.findings.contains { $0.subject == "dns" && $0.controls.contains { $0.hasPrefix("gdpr:") } })
    }
}
