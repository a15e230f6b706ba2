import Foundation

/// Table row counts recorded beside a database copy at backup time and compared after a
/// restore: the sqlite and pg_dump engines' check that the restored data is all there.
enum RowCounts {
    static let fileName = "drplan-rowcounts.json"

    static func write(_ counts: [String: Int64], into dir: URL) throws(RepositoryError) {
        do {
            try JSONSerialization.data(withJSONObject: counts, options: [.sortedKeys]).write(to: dir.appendingPathComponent(fileName))
        } catch {
            throw RepositoryError(.io, "cannot write the row counts into \(dir.path): \(error.localizedDescription)")
        }
    }

    /// The counts a snapshot recorded, or nil when it holds none.
    static func recorded(in dir: URL) -> [String: Int64]? {
        guard let data = FileManager.default.contents(atPath: dir.appendingPathComponent(fileName).path) else { return nil }
        return try? JSONSerialization.jsonObject(with: data) as? [String: Int64]
    }

    static let missing = "the snapshot has no row counts to compare with"

    /// One sentence per table whose count differs, in table order.
    static func mismatches(expected: [String: Int64], actual: [String: Int64], describe: (String, Int64?, Int64) -> String) -> [String] {
        expected.keys.sorted().compactMap { t in actual[t] == expected[t] ? nil : describe(t, actual[t], expected[t] ?? 0) }
    }
}
