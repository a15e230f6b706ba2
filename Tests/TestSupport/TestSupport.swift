import Foundation

// Helpers shared by the test targets.

/// A fresh directory under the system temp dir, removed when the value is dropped by `cleanup()`.
public struct TempDir {
    public let path: String

    public init() throws {
        path = NSTemporaryDirectory() + "drplan-test-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    @discardableResult
    public func write(_ name: String, _ text: String) throws -> String {
        try write(name, Data(text.utf8))
    }

    @discardableResult
    public func write(_ name: String, _ data: Data) throws -> String {
        let full = path + "/" + name
        try FileManager.default.createDirectory(atPath: (full as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try data.write(to: URL(fileURLWithPath: full))
        return full
    }

    /// Creates `name` (and its parents) under the directory: a storage `path` must exist.
    @discardableResult
    public func makeDirectory(_ name: String) throws -> String {
        let full = path + "/" + name
        try FileManager.default.createDirectory(atPath: full, withIntermediateDirectories: true)
        return full
    }

    public func cleanup() { try? FileManager.default.removeItem(atPath: path) }
}


/// A small seeded generator, so "random" inputs are the same on every run.
public struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Seeded cron expressions for the schedule tests (gap analysis, system scheduler formats).
public enum CronGenerator {
    /// A seeded generator of cron expressions that exercises lists, ranges, steps, names
    /// and both day-field semantics, kept sparse enough for plain enumeration to be quick.
    public static func generated(count: Int, seed: UInt64) -> [String] {
        var rng = SplitMix(seed: seed)
        func pick<T>(_ a: [T]) -> T { a[Int(rng.next() % UInt64(a.count))] }
        func n(_ r: ClosedRange<Int>) -> Int { r.lowerBound + Int(rng.next() % UInt64(r.count)) }
        var out: [String] = []
        for _ in 0..<count {
            let minute = pick(["0", "\(n(0...59))", "\(n(0...29)),\(n(30...59))", "*/\(pick([15, 20, 30, 45]))", "\(n(0...9))-\(n(10...20))/5"])
            let hour = pick(["*", "\(n(0...23))", "*/\(n(2...12))", "\(n(0...8))-\(n(9...23))", "\(n(0...11)),\(n(12...23))", "1-5/2"])
            let dom = pick(["*", "*", "\(n(1...31))", "1,15", "\(n(1...10))-\(n(11...28))", "*/\(n(2...10))", "31", "29,30"])
            let month = pick(["*", "*", "\(n(1...12))", "jan,jul", "mar-oct", "*/3", "2"])
            let dow = pick(["*", "*", "\(n(0...7))", "mon-fri", "sat,sun", "1-5/2", "fri", "*/2"])
            out.append([minute, hour, dom, month, dow].joined(separator: " "))
        }
        return out
    }
}
