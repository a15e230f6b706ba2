import DRInventory
import DRPolicy
import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif

/// JUnit XML for CI dashboards: a testsuite per rule, a testcase per (rule, subject) judged.
/// Active findings at or above `--fail-on` fail; waived, existing and not-applicable ones skip.
public enum JUnitFormat: ReportFormat {
    public static let name = "junit"
    public static let fileName = "report.junit.xml"

    public static func render(_ r: CheckResult, context: ReportContext) -> String {
        let root = XMLElement(name: "testsuites")
        var totals = (tests: 0, failures: 0, skipped: 0, errors: 0)
        for rule in r.policies.rules where rule.enabled {
            let suite = XMLElement(name: "testsuite")
            var cases: [(name: String, element: XMLElement)] = []
            func testcase(_ name: String) -> XMLElement {
                let tc = XMLElement(name: "testcase")
                tc.addAttribute(attr("name", "\(rule.subject.rawValue) \(name)"))
                tc.addAttribute(attr("classname", "drplan.\(rule.id)"))
                tc.addAttribute(attr("time", "0"))
                return tc
            }
            var failures = 0, skipped = 0, errors = 0
            for f in r.findings where f.rule == rule.id {
                let name = f.related.map { "\(f.subject)/\($0)" } ?? f.subject
                let tc = testcase(name)
                let place = f.location.map { " (\($0))" } ?? ""
                if f.status == .active && f.kind == .error {
                    let error = XMLElement(name: "error", stringValue: Escape.xml("\(f.message)\(place)"))
                    error.addAttribute(attr("message", f.message))
                    error.addAttribute(attr("type", "evaluation"))
                    tc.addChild(error)
                    errors += 1
                } else if f.status == .active && r.failOn.fails(f.severity) {
                    let failure = XMLElement(name: "failure", stringValue: Escape.xml("\(f.message)\(place)\nControls: \(f.controls.joined(separator: ", "))"))
                    failure.addAttribute(attr("message", f.message))
                    failure.addAttribute(attr("type", f.severity.rawValue))
                    tc.addChild(failure)
                    failures += 1
                } else if f.status == .active {
                    tc.addChild(XMLElement(name: "system-out", stringValue: Escape.xml("\(f.severity.rawValue), below --fail-on \(r.failOn): \(f.message)\(place)")))
                } else {
                    let why = f.status == .waived ? "waived until \(f.waiver.map { "\($0.expires)" } ?? "?") by \(f.waiver?.approvedBy ?? "?"): \(f.waiver?.reason ?? "")" : "existing in the baseline: \(f.message)"
                    let skip = XMLElement(name: "skipped")
                    skip.addAttribute(attr("message", why))
                    tc.addChild(skip)
                    skipped += 1
                }
                cases.append((name, tc))
            }
            for name in r.passedJudgements[rule.id] ?? [] { cases.append((name, testcase(name))) }
            for n in r.notApplicable where n.rule == rule.id {
                let tc = testcase(n.subject)
                let skip = XMLElement(name: "skipped")
                skip.addAttribute(attr("message", "not applicable: \(n.reason)"))
                tc.addChild(skip)
                cases.append((n.subject, tc))
                skipped += 1
            }
            cases.sort { $0.name < $1.name }
            suite.addAttribute(attr("name", "\(rule.id) \(rule.name)"))
            suite.addAttribute(attr("tests", String(cases.count)))
            suite.addAttribute(attr("failures", String(failures)))
            suite.addAttribute(attr("errors", String(errors)))
            suite.addAttribute(attr("skipped", String(skipped)))
            suite.addAttribute(attr("timestamp", String(r.facts.asOf.description.dropLast())))
            for c in cases { suite.addChild(c.element) }
            root.addChild(suite)
            totals.tests += cases.count; totals.failures += failures; totals.skipped += skipped; totals.errors += errors
        }
        root.addAttribute(attr("name", "drplan check"))
        root.addAttribute(attr("tests", String(totals.tests)))
        root.addAttribute(attr("failures", String(totals.failures)))
        root.addAttribute(attr("errors", String(totals.errors)))
        root.addAttribute(attr("skipped", String(totals.skipped)))
        let doc = XMLDocument(rootElement: root)
        doc.version = "1.0"
        doc.characterEncoding = "UTF-8"
        return String(decoding: doc.xmlData(options: [.nodePrettyPrint]), as: UTF8.self) + "\n"
    }

    static func attr(_ name: String, _ value: String) -> XMLNode {
        let node = XMLNode(kind: .attribute)
        node.name = name
        node.stringValue = Escape.xml(value)
        return node
    }
}
