import DRInventory
import Foundation

/// S3 Object Lock (docs/s3.md): with `object_lock` declared, every repository object drplan
/// writes carries its own retention, and the bucket's configuration is read back, so that
/// `immutable` is measured rather than declared.
extension S3Storage {
    /// Paths whose objects are locked: the repository's data and its history. Lock files and
    /// damage markers are not: a lock that cannot be removed would block every later run.
    static func isLocked(_ path: String) -> Bool {
        !(path.hasPrefix("locks/") || path.hasPrefix("damaged/"))
    }

    /// The retention headers for a PUT or CreateMultipartUpload of `path`. S3 requires a
    /// Content-MD5 or a checksum on such a PUT; `write` always sends `x-amz-checksum-sha256`.
    func lockHeaders(_ path: String) -> [String: String] {
        guard let lock = objectLock, Self.isLocked(path) else { return [:] }
        return ["x-amz-object-lock-mode": lock.mode.rawValue.uppercased(),
                "x-amz-object-lock-retain-until-date": Self.isoString(now().addingTimeInterval(Double(lock.days) * 86400))]
    }

    /// What the bucket says of Object Lock: whether it is enabled, and its default retention.
    public struct BucketLock: Sendable, Equatable {
        public var enabled: Bool
        public var defaultMode: String?
        public var defaultDays: Int?
    }

    /// Reads `GET /?object-lock`. A bucket without a configuration is `enabled: false`
    /// (S3's ObjectLockConfigurationNotFoundError); any other failure throws.
    public func bucketObjectLock() throws(RepositoryError) -> BucketLock {
        let r = try send("GET", key: nil, query: [("object-lock", "")])
        let text = String(decoding: r.body, as: UTF8.self)
        if r.status == 404, XMLText.first("Code", in: text) == "ObjectLockConfigurationNotFoundError" {
            return BucketLock(enabled: false)
        }
        guard r.status == 200 else { throw error(r.status, r.body, key: nil, what: "GetObjectLockConfiguration") }
        let days = XMLText.first("Days", in: text).flatMap { Int($0) } ?? XMLText.first("Years", in: text).flatMap { Int($0).map { $0 * 365 } }
        return BucketLock(enabled: XMLText.first("ObjectLockEnabled", in: text) == "Enabled", defaultMode: XMLText.first("Mode", in: text), defaultDays: days)
    }

    /// Fails (a config error naming the bucket and what to do) unless the bucket has Object
    /// Lock enabled, which S3 allows only for buckets created with it.
    public func requireObjectLock(storage id: String) throws(RepositoryError) -> BucketLock {
        let b = try bucketObjectLock()
        guard b.enabled else {
            throw RepositoryError(.config, "storage '\(id)' declares object_lock, but bucket '\(s3.bucket)' has no Object Lock configuration (ObjectLockConfigurationNotFoundError), so nothing drplan writes there can be locked: create the bucket with Object Lock enabled (S3: --object-lock-enabled-for-bucket) and point 'url' at it, or remove 'object_lock'")
        }
        return b
    }

    /// Confirms that `path` was stored under at least the declared retention: the proof that
    /// the copy is immutable. Returns a sentence saying what was seen, or throws.
    public func verifyLocked(_ path: String, storage id: String) throws(RepositoryError) -> String {
        guard let lock = objectLock else { return "no object lock declared" }
        guard let info = try info(path) else { throw RepositoryError(.missing, "\(location)/\(path) was not found after it was written") }
        let wanted = now().addingTimeInterval(Double(lock.days) * 86400 - 86400)
        guard let until = info.retainUntil, until >= wanted, info.lockMode?.uppercased() == lock.mode.rawValue.uppercased() else {
            throw RepositoryError(.config, "storage '\(id)' declares object_lock (\(lock.mode.rawValue), \(lock.days) days), but \(location)/\(path) was stored with \(info.lockMode.map { "mode \($0)" } ?? "no lock mode")\(info.retainUntil.map { " until \(Self.isoString($0))" } ?? " and no retention date"); the bucket or a policy ignores the retention drplan asks for")
        }
        return "\(path) is locked (\(info.lockMode ?? "")) until \(Self.isoString(until))"
    }

    static func isoString(_ d: Date) -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime]
        return f.string(from: d)
    }

    static func isoDate(_ s: String) -> Date? {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        if let d = f.date(from: s) { return d }
        f.formatOptions = [.withInternetDateTime]
        return f.date(from: s)
    }
}

extension S3Storage {
    /// Bytes and objects under the repository's prefix, from one paginated listing (no HEAD
    /// per object). A failed page fails the whole count.
    public func usage() throws(RepositoryError) -> (bytes: Int64, objects: Int) {
        var bytes: Int64 = 0, objects = 0
        try listPages(prefix: s3.key("").isEmpty ? "" : s3.key("") + "/", delimiter: nil) { text in
            for item in XMLText.all("Contents", in: text) {
                objects += 1
                bytes += Int64(XMLText.first("Size", in: item) ?? "") ?? 0
            }
        }
        return (bytes, objects)
    }
}
