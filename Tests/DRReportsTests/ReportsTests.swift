import CEL
import DRFacts
import DRInventory
import DRPolicy
import Foundation
import Testing
import TestSupport
@testable import DRReports

@Suite("Reports")
struct ReportsTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    static let samples = ["small-office", "betpro", "clinic", "clean"]
    /// Injected clock and version: golden files stay byte-for-byte stable.
    static let context = ReportContext(toolVersion: "0.1.0", generatedAt: Timestamp(seconds: Int64(Civil.days(year: 2026, month: 11, day: 22)) * 86_400 + 3600))

    static func result(_ sample: String) throws -> CheckResult {
        try Check.run(inventory: InventoryLoader.load(paths: ["samples/\(sample).yaml"].map { root + "/" + $0 }.map { $0 }),
                      policies: PolicyLoader.load(), now: RuleExamples.defaultNow, options: CheckOptions())
    }

    /// Results loaded with the path as a user types it from the repository root, as the goldens show.
    static func relativeResult(_ sample: String) throws -> CheckResult {
        let cwd = FileManager.default.currentDirectoryPath
        let path = cwd == root ? "samples/\(sample).yaml" : root + "/samples/\(sample).yaml"
        return try Check.run(inventory: InventoryLoader.load(paths: [path]), policies: PolicyLoader.load(), now: RuleExamples.defaultNow, options: CheckOptions())
    }

    @Test("every format carries the same findings, counts and verdict", arguments: samples)
    func sameFindingsEverywhere(sample: String) throws {
        let r = try Self.result(sample)
        let key: (Finding) -> String = { "\($0.rule)|\($0.subject)|\($0.related ?? "")|\($0.status.rawValue)" }
        let expected = r.findings.map(key).sorted()

        let json = try #require(try JSONSerialization.jsonObject(with: Data(JSONFormat.render(r, context: Self.context).utf8)) as? [String: Any])
        let jf = (json["findings"] as? [[String: Any]] ?? []).map { f in
            "\(f["rule"] as? String ?? "")|\((f["subject"] as? [String: Any])?["id"] as? String ?? "")|\(f["related"] as? String ?? "")|\(f["status"] as? String ?? "")"
        }
        #expect(jf.sorted() == expected)
        #expect((json["summary"] as? [String: Any])?["passed"] as? Bool == r.passed)

        let sarif = try #require(try JSONSerialization.jsonObject(with: Data(SARIFFormat.render(r, context: Self.context).utf8)) as? [String: Any])
        let results = ((sarif["runs"] as? [[String: Any]])?.first?["results"] as? [[String: Any]]) ?? []
        let sf = results.map { res -> String in
            let p = res["properties"] as? [String: Any] ?? [:]
            return "\(res["ruleId"] as? String ?? "")|\(p["subject"] as? String ?? "")|\(p["related"] as? String ?? "")|\(p["status"] as? String ?? "")"
        }
        #expect(sf.sorted() == expected)
        #expect(results.filter { $0["suppressions"] != nil }.count == r.waived)

        let md = MarkdownFormat.render(r, context: Self.context)
        #expect(md.contains(r.passed ? "✅ PASS" : "❌ FAIL"))
        #expect(md.contains("**\(r.active.count) active finding"))
        let rows = md.split(separator: "\n").filter { $0.range(of: #"^\| (critical|high|medium|low|info) \|"#, options: .regularExpression) != nil }
        #expect(rows.count == r.findings.count)

        let html = try HTMLFormat.render(r, context: Self.context)
        #expect(html.components(separatedBy: "<tr class=\"finding ").count - 1 == r.findings.count)
        #expect(html.contains("id=\"verdict\">\(r.passed ? "PASS" : "FAIL")"))
        for s in Severity.allCases { #expect(html.contains("<b>\(r.count(s))</b><span class=\"sev sev-\(s.rawValue)\">")) }

        let junit = JUnitFormat.render(r, context: Self.context)
        let failing = r.active.filter { r.failOn.fails($0.severity) }.count
        #expect(junit.contains("failures=\"\(failing)\""))

        let text = TextFormat.render(r, context: Self.context)
        #expect(text.contains(r.passed ? "— PASS" : "— FAIL"))
    }

    @Test("SARIF validates against the SARIF 2.1.0 schema", arguments: samples)
    func sarifSchema(sample: String) throws {
        let schema = ProcessInfo.processInfo.environment["DRPLAN_SARIF_SCHEMA"] ?? Self.root + "/../shared/schemas/sarif-schema-2.1.0.json"
        guard FileManager.default.fileExists(atPath: schema) else {
            _ = Tools.skip("SARIF schema validation", because: "no schema at \(schema)") { Issue.record(Comment(rawValue: $0)) }
            return
        }
        guard Tools.hasPython(module: "jsonschema") else {
            _ = Tools.skip("SARIF schema validation", because: "python3 jsonschema is not installed (pip install jsonschema)") { Issue.record(Comment(rawValue: $0)) }
            return
        }
        let dir = try TempDir(); defer { dir.cleanup() }
        let file = try dir.write("report.sarif", SARIFFormat.render(try Self.result(sample), context: Self.context))
        let problem = try Tools.schemaProblem(document: file, schema: schema)
        #expect(problem == nil, "\(problem ?? "")")
    }

    @Test("JUnit XML parses with junitparser, with one suite per rule and the right failures and skips", arguments: samples)
    func junitParses(sample: String) throws {
        guard Tools.hasPython(module: "junitparser") else {
            _ = Tools.skip("JUnit consumer test", because: "python3 junitparser is not installed (pip install junitparser)") { Issue.record(Comment(rawValue: $0)) }
            return
        }
        let r = try Self.result(sample)
        let dir = try TempDir(); defer { dir.cleanup() }
        let file = try dir.write("report.xml", JUnitFormat.render(r, context: Self.context))
        let out = try Tools.run("python3", ["-c", """
            import sys
            from junitparser import JUnitXml, Failure, Skipped
            xml = JUnitXml.fromfile(sys.argv[1])
            suites = list(xml)
            cases = [c for s in suites for c in s]
            failures = sum(1 for c in cases if any(isinstance(r, Failure) for r in c.result))
            skipped = sum(1 for c in cases if any(isinstance(r, Skipped) for r in c.result))
            print(len(suites), len(cases), failures, skipped)
            """, file])
        #expect(out.status == 0, "\(out.stderr)")
        let numbers = out.stdout.split(separator: " ").compactMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        let failing = r.active.filter { r.failOn.fails($0.severity) }.count
        let skipped = r.findings.filter { $0.status != .active }.count + r.notApplicable.count
        let judged = r.findings.count + r.passedJudgements.values.map(\.count).reduce(0, +) + r.notApplicable.count
        #expect(numbers == [r.policies.rules.count, judged, failing, skipped])
    }

    /// Golden files under reports/examples/: every format, byte for byte. After an intended
    /// change, regenerate them with DRPLAN_UPDATE_GOLDEN=1 swift test --filter golden, and review the diff.
    @Test("golden report files", arguments: ["clinic", "clean"])
    func golden(sample: String) throws {
        let cwd = FileManager.default.currentDirectoryPath
        guard cwd == Self.root else {
            print("golden report files: skipped, run from the repository root (paths in the reports are relative to it)")
            return
        }
        let r = try Self.relativeResult(sample)
        let dir = Self.root + "/reports/examples/\(sample)"
        for format in [TextFormat.self] + ReportFormats.all {
            let rendered = try format.render(r, context: Self.context)
            let path = dir + "/" + format.fileName
            if ProcessInfo.processInfo.environment["DRPLAN_UPDATE_GOLDEN"] == "1" {
                try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
                try rendered.write(toFile: path, atomically: true, encoding: .utf8)
            }
            let golden = try String(contentsOfFile: path, encoding: .utf8)
            #expect(rendered == golden, "\(path) differs; regenerate with DRPLAN_UPDATE_GOLDEN=1 and review the diff")
            // What `check` and `facts` write: the same bytes, streamed.
            var streamed: [UInt8] = []
            try format.write(r, context: Self.context, to: { streamed += $0 })
            #expect(String(decoding: streamed, as: UTF8.self) == golden, "\(format.name): the streamed report differs from the rendered one")
        }
    }

    @Test("streamed JSON in pieces of any size is the same text as the whole string")
    func streamedJSON() throws {
        let r = try Self.relativeResult("clinic")
        let value = JSONFormat.value(r, context: Self.context)
        let whole = JSONWriter().string(value)
        for piece in [1, 64, 4096, 1 << 20] {
            var pieces = 0
            var bytes: [UInt8] = []
            try JSONWriter().stream(value, piece: piece, to: { bytes += $0; pieces += 1 })
            #expect(String(decoding: bytes, as: UTF8.self) == whole)
            #expect(piece > whole.utf8.count || pieces > 1, "pieces of \(piece) bytes came as one")
            // The report's own streaming, whose findings are made one at a time, agrees too.
            var members: [UInt8] = []
            try JSONWriter().stream(members: JSONFormat.members(r, context: Self.context), piece: piece, to: { members += $0 })
            #expect(members == Array(whole.utf8))
        }
    }

    @Test("the embedded templates match reports/templates/")
    func templatesEmbedded() throws {
        for (name, text) in Templates.files {
            let onDisk = try String(contentsOfFile: Self.root + "/" + name, encoding: .utf8)
            #expect(text.trimmingCharacters(in: .newlines) == onDisk.trimmingCharacters(in: .newlines), "\(name): run scripts/embed-resources.py")
        }
        #expect(Templates.files.map(\.name) == ["reports/templates/report.html.mustache"])
    }

    @Test("the HTML is self-contained: no external URL is loaded")
    func selfContained() throws {
        let html = try HTMLFormat.render(try Self.result("betpro"), context: Self.context)
        #expect(html.range(of: #"(src|href)\s*=\s*["']?(https?:)?//"#, options: .regularExpression) == nil)
        #expect(html.range(of: #"url\(\s*["']?(https?:)?//"#, options: .regularExpression) == nil)
        #expect(html.contains("Content-Security-Policy\" content=\"default-src 'none'"))
        #expect(!html.contains("Summer2019!"))
    }
}
