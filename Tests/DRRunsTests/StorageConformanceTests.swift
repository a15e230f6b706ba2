import Foundation
import Testing
import TestSupport
@testable import DRRuns

/// The storages under the repository, each held to `RepositoryStorage`'s contract. Local disk
/// is the first; a new storage (S3) joins the `arguments` and must pass the same cases.
enum StorageUnderTest: String, CaseIterable, CustomTestStringConvertible, Sendable {
    case local, s3
    var testDescription: String { rawValue }

    /// Whether listing a folder that holds nothing is an error (a filesystem) or an empty
    /// list (an object store, which has no folders).
    var hasDirectories: Bool { self == .local }

    /// A fresh, empty storage root (existing), and one whose root does not exist; nil (with
    /// the skip printed, or in CI recorded as a failure) when the storage is not available.
    func make(_ dir: TempDir) throws -> (present: any RepositoryStorage, absent: any RepositoryStorage)? {
        switch self {
        case .local:
            let root = try dir.makeDirectory("root")
            for d in ["index", "snapshots", "packs/ab"] { try dir.makeDirectory("root/" + d) }
            return (LocalStorage(root: root), LocalStorage(root: dir.path + "/unplugged"))
        case .s3:
            guard let s = S3TestServer.current() else { return nil }
            let prefix = "conformance-" + UUID().uuidString.prefix(8).lowercased()
            return (try s.storage(prefix: prefix), try s.storage(prefix: prefix, bucket: "no-such-bucket-" + prefix))
        }
    }
}

/// The S3 server the tests use: moto, started by `.ci/s3.sh` (DRPLAN_S3_ENDPOINT and the keys
/// of the IAM user it created). Without one the S3 tests skip, and fail in CI.
struct S3TestServer {
    let endpoint: String, bucket: String, accessKey: String, secret: String

    static func current() -> S3TestServer? {
        let env = ProcessInfo.processInfo.environment
        guard let e = env["DRPLAN_S3_ENDPOINT"], let b = env["DRPLAN_S3_BUCKET"], let a = env["DRPLAN_S3_ACCESS_KEY_ID"], let k = env["DRPLAN_S3_SECRET_ACCESS_KEY"] else {
            _ = Tools.skip("S3 test", because: "no S3 server (start moto with: eval \"$(bash .ci/s3.sh start /tmp/drplan-s3)\")") { Issue.record(Comment(rawValue: $0)) }
            return nil
        }
        return S3TestServer(endpoint: e, bucket: b, accessKey: a, secret: k)
    }

    func storage(prefix: String, bucket: String? = nil, secret: String? = nil) throws -> S3Storage {
        let loc = try S3Location(url: "s3://\(bucket ?? self.bucket)/\(prefix)", endpoint: endpoint, region: "us-east-1", pathStyle: true)
        let s = S3Storage(loc, credentials: AWSCredentials(accessKeyId: accessKey, secretAccessKey: secret ?? self.secret))
        s.retry = RetryPolicy(attempts: 4, delays: [0.05, 0.1, 0.2])
        return s
    }
}

@Suite("Storage conformance")
struct StorageConformanceTests {
    static func append(_ w: any StorageWriter, _ bytes: [UInt8]) throws {
        let r: Result<Void, RepositoryError> = bytes.withUnsafeBytes { b in
            do throws(RepositoryError) { try w.append(b); return .success(()) } catch { return .failure(error) }
        }
        try r.get()
    }

    @Test("write, list, info, read and read-range round-trip; listings are sorted and hide temporary files", arguments: StorageUnderTest.allCases)
    func roundTrip(_ kind: StorageUnderTest) throws {
        let dir = try TempDir(); defer { dir.cleanup() }
        guard let s = try kind.make(dir)?.present else { return }
        let bytes = [UInt8]((0..<5000).map { UInt8($0 % 251) })
        #expect(try s.write("snapshots/bb", bytes, exclusive: false))
        #expect(try s.write("snapshots/aa", [1, 2, 3], exclusive: false))
        #expect(try s.list("snapshots") == ["aa", "bb"])
        #expect(try s.info("snapshots/bb")?.size == 5000)
        #expect(try s.info("snapshots/none") == nil)
        #expect(try s.read("snapshots/bb") == bytes)
        #expect(try s.readRange("snapshots/bb", offset: 4000, length: 1000) == Array(bytes[4000..<5000]))
        // Overwriting is atomic: readers see one file or the other, never a mix.
        #expect(try s.write("snapshots/bb", [9], exclusive: false))
        #expect(try s.read("snapshots/bb") == [9])
    }

