import CEL
import DRInventory
import Foundation
import Testing
import TestSupport
import DRReports
@testable import DRPolicy

/// A rule too costly to judge for one subject: a finding of kind error for that subject, the
/// others judged as usual, and the check fails.
@Suite("Check: evaluation budget")
struct BudgetFindingTests {
    @Test("one subject over budget is an error finding; the others are judged; the check fails; JUnit shows an <error>")
    func errorFinding() throws {
        let dir = try TempDir(); defer { dir.cleanup() }
        let tower = "['ab']" + String(repeating: ".map(x, x + x)", count: 40)
        _ = try dir.write("policies/costly.yaml", """
            drplan-policy: 1
            rules:
              - id: X001
                name: costly
                title: A rule that is too costly for one asset
                severity: low
                subject: asset
                assert: "asset.id == 'big' ? \(tower).size() > 0 : true"
                message: "{{asset.id}} fails"
                controls: ["iso27001:A.8.13"]
                rationale: a test
            """)
        let inv = try dir.write("inv.yaml", """
            drplan: 1
            sites: [{ id: hq, kind: office }]
            assets: [{ id: big, kind: database, site: hq }, { id: small, kind: database, site: hq }]
            """)
        let r = try Check.run(inventory: InventoryLoader.load(paths: [inv]), policies: PolicyLoader.load(builtin: false, directories: [dir.path + "/policies"]),
                              now: RuleExamples.defaultNow, options: CheckOptions())
        let errors = r.findings.filter { $0.kind == .error }
        #expect(errors.map(\.subject) == ["big"] && errors.first?.message.contains("evaluation budget exceeded") == true, "\(errors.map(\.message))")
        #expect(r.passedJudgements["X001"] == ["small"])
        #expect(!r.passed)   // a low-severity rule, but an unjudged subject never passes
        let junit = JUnitFormat.render(r, context: ReportContext(toolVersion: "t", generatedAt: RuleExamples.defaultNow))
        #expect(junit.contains("<error ") && junit.contains("errors=\"1\""), "\(junit)")
    }
}
