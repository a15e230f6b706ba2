import Foundation
import Testing
@testable import CEL

/// Expressions written to crash or hang drplan get clean errors, within a second.
@Suite("CEL: hostile input")
struct HostileInputTests {
    /// The body's result and the CPU seconds this thread spent on it: what the bounds are
    /// about is the work an input causes, which a loaded machine does not change (wall time,
    /// measured first, failed here while fuzzers shared both cores).
    static func timed<T>(_ body: () throws -> T) rethrows -> (T, Double) {
        func cpu() -> Double {
            var t = timespec()
            clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t)
            return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9
        }
        let start = cpu()
        let r = try body()
        return (r, cpu() - start)
    }

    @Test("long operator, member and index chains are parse errors, not stack overflows", arguments: [
        Array(repeating: "1", count: 100_000).joined(separator: "+"),
        Array(repeating: "true", count: 100_000).joined(separator: " && "),
        "a" + String(repeating: ".x", count: 30_000),
        "a" + String(repeating: "[0]", count: 30_000),
        String(repeating: "!", count: 30_000) + "true",
        String(repeating: "(", count: 30_000) + "1" + String(repeating: ")", count: 30_000),
    ])
    func chains(_ source: String) throws {
        let (result, seconds) = Self.timed { () -> Result<Program, CELError> in
            do throws(CELError) { return .success(try Program(source)) } catch { return .failure(error) }
        }
        guard case .failure(let e) = result else { Issue.record("parsed a \(source.count)-character chain"); return }
        #expect(e.message.contains("nested too deeply") || e.message.contains("bytes long"), "\(e.message)")
        #expect(seconds < 1, "took \(seconds) s")
    }

    @Test("chains up to the limit still parse and evaluate")
    func withinLimits() throws {
        let p = try Program(Array(repeating: "1", count: 200).joined(separator: " + "))
        #expect(try p.evaluate([:]) == .int(200))
    }

    @Test("an expression over 64 KiB is refused")
    func length() {
        #expect(throws: CELError.self) { try Program("'" + String(repeating: "a", count: 70_000) + "'") }
    }

    @Test("nested map towers and doubling strings run out of budget cleanly", arguments: [
        "[" + (0..<10).map(String.init).joined(separator: ",") + "]" + String(repeating: ".map(x, [0,1,2,3,4,5,6,7,8,9].map(y, x + y))", count: 1) + String(repeating: ".map(x, x)", count: 0),
        "['ab']" + String(repeating: ".map(x, x + x)", count: 40),
        (0..<8).reduce("[0,1,2,3,4,5,6,7,8,9].exists(x0, true)") { acc, k in "[0,1,2,3,4,5,6,7,8,9].all(v\(k), \(acc))" },
    ])
    func budget(_ source: String) throws {
        let p = try Program(source)
        let (outcome, seconds) = Self.timed { () -> Result<Value, EvalError> in
            do throws(EvalError) { return .success(try p.evaluate([:])) } catch { return .failure(error) }
        }
        #expect(seconds < 1, "took \(seconds) s")
        if case .failure(let e) = outcome {
            #expect(e.exhausted && e.message.contains("budget"), "\(e.message)")
        } else if source.contains("x + x") || source.contains("all(v7") {
            Issue.record("\(source.prefix(60))… finished within the budget")
        }
    }

    @Test("a budget error is never absorbed by || or exists")
    func notAbsorbed() throws {
        let p = try Program("['ab']" + String(repeating: ".map(x, x + x)", count: 40) + ".size() > 0 || true")
        #expect(throws: EvalError.self) { try p.evaluate([:]) }
        let q = try Program("[1, 2].exists(i, ['ab']" + String(repeating: ".map(x, x + x)", count: 40) + ".size() > 0)")
        #expect(throws: EvalError.self) { try q.evaluate([:]) }
    }

    @Test("limits can be raised")
    func raisedLimits() throws {
        let p = try Program("[0,1,2,3,4,5,6,7,8,9].map(a, [0,1,2,3,4,5,6,7,8,9].map(b, [0,1,2,3,4,5,6,7,8,9].map(c, a + b + c))).size()")
        #expect(throws: EvalError.self) { try p.evaluate([:], limits: EvalLimits(steps: 1000)) }
        #expect(try p.evaluate([:], limits: EvalLimits(steps: 100_000)) == .int(10))
    }
}

