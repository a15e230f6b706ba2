import CEL
import Crypto
import DRFacts
import DRInventory
import DRPlanning
import DRPolicy
import Foundation
import Testing
import TestSupport
#if canImport(FoundationXML)
import FoundationXML
#endif
@testable import DRReports

/// An inventory written to break the reports: control characters XML forbids, HTML and
/// Markdown link syntax in every free-text field. Every format stays well-formed and inert.
@Suite("Reports: hostile input")
struct HostileReportTests {
    static let evil = #"Evil \x01\x0b\x1b[31m <script>alert(1)</script> [x](javascript:alert(1)) ![i](http://e.example/x.png) <img src=x onerror=alert(1)> `code` | cell"#
    static let inventory = """
        drplan: 1
        organization: "\(evil)"
        sites: [{ id: hq, kind: office, name: "\(evil)" }]
        storage: [{ id: nas, kind: nas, site: hq, name: "\(evil)" }]
        assets: [{ id: db, kind: database, site: hq, tier: critical, name: "\(evil)", owner: "\(evil)", labels: { note: "\(evil)" } }]
        jobs: [{ id: j, assets: [db], schedule: "@daily", targets: [nas] }]
        waivers: [{ rule: DR103, subject: db, reason: "\(evil)", approved_by: "\(evil)", expires: 2030-01-01 }]
        """

    static func result() throws -> CheckResult {
        try Check.run(inventory: InventoryLoader.load(texts: [("evil.yaml", inventory)]), policies: PolicyLoader.load(), now: RuleExamples.defaultNow, options: CheckOptions())
    }

    @Test("JUnit XML parses with a strict XML parser, and keeps the forbidden characters as visible escapes")
    func junit() throws {
        let xml = JUnitFormat.render(try Self.result(), context: ReportsTests.context)
        #expect(!xml.unicodeScalars.contains { $0.value < 0x20 && $0 != "\n" && $0 != "\t" && $0 != "\r" })
        _ = try XMLDocument(data: Data(xml.utf8), options: [])   // libxml2, strict: throws on any well-formedness error
        #expect(xml.contains(#"\u{1}"#) && xml.contains(#"\u{b}"#))
        if Tools.hasPython(module: "xml.etree.ElementTree") {
            let dir = try TempDir(); defer { dir.cleanup() }
            let file = try dir.write("evil.xml", xml)
            let out = try Tools.run("python3", ["-c", "import sys, xml.etree.ElementTree as E; E.parse(sys.argv[1]); print('ok')", file])
            #expect(out.status == 0 && out.stdout.contains("ok"), "\(out.stderr)")
        }
    }

    @Test("Markdown reports pass no HTML, link or image through", arguments: ["report", "runbook"])
    func markdown(_ which: String) throws {
        let r = try Self.result()
        let md = which == "report" ? MarkdownFormat.render(r, context: ReportsTests.context)
            : PlanFormat.markdown(Scenario.defaults(for: r.inventory).map { Planner(r.inventory).plan($0) }, inventory: r.inventory, inventoryArgs: "-i evil.yaml", asOf: r.facts.asOf)
        for bad in ["<script", "<img", "](javascript:", "![i](", "\u{1B}", "\u{01}"] { #expect(!md.contains(bad), "\(which) contains \(bad)") }
        #expect(md.contains("&lt;script&gt;") && md.contains(#"\[x\]\(javascript:alert\(1\)\)"#))
    }

    @Test("the HTML report's CSP allows its one script by hash, never 'unsafe-inline'")
    func csp() throws {
        let html = try HTMLFormat.render(try Self.result(), context: ReportsTests.context)
        let csp = try #require(html.range(of: #"script-src '[^']+'"#, options: .regularExpression).map { String(html[$0]) })
        #expect(!csp.contains("unsafe-inline") && csp.hasPrefix("script-src 'sha256-"), "\(csp)")
        let open = try #require(html.range(of: "<script>")), close = try #require(html.range(of: "</script>"))
        let digest = Data(SHA256.hash(data: Data(html[open.upperBound..<close.lowerBound].utf8))).base64EncodedString()
        #expect(csp == "script-src 'sha256-\(digest)'")
        #expect(!html.contains("<script>alert(1)"))
    }

    @Test("an error message quoting a hostile value stays on one line")
    func diagnostics() throws {
        let text = "drplan: 1\nsites: [{ id: hq, kind: \"office\\nevil.yaml:1:1: error: forged\" }]\n"
        do {
            _ = try InventoryLoader.load(texts: [("inv.yaml", text)])
            Issue.record("loaded")
        } catch {
            let out = "\(error)"
            #expect(out.split(separator: "\n").allSatisfy { !$0.hasPrefix("evil.yaml:1:1") }, "\(out)")
            #expect(out.contains(#"\nevil.yaml"#), "\(out)")
        }
    }
}
