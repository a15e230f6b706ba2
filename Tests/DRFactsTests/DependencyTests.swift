import CEL
import DRInventory
import Testing
import TestSupport
@testable import DRFacts

@Suite("Dependency facts")
struct DependencyTests {
    func load(_ assets: String) throws -> Inventory {
        try InventoryLoader.load(texts: [("deps.yaml", "drplan: 1\nsites: [{ id: hq, kind: office }]\nassets:\n" + assets)])
    }

    /// The reference: the transitive closure, walked per asset (quadratic, fine for small inputs).
    func naive(_ inv: Inventory) -> [String: (depth: Int, slowest: DependencySummary.Slowest?)] {
        let byID = Dictionary(inv.assets.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        func depth(_ id: String) -> Int { (byID[id]?.dependsOn ?? []).map { 1 + depth($0) }.max() ?? 0 }
        var out: [String: (Int, DependencySummary.Slowest?)] = [:]
        for a in inv.assets {
            var best: DependencySummary.Slowest?
            for via in a.dependsOn {
                var stack = [via], seen = Set<String>()
                while let d = stack.popLast() {
                    guard seen.insert(d).inserted, let dep = byID[d] else { continue }
                    let c = DependencySummary.Slowest(id: d, rto: dep.rto, via: via)
                    if best.map({ DependencySummary.slower(c, than: $0) }) ?? true { best = c }
                    stack.append(contentsOf: dep.dependsOn)
                }
            }
            out[a.id] = (depth(a.id), best)
        }
        return out
    }

    @Test("depth and slowest dependency: unknown rto is slowest, then the largest, then the smaller id")
    func basics() throws {
        let inv = try load("""
              - { id: app, kind: application, site: hq, rto: 1h, depends_on: [db, cache] }
              - { id: db, kind: database, site: hq, rto: 2h, depends_on: [dns] }
              - { id: cache, kind: server, site: hq, rto: 2h }
              - { id: dns, kind: server, site: hq, rto: 30m, depends_on: [ntp] }
              - { id: ntp, kind: server, site: hq }
              - { id: lone, kind: server, site: hq }
            """)
        let s = DependencySummary.summaries(inv.assets)
        #expect(s["app"]?.depth == 3 && s["db"]?.depth == 2 && s["ntp"]?.depth == 0 && s["lone"]?.slowest == nil)
        #expect(s["app"]?.slowest == .init(id: "ntp", rto: nil, via: "db"))
        #expect(s["dns"]?.slowest == .init(id: "ntp", rto: nil, via: "ntp"))
        let noNTP = try load("""
              - { id: app, kind: application, site: hq, rto: 1h, depends_on: [db, cache] }
              - { id: db, kind: database, site: hq, rto: 2h }
              - { id: cache, kind: server, site: hq, rto: 2h }
            """)
        // A tie on rto goes to the smaller id.
        #expect(DependencySummary.summaries(noNTP.assets)["app"]?.slowest == .init(id: "cache", rto: TimeSpan(seconds: 7200), via: "cache"))
    }

    @Test("property: the one-pass summaries equal the transitive closure on 300 random DAGs")
    func matchesClosure() throws {
        var rng = SplitMix(seed: 405)
        for round in 0..<300 {
            let n = 1 + Int(rng.next() % 14)
            var text = ""
            for i in 0..<n {
                let deps = i == 0 ? [] : Set((0..<Int(rng.next() % 4)).map { _ in "a\(Int(rng.next() % UInt64(i)))" }).sorted()
                let rto = rng.next() % 4 == 0 ? "" : ", rto: \(1 + rng.next() % 5)h"
                text += "  - { id: a\(i), kind: server, site: hq\(rto), depends_on: [\(deps.joined(separator: ", "))] }\n"
            }
            let inv = try load(text)
            let fast = DependencySummary.summaries(inv.assets), slow = naive(inv)
            for a in inv.assets {
                #expect(fast[a.id]?.depth == slow[a.id]?.depth, "round \(round) \(a.id): depth")
                #expect(fast[a.id]?.slowest == slow[a.id]?.slowest, "round \(round) \(a.id): slowest")
            }
        }
    }

    /// The issue's reproduction was a 5,000-asset chain (7.4 s and 759 MB for `facts`); the cost
    /// is measured in bench/checker.py, this only pins that a long chain is handled in one pass
    /// without recursion and gives the right answer.
    @Test("a 20,000-asset chain: depth 19,999 at the top, the unknown rto at the bottom found through one edge")
    func longChain() throws {
        let n = 20_000
        var text = "  - { id: a0, kind: server, site: hq }\n"
        for i in 1..<n { text += "  - { id: a\(i), kind: server, site: hq, rto: 1h, depends_on: [a\(i - 1)] }\n" }
        let inv = try load(text)
        let s = DependencySummary.summaries(inv.assets)
        #expect(s["a\(n - 1)"]?.depth == n - 1)
        #expect(s["a\(n - 1)"]?.slowest == .init(id: "a0", rto: nil, via: "a\(n - 2)"))
        let facts = FactDeriver.derive(inv, now: Timestamp(seconds: 0))
        #expect(facts.assets.last?["dependency_depth"] == .int(Int64(n - 1)))
    }
}