/// `matches` is RE2: linear time, RE2's syntax, RE2's refusals.
@Suite("CEL: RE2 regular expressions")
struct RegexTests {
    @Test("what RE2 matches", arguments: [
        ("abc", "b", true), ("abc", "^b", false), ("abc", "^abc$", true), ("abc\n", "abc$", false), ("abc\n", "(?m)abc$", true),
        ("hello world", "o w", true), ("Hello", "(?i)hello", true), ("Hello", "hello", false), ("aXb", "a(?i:x)b", true), ("aXB", "a(?i:x)b", false),
        ("2026-12-01", "^\\d{4}-\\d{2}-\\d{2}$", true), ("2026-1-01", "^\\d{4}-\\d{2}-\\d{2}$", false),
        ("foo_bar9", "^\\w+$", true), ("foo bar", "^\\S+$", false), ("a.b", "a\\.b", true), ("axb", "a\\.b", false),
        ("x", "[^abc]", true), ("b", "^[^abc]$", false), ("-", "[a\\-z]", true), ("Q", "[[:upper:]]", true), ("q", "^[[:upper:]]$", false),
        ("ab", "a|b|c", true), ("", "a*", true), ("aaa", "^a{2,3}$", true), ("aaaa", "^a{2,3}$", false), ("aaaa", "^a{2,}$", true),
        ("word", "\\bword\\b", true), ("swordfish", "\\bword\\b", false), ("a\nb", "a.b", false), ("a\nb", "(?s)a.b", true),
        ("abcabc", "(abc)+$", true), ("ab", "(?P<x>a)b", true), ("é", "^.$", true), ("prod-db-01", "^(prod|stage)-[a-z]+-\\d+$", true),
        ("a{", "a{", true), ("a{1", "a{1", true), ("ÉCOLE", "(?i)école", true), ("x", "", true),
    ])
    func cases(_ input: String, _ pattern: String, _ expected: Bool) throws {
        #expect(try RE2Regex(pattern).matches(input) == expected, "\(input) =~ \(pattern)")
    }

    @Test("what RE2 refuses is refused, with a reason", arguments: [
        ("(a)\\1", "backreferences"), ("a(?=b)", "lookahead"), ("(?<=a)b", "lookahead"), ("(?!a)", "lookahead"), ("a**", "bad repetition"),
        ("a{1001}", "1000"), ("(a", "missing ')'"), ("a)", "unmatched"), ("[a", "missing ']'"), ("*a", "missing argument"), ("\\", "trailing backslash"),
        ("\\pL", "not supported"), ("[z-a]", "range"), ("((((((((((a{1000}){1000}", "missing ')'"), ("(a{1000}){1000}", "too large"),
    ])
    func refused(_ pattern: String, _ reason: String) {
        do {
            _ = try RE2Regex(pattern)
            Issue.record("'\(pattern)' compiled")
        } catch {
            #expect(error.message.contains(reason), "\(pattern): \(error.message)")
        }
    }

    @Test("pathological patterns take linear time", arguments: [("(a+)+$", 30), ("(a+)+$", 100_000), ("(a|a)*b", 50_000), ("(a*)*b", 50_000), ("(x+x+)+y", 20_000)])
    func linear(_ pattern: String, _ n: Int) throws {
        let re = try RE2Regex(pattern)
        let input = String(repeating: pattern.contains("x") ? "x" : "a", count: n) + "!"
        let (matched, seconds) = HostileInputTests.timed { re.matches(input) }
        #expect(matched == false)
        #expect(seconds < (n <= 100 ? 0.01 : 1.0), "\(pattern) on \(n) characters took \(seconds) s")
    }

    @Test("a literal pattern RE2 refuses is a check-time error; matches() evaluates through the engine")
    func checkTime() throws {
        var c = TypeChecker(Declarations(variables: ["s": .string]))
        _ = c.check(try CELParser.parse("s.matches('(a)\\\\1')"))
        #expect(c.errors.contains { $0.message.contains("backreferences") }, "\(c.errors)")
        #expect(try Program("'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!'.matches('(a+)+$')").evaluate([:]) == .bool(false))
    }
}
