import ArgumentParser
import CEL
import DRFacts
import DRPolicy
import Foundation

struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Evaluate an expression against the facts and print the result as JSON.",
        discussion: """
            Example:
              drplan eval -i samples/betpro.yaml 'inventory.assets.map(a, a.copy_count)'
              drplan eval -- '-1 < 0'

            The expression sees inventory, policy and now. Without -i and without ./drplan.yaml it sees only now. --typed prints CEL's tagged form ({"int": "7"}).
            """)

    @OptionGroup var global: GlobalOptions

    @Flag(name: .long, help: "Print the tagged form the CEL conformance data uses.")
    var typed = false

    @Argument(help: "The expression (CEL).")
    var expression: String

    func run() throws {
        global.apply()
        var bindings: [String: Value] = ["now": .timestamp(global.instant())]
        var limits = EvalLimits.default
        if !global.inventory.isEmpty || FileManager.default.fileExists(atPath: "drplan.yaml") {
            let inventory = try global.loadInventory()
            limits = inventory.policy.evalLimits
            let facts = FactDeriver.derive(inventory, now: global.instant())
            bindings["inventory"] = facts.inventoryValue
            bindings["policy"] = facts.policy
        }
        let program: Program
        do {
            program = try Program(expression)
        } catch {
            Console.diagnostic("<expression>:1:\(error.offset + 1)", "syntax error: \(error.message)")
            throw CommandFailure(status: .badInput)
        }
        var checker = TypeChecker(FactModel.declarations(subject: nil, extra: bindings["inventory"] == nil ? ["inventory": .dyn, "policy": .dyn] : [:]))
        _ = checker.check(program.root)
        if let e = checker.errors.first(where: { !$0.message.hasPrefix("undeclared reference to 'inventory'") }) {
            Console.diagnostic("<expression>:1:\(e.offset + 1)", e.message)
            throw CommandFailure(status: .badInput)
        }
        do {
            let v = try program.evaluate(bindings, functions: DrplanFunctions.all, limits: limits)
            Console.out(typed ? JSONWriter(pretty: false).string(Tagged.value(v)) : JSONWriter(durations: .celString).string(v))
        } catch {
            Console.diagnostic("<expression>:1:\(error.offset + 1)", error.message)
            throw CommandFailure(status: .badInput)
        }
    }
}

/// CEL's tagged JSON form, as in the conformance data: `{"int": "7"}`, `{"list": [...]}`.
enum Tagged {
    static func value(_ v: Value) -> Value {
        switch v {
        case .null: return .object([("null", .null)])
        case .bool(let b): return .object([("bool", .bool(b))])
        case .int(let i): return .object([("int", .string(String(i)))])
        case .uint(let u): return .object([("uint", .string(String(u)))])
        case .double(let d): return .object([("double", d.isFinite ? .double(d) : .string(d.isNaN ? "NaN" : (d > 0 ? "Infinity" : "-Infinity")))])
        case .string(let s): return .object([("string", .string(s))])
        case .bytes: return .object([("bytes", v)])
        case .list(let l): return .object([("list", .list(l.map(value)))])
        case .map(let m): return .object([("map", .list(m.entries.map { .list([value($0.key), value($0.value)]) }))])
        case .type(let t): return .object([("type", .string(t))])
        case .timestamp(let t): return .object([("timestamp", .string(JSONWriter.rfc3339(t)))])
        case .duration(let d): return .object([("duration", .string(JSONWriter.celDuration(d)))])
        }
    }
}
