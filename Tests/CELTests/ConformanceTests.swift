import CEL
import Foundation
import Testing

/// Runs the official CEL conformance data (../shared/cel-conformance, converted to JSON) with
/// its variable bindings. `.ci/run` points DRPLAN_CEL_CONFORMANCE at the folder.
@Suite("CEL conformance")
struct ConformanceTests {
    static let folder: String? = {
        if let env = ProcessInfo.processInfo.environment["DRPLAN_CEL_CONFORMANCE"], !env.isEmpty { return env }
        let beside = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("shared/cel-conformance").path
        return FileManager.default.fileExists(atPath: beside) ? beside : nil
    }()

    /// Why a test is outside drplan's CEL subset, or nil when it is in scope.
    static func outOfScope(_ t: [String: Any]) -> String? {
        guard let expect = t["expect"] as? [String: Any] else { return "malformed" }
        if expect["unsupported"] != nil { return "unsupported upstream" }
        if t["container"] is String { return "proto container" }
        let expr = t["expr"] as? String ?? ""
        if expr.contains("TestAllTypes") || expr.range(of: #"google\.protobuf\.[A-Za-z]+\s*\{"#, options: .regularExpression) != nil {
            return "proto message"
        }
        if expr.contains("optional.") || expr.contains(".?") || expr.contains("?.") || expr.contains("[?") { return "optional" }
        if expr.contains("google.protobuf.") && !expr.contains("google.protobuf.Timestamp") && !expr.contains("google.protobuf.Duration") { return "proto wrapper" }
        return nil
    }

    /// Decodes the tagged JSON value form of the converted data.
    static func decode(_ any: Any) -> Value? {
        guard let d = any as? [String: Any], let (tag, v) = d.first else { return nil }
        switch tag {
        case "int": return (v as? String).flatMap { Int64($0) }.map(Value.int)
        case "uint": return (v as? String).flatMap { UInt64($0) }.map(Value.uint)
        case "double":
            if let s = v as? String { return .double(s == "NaN" ? .nan : (s == "Infinity" ? .infinity : -.infinity)) }
            return (v as? NSNumber).map { .double($0.doubleValue) }
        case "string": return (v as? String).map(Value.string)
        case "bytes": return (v as? String).flatMap { Data(base64Encoded: $0) }.map { .bytes([UInt8]($0)) }
        case "bool": return (v as? Bool).map(Value.bool)
        case "null": return .null
        case "list":
            guard let items = v as? [Any] else { return nil }
            let decoded = items.compactMap(decode)
            return decoded.count == items.count ? .list(decoded) : nil
        case "map":
            guard let pairs = v as? [[Any]] else { return nil }
            var m = OrderedMap()
            for p in pairs {
                guard p.count == 2, let k = decode(p[0]), let val = decode(p[1]) else { return nil }
                m[k] = val
            }
            return .map(m)
        case "type": return (v as? String).map(Value.type)
        case "timestamp":
            guard let s = v as? String, case .success(let t) = CELTime.parseTimestamp(s) else { return nil }
            return .timestamp(t)
        case "duration": return (v as? String).flatMap { try? CELTime.parseDuration($0) }.map(Value.duration)
        default: return nil
        }
    }

    /// Equality for expectations: like CEL's, but NaN matches NaN and numeric kinds must agree.
    static func same(_ a: Value, _ b: Value) -> Bool {
        switch (a, b) {
        case let (.double(x), .double(y)): return (x.isNaN && y.isNaN) || x == y
        case let (.list(x), .list(y)): return x.count == y.count && zip(x, y).allSatisfy { same($0, $1) }
        case let (.map(x), .map(y)): return x.count == y.count && x.entries.allSatisfy { e in y[e.key].map { same(e.value, $0) } ?? false }
        case (.int, _), (.uint, _), (.double, _): return a == b
        default: return Builtins.equals(a, b)
        }
    }

    struct Outcome { var passed = 0, considered = 0, outOfScope = 0, failures: [String] = [] }

    static func run(file: String) throws -> Outcome {
        let data = try Data(contentsOf: URL(fileURLWithPath: file))
        let tests = try #require(try JSONSerialization.jsonObject(with: data) as? [[String: Any]])
        var o = Outcome()
        for t in tests {
            if outOfScope(t) != nil { o.outOfScope += 1; continue }
            o.considered += 1
            let name = "\(t["section"] ?? "")/\(t["name"] ?? "")"
            let expr = t["expr"] as? String ?? ""
            var bindings: [String: Value] = [:]
            for (k, v) in t["bindings"] as? [String: Any] ?? [:] { if let d = decode(v) { bindings[k] = d } }
            let expect = t["expect"] as? [String: Any] ?? [:]
            let result: Result<Value, Error>
            do {
                let program = try Program(expr, macros: !(t["disable_macros"] as? Bool ?? false))
                result = .success(try program.evaluate(bindings))
            } catch {
                result = .failure(error)
            }
            switch (result, expect["value"].flatMap(decode)) {
            case (.success(let got), let want?):
                if same(got, want) { o.passed += 1 } else { o.failures.append("\(name): \(expr) → \(got), want \(want)") }
            case (.failure, nil) where expect["error"] != nil:
                o.passed += 1
            case (.failure(let e), _):
                o.failures.append("\(name): \(expr) → error \(e)")
            case (.success(let got), nil):
                o.failures.append("\(name): \(expr) → \(got), want an error")
            }
        }
        return o
    }

    @Test("the conformance data passes at 95% or more of the in-scope tests")
    func conformance() throws {
        guard let folder = Self.folder else {
            print("CEL conformance: skipped, no data folder (set DRPLAN_CEL_CONFORMANCE to ../shared/cel-conformance)")
            if ProcessInfo.processInfo.environment["DRPLAN_REQUIRE_INTEGRATION"] == "1" {
                Issue.record("DRPLAN_REQUIRE_INTEGRATION=1 but the CEL conformance data is missing")
            }
            return
        }
        let files = try FileManager.default.contentsOfDirectory(atPath: folder).filter { $0.hasSuffix(".json") }.sorted()
        #expect(!files.isEmpty)
        var total = Outcome()
        var lines: [String] = []
        for f in files {
            let o = try Self.run(file: folder + "/" + f)
            let name = (f as NSString).deletingPathExtension.padding(toLength: 16, withPad: " ", startingAt: 0)
            lines.append("  \(name) \(o.passed)/\(o.considered) passed (\(o.outOfScope) out of scope)")
            total.passed += o.passed; total.considered += o.considered; total.outOfScope += o.outOfScope
            total.failures += o.failures.map { "\(f): \($0)" }
        }
        let rate = Double(total.passed) / Double(max(1, total.considered))
        print("CEL conformance by file:\n" + lines.joined(separator: "\n"))
        print(String(format: "CEL conformance total: %d/%d passed (%.1f%%), %d out of scope", total.passed, total.considered, rate * 100, total.outOfScope))
        if let dump = ProcessInfo.processInfo.environment["DRPLAN_CEL_FAILURES"] {
            try total.failures.joined(separator: "\n").write(toFile: dump, atomically: true, encoding: .utf8)
        }
        #expect(rate >= 0.95, "conformance \(total.passed)/\(total.considered) is below 95%")
    }
}
