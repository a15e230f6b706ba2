import CEL
import DRPolicy
import Foundation
import Testing
import TestSupport
@testable import DRReports

/// The HTML report in real headless Chromium: it renders, logs nothing, fetches nothing, and
/// its filters change what is shown.
@Suite("HTML report in Chromium")
struct BrowserTests {
    static func chromium(_ args: [String]) throws -> Tools.Output {
        guard let browser = Tools.chromium() else { throw CocoaError(.featureUnsupported) }
        return try Tools.run("timeout", ["120", browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                                         "--no-first-run", "--disable-extensions", "--disable-background-networking",
                                         "--enable-logging=stderr", "--v=0"] + args)
    }

    /// Chromium logs every console message and every blocked fetch as `…:CONSOLE…`; the report logs nothing.
    static func consoleLines(_ stderr: String) -> [String] {
        stderr.split(separator: "\n").map(String.init).filter { $0.contains(":CONSOLE") }
    }

    /// Finding rows of a dumped DOM: (severity, status, hidden).
    static func rows(_ dom: String) -> [(severity: String, status: String, hidden: Bool)] {
        let pattern = #"<tr class="finding[^"]*" data-severity="([a-z]+)" data-rule="[^"]*" data-frameworks="[^"]*" data-status="([a-z]+)"( hidden(="")?)?>"#
        guard let re = try? NSRegularExpression(pattern: pattern) else { return [] }
        return re.matches(in: dom, range: NSRange(dom.startIndex..., in: dom)).compactMap { m in
            guard let s = Range(m.range(at: 1), in: dom), let st = Range(m.range(at: 2), in: dom) else { return nil }
            return (String(dom[s]), String(dom[st]), m.range(at: 3).location != NSNotFound)
        }
    }

    @Test("each sample's report renders, logs no error, fetches nothing, and filters work", arguments: ReportsTests.samples)
    func browser(sample: String) throws {
        guard Tools.chromium() != nil else {
            _ = Tools.skip("Chromium test", because: "no chromium on PATH (apt-get install chromium)") { Issue.record(Comment(rawValue: $0)) }
            return
        }
        let r = try ReportsTests.result(sample)
        let dir = try TempDir(); defer { dir.cleanup() }
        let file = try dir.write("report.html", try HTMLFormat.render(r, context: ReportsTests.context))
        let url = URL(fileURLWithPath: file).absoluteString

        // A screenshot, as a person would see the page.
        let shot = dir.path + "/shot.png"
        let s = try Self.chromium(["--window-size=1400,2400", "--screenshot=\(shot)", url])
        #expect(s.status == 0, "\(s.stderr.suffix(500))")
        let png = try Data(contentsOf: URL(fileURLWithPath: shot))
        #expect(png.starts(with: [0x89, 0x50, 0x4E, 0x47]) && png.count > 20_000)
        #expect(Self.consoleLines(s.stderr).isEmpty, "console: \(Self.consoleLines(s.stderr))")

        // Unfiltered: every finding visible, nothing logged (no script error, no blocked request).
        let all = try Self.chromium(["--dump-dom", url])
        #expect(all.status == 0)
        #expect(Self.consoleLines(all.stderr).isEmpty, "console: \(Self.consoleLines(all.stderr))")
        let rows = Self.rows(all.stdout)
        #expect(rows.count == r.findings.count)
        #expect(rows.allSatisfy { !$0.hidden })
        #expect(all.stdout.contains("\(r.findings.count) of \(r.findings.count) findings shown"))
        guard !r.findings.isEmpty else {
            #expect(all.stdout.contains("No findings"))
            return
        }

        // A scripted change of the severity filter, through the page's own deep link.
        let severity = r.findings[0].severity.rawValue
        let filtered = try Self.chromium(["--dump-dom", url + "#severity=\(severity)"])
        #expect(Self.consoleLines(filtered.stderr).isEmpty)
        let shown = Self.rows(filtered.stdout).filter { !$0.hidden }
        #expect(shown.count == r.findings.filter { $0.severity.rawValue == severity }.count)
        #expect(shown.allSatisfy { $0.severity == severity })
        #expect(shown.count < rows.count || r.findings.allSatisfy { $0.severity.rawValue == severity })

        if r.waived > 0 {
            let waived = try Self.chromium(["--dump-dom", url + "#status=waived"])
            #expect(Self.rows(waived.stdout).filter { !$0.hidden }.map(\.status) == Array(repeating: "waived", count: r.waived))
        }
    }
}