    @Test("an exclusive write never replaces a file, and says so", arguments: StorageUnderTest.allCases)
    func exclusive(_ kind: StorageUnderTest) throws {
        let dir = try TempDir(); defer { dir.cleanup() }
        guard let s = try kind.make(dir)?.present else { return }
        #expect(try s.write("config", [1], exclusive: true))
        #expect(try !s.write("config", [2], exclusive: true))
        #expect(try s.read("config") == [1])
        #expect(try s.list("").contains("config"))
    }

    @Test("missing files are .missing, short reads are .corrupt, deleting what is gone succeeds", arguments: StorageUnderTest.allCases)
    func failures(_ kind: StorageUnderTest) throws {
        let dir = try TempDir(); defer { dir.cleanup() }
        guard let s = try kind.make(dir)?.present else { return }
        do { _ = try s.read("index/none"); Issue.record("read a missing file") } catch { #expect(error.kind == .missing) }
        if kind.hasDirectories {
            do { _ = try s.list("nothing-here"); Issue.record("listed a missing folder") } catch { #expect(error.kind == .missing) }
        } else {
            #expect(try s.list("nothing-here").isEmpty)
        }
        try s.write("index/short", [1, 2, 3], exclusive: false)
        do { _ = try s.readRange("index/short", offset: 1, length: 10); Issue.record("short read passed") } catch { #expect(error.kind == .corrupt) }
        try s.delete("index/short")
        try s.delete("index/short")
        #expect(try s.info("index/short") == nil)
    }

    @Test("a piecewise writer is visible only after commit, and abort leaves nothing", arguments: StorageUnderTest.allCases)
    func writer(_ kind: StorageUnderTest) throws {
        let dir = try TempDir(); defer { dir.cleanup() }
        guard let s = try kind.make(dir)?.present else { return }
        let w = try s.writer("packs/ab/p1")
        try Self.append(w, [UInt8](repeating: 7, count: 1000))
        try Self.append(w, [UInt8](repeating: 8, count: 24))
        #expect(w.size == 1024)
        try w.commit()
        try s.syncDirectories(["packs/ab", "packs"])
        #expect(try s.read("packs/ab/p1").count == 1024)
        let gone = try s.writer("packs/ab/p2")
        try Self.append(gone, [UInt8](repeating: 1, count: 10))
        gone.abort()
        #expect(try s.info("packs/ab/p2") == nil)
        #expect(try s.list("packs/ab") == ["p1"])
    }

    @Test("a storage whose root is missing fails every call and creates nothing", arguments: StorageUnderTest.allCases)
    func absentRoot(_ kind: StorageUnderTest) throws {
        let dir = try TempDir(); defer { dir.cleanup() }
        guard let s = try kind.make(dir)?.absent else { return }
        #expect(throws: RepositoryError.self) { _ = try s.list("snapshots") }
        #expect(throws: RepositoryError.self) { _ = try s.read("config") }
        #expect(throws: RepositoryError.self) { _ = try s.write("config", [1], exclusive: true) }
        #expect(throws: RepositoryError.self) {
            let w = try s.writer("packs/ab/p")
            try Self.append(w, [1, 2, 3])
            try w.commit()
        }
        #expect(!FileManager.default.fileExists(atPath: dir.path + "/unplugged"))
    }
}

@Suite("restic engine environment")
struct ResticEnvironmentTests {
    @Test("the storage's credentials reach restic's environment under restic's names; the caller's RESTIC_* settings do not")
    func credentials() throws {
        guard (try? ExternalTool.locate("restic", package: "restic")) != nil else {
            _ = Tools.skip("restic environment", because: "restic is not installed (apt-get install restic)") { Issue.record(Comment(rawValue: $0)) }
            return
        }
        #expect(ResticEngine.environmentName("access_key_id") == "AWS_ACCESS_KEY_ID")
        #expect(ResticEngine.environmentName("secret_access_key") == "AWS_SECRET_ACCESS_KEY")
        #expect(ResticEngine.environmentName("b2_account_id") == "B2_ACCOUNT_ID")
        let e = try ResticEngine(repository: "/nowhere", password: .file("/pw"), credentials: ["AWS_ACCESS_KEY_ID": "AKIA", "AWS_SECRET_ACCESS_KEY": "s3cr3t"])
        let env = e.environment
        #expect(env["AWS_ACCESS_KEY_ID"] == .some("AKIA") && env["AWS_SECRET_ACCESS_KEY"] == .some("s3cr3t"))
        #expect(env["RESTIC_PASSWORD_FILE"] == .some("/pw") && env["RESTIC_REPOSITORY"] == .some(nil) && env["RESTIC_PASSWORD"] == .some(nil))
    }
}
