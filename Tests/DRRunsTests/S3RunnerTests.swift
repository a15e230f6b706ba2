import Crypto
import DRInventory
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif
import TestSupport
@testable import DRRuns

/// The builtin engine on S3 (moto, verifying signatures), driven as a user's inventory drives it.
@Suite("S3: the builtin repository on object storage")
struct S3RunnerTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

    static func inventory(_ dir: TempDir, _ s: S3TestServer, prefix: String, bucket: String? = nil, secretEnv: String = "DRPLAN_S3_SECRET_ACCESS_KEY",
                          keyEnv: String = "DRPLAN_S3_ACCESS_KEY_ID", create: Bool = true) throws -> Inventory {
        try dir.write("pw.txt", "correct horse\n")
        try dir.write("data/a.txt", String(repeating: "a", count: 3000))
        try RepositoryTests.randomFile(dir.path + "/data/big.bin", bytes: 3_000_000)
        try dir.makeDirectory("drive")
        return try InventoryLoader.load(texts: [(dir.path + "/inv.yaml", """
            drplan: 1
            sites: [{ id: office, kind: office }, { id: cloud, kind: cloud-region }]
            storage:
              - { id: drive, kind: removable, site: office, path: drive, create: true }
              - id: bucket
                kind: cloud-object
                site: cloud
                url: "s3://\(bucket ?? s.bucket)/\(prefix)"
                endpoint: "\(s.endpoint)"
                create: \(create)
                credentials: { access_key_id: "env:\(keyEnv)", secret_access_key: "env:\(secretEnv)" }
            assets: [{ id: docs, kind: file-store, site: office, source: { path: data } }]
            jobs: [{ id: nightly, assets: [docs], schedule: "@daily", targets: [drive, bucket], retention: { keep_last: 1 }, encryption: { at_rest: true, passphrase: "file:pw.txt" } }]
            restore_tests: [{ id: t, job: nightly, scope: full, targets: all }]
            """)])
    }

    @Test("backup to a drive and a bucket, restore and restore-test from the bucket, check with --read-data, prune")
    func roundTrip() throws {
        guard let s = S3TestServer.current() else { return }
        let dir = try TempDir(); defer { dir.cleanup() }
        let runner = Runner(inventory: try Self.inventory(dir, s, prefix: "rt-" + UUID().uuidString.prefix(8).lowercased()), baseDirectory: dir.path,
                            store: try EvidenceStore(path: dir.path + "/ev.sqlite"))
        let first = try runner.backup(jobs: [])
        #expect(first.map(\.status) == [.success, .success], "\(first.map { $0.error ?? "" })")
        try dir.write("data/b.txt", "second")
        #expect(try runner.backup(jobs: []).map(\.status) == [.success, .success])
        let out = URL(fileURLWithPath: dir.path + "/restored")
        let r = try runner.restore(job: "nightly", snapshot: nil, target: out, from: "bucket")
        #expect(r[0].result.damaged.isEmpty && r[0].result.files == 3)
        #expect(try Data(contentsOf: out.appendingPathComponent("big.bin")) == Data(contentsOf: URL(fileURLWithPath: dir.path + "/data/big.bin")))
        let tests = try runner.restoreTest(tests: [], sample: nil, seed: 1, keep: false)
        #expect(tests.map(\.0.status) == [.success, .success] && tests.map { $0.0.storage ?? "" } == ["drive", "bucket"])
        let check = try runner.checkRepositories(jobs: [], from: "bucket", readData: .all)
        #expect(check.count == 1 && check[0].report.problems.isEmpty && check[0].report.packsRead > 0, "\(check.map(\.report.problems))")
        #expect(try runner.prune(jobs: [], grace: 0).map(\.status) == [.success, .success])
        #expect(try runner.snapshots(jobs: [], from: "bucket").count == 1)
        #expect(try runner.checkRepositories(jobs: [], from: "bucket", readData: .all)[0].report.problems.isEmpty)
    }

    @Test("a wrong secret, a missing bucket, a denied request and a bucket without a repository each give a clear message")
    func clearErrors() throws {
        guard let s = S3TestServer.current() else { return }
        let dir = try TempDir(); defer { dir.cleanup() }
        setenv("DRPLAN_S3_WRONG_SECRET", "not-the-secret", 1)
        let prefix = "err-" + UUID().uuidString.prefix(8).lowercased()
        let wrong = Runner(inventory: try Self.inventory(dir, s, prefix: prefix, secretEnv: "DRPLAN_S3_WRONG_SECRET"), baseDirectory: dir.path, store: try EvidenceStore(path: dir.path + "/ev.sqlite"))
        let w = try wrong.backup(jobs: [])
        #expect(w.map(\.status) == [.success, .failed])
        #expect(w[1].error?.contains("SignatureDoesNotMatch") == true && w[1].error?.contains("bucket '\(s.bucket)'") == true && w[1].error?.contains("credentials") == true, "\(w[1].error ?? "")")
        #expect(w[1].error?.contains("not-the-secret") == false)
        let missing = Runner(inventory: try Self.inventory(dir, s, prefix: prefix, bucket: "no-such-bucket-" + prefix), baseDirectory: dir.path, store: wrong.store)
        let m = try missing.backup(jobs: [])
        #expect(m[1].status == .failed && m[1].error?.contains("does not exist") == true && m[1].error?.contains("NoSuchBucket") == true, "\(m[1].error ?? "")")
        // A user whose policy allows reading only: the denied PUT names the bucket, the key and S3's code.
        if ProcessInfo.processInfo.environment["DRPLAN_S3_READONLY_ACCESS_KEY_ID"] != nil {
            let denied = Runner(inventory: try Self.inventory(dir, s, prefix: prefix + "-denied", secretEnv: "DRPLAN_S3_READONLY_SECRET_ACCESS_KEY", keyEnv: "DRPLAN_S3_READONLY_ACCESS_KEY_ID"),
                                baseDirectory: dir.path, store: wrong.store)
            let d = try denied.backup(jobs: [])
            #expect(d[1].status == .failed && d[1].error?.contains("AccessDenied") == true && d[1].error?.contains("bucket '\(s.bucket)', key '\(prefix)-denied/config'") == true
                    && d[1].error?.contains("permissions") == true, "\(d[1].error ?? "")")
        } else {
            _ = Tools.skip("S3 denied-request check", because: "no read-only S3 user (DRPLAN_S3_READONLY_*; .ci/s3.sh creates one)") { Issue.record(Comment(rawValue: $0)) }
        }
        let noRepo = Runner(inventory: try Self.inventory(dir, s, prefix: prefix + "-none", create: false), baseDirectory: dir.path, store: wrong.store)
        let n = try noRepo.restoreTest(tests: [], sample: nil, seed: 1, keep: false, from: "bucket")
        #expect(n[0].0.status == .failed && n[0].0.error?.contains("drplan init-repository bucket") == true, "\(n[0].0.error ?? "")")
    }

    @Test("the HTTP proxy comes from the environment as curl reads it; loopback and no_proxy hosts go direct; a malformed one is an error")
    func proxyFromEnvironment() throws {
        let aws = try #require(URL(string: "https://s3.eu-west-1.amazonaws.com/bucket/key"))
        let plain = try #require(URL(string: "http://minio.internal.example:9000/bucket"))
        let env = ["https_proxy": "http://alice:p%40ss@proxy.example:3128", "HTTP_PROXY": "proxy.example", "NO_PROXY": "localhost, .internal.example"]
        let p = try #require(try HTTPTransport.proxy(for: aws, environment: env))
        #expect(p.host == "proxy.example" && p.port == 3128 && p.credentials == "alice:p@ss")
        #expect(try HTTPTransport.proxy(for: plain, environment: env) == nil)   // named by NO_PROXY
        let viaHTTP = try #require(try HTTPTransport.proxy(for: plain, environment: ["HTTP_PROXY": "proxy.example"]))
        #expect(viaHTTP.host == "proxy.example" && viaHTTP.port == 80 && viaHTTP.credentials == nil)
        #expect(try HTTPTransport.proxy(for: try #require(URL(string: "http://127.0.0.1:9000/b")), environment: env) == nil)
        #expect(try HTTPTransport.proxy(for: aws, environment: ["https_proxy": "http://proxy:1", "no_proxy": "*"]) == nil)
        #expect(try HTTPTransport.proxy(for: aws, environment: [:]) == nil)
        do { _ = try HTTPTransport.proxy(for: aws, environment: ["HTTPS_PROXY": "socks5://secret@proxy:1080"]); Issue.record("a socks proxy was taken for http") } catch {
            #expect("\(error)".contains("HTTPS_PROXY") && !"\(error)".contains("secret"), "\(error)")
        }
    }

    @Test("an endpoint nobody listens on, and a server that never replies, each fail with a message that says so")
    func transportFailures() throws {
        // A loopback port bound and listening but never accepting: the kernel completes the
        // connection, and no reply ever comes. Closing it afterwards leaves a port nobody holds.
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && listen(fd, 8) == 0 && getsockname(fd, $0, &len) == 0 } }
        try #require(bound)
        let port = Int(UInt16(bigEndian: addr.sin_port))
        func storage(timeout: TimeInterval) throws -> S3Storage {
            let s = S3Storage(try S3Location(url: "s3://bucket/repo", endpoint: "http://127.0.0.1:\(port)", region: nil, pathStyle: true),
                              credentials: AWSCredentials(accessKeyId: "AKIDEXAMPLE", secretAccessKey: "not-a-secret"), timeout: timeout)
            s.retry = RetryPolicy(attempts: 2, delays: [0.05])
            return s
        }
        let silent = try storage(timeout: 1)
        do { _ = try silent.read("config"); Issue.record("a read from a silent server succeeded") } catch {
            #expect(error.kind == .io && error.message.contains("127.0.0.1:\(port)") && error.message.contains("no complete reply within 1 s"), "\(error.message)")
        }
        close(fd)
        let nobody = try storage(timeout: 5)
        do { _ = try nobody.list("snapshots"); Issue.record("a listing from a closed port succeeded") } catch {
            #expect(error.kind == .io && error.message.contains("127.0.0.1:\(port)") && error.message.contains("refused"), "\(error.message)")
            #expect(!error.message.contains("not-a-secret"))
        }
    }

    @Test("large packs go up as multipart uploads; an unfinished one is reported by check and aborted by prune")
    func multipart() throws {
        guard let s = S3TestServer.current() else { return }
        let storage = try s.storage(prefix: "mp-" + UUID().uuidString.prefix(8).lowercased())
        let repo = try BuiltinRepository.create(storage: storage, passphrase: "pw", kdfRounds: 1 << 10).0
        var big = [UInt8](repeating: 0, count: 20 << 20)
        for i in stride(from: 0, to: big.count, by: 4096) { big[i] = UInt8(truncatingIfNeeded: i / 4096) }
        let w = try storage.writer("packs/ab/big")
        try StorageConformanceTests.append(w, big)
        try w.commit()
        #expect(try storage.read("packs/ab/big") == big)
        #expect(try storage.unfinishedUploads().isEmpty)
        // A backup killed mid-upload leaves an upload open.
        let started = try storage.send("POST", key: storage.s3.key("packs/cd/cut"), query: [("uploads", "")])
        #expect(started.status == 200)
        #expect(try repo.check(readData: .none).notes.contains { $0.contains("multipart upload(s) were never completed") })
        _ = try repo.collectGarbage(grace: 0)
        #expect(try storage.unfinishedUploads().isEmpty)
    }

    @Test("every PUT carries the body's SHA-256 as x-amz-checksum-sha256, which the server keeps with the object")
    func checksums() throws {
        guard let s = S3TestServer.current() else { return }
        let storage = try s.storage(prefix: "sum-" + UUID().uuidString.prefix(8).lowercased())
        let small = Array("a small object".utf8)
        try storage.write("index/small", small, exclusive: false)
        var big = [UInt8](repeating: 7, count: 20 << 20)
        for i in stride(from: 0, to: big.count, by: 512) { big[i] = UInt8(truncatingIfNeeded: i >> 9) }
        let w = try storage.writer("packs/ab/big")
        try StorageConformanceTests.append(w, big)
        try w.commit()
        func stored(_ path: String) throws -> String? {
            let r = try storage.send("HEAD", key: storage.s3.key(path), headers: ["x-amz-checksum-mode": "ENABLED"])
            #expect(r.status == 200)
            return r.headers["x-amz-checksum-sha256"]
        }
        #expect(try stored("index/small") == Data(SHA256.hash(data: small)).base64EncodedString())
        // A multipart object's checksum is S3's checksum of its parts' checksums.
        let parts = S3Storage.partRanges(big.count).map { Data(SHA256.hash(data: big[$0])) }
        #expect(parts.count == 2)
        let composite = Data(SHA256.hash(data: parts.reduce(Data(), +))).base64EncodedString()
        let got = try #require(try stored("packs/ab/big"), "the server kept no checksum for the multipart upload")
        #expect(got == composite || got == composite + "-\(parts.count)", "\(got)")
        #expect(try storage.read("packs/ab/big") == big)
    }

    @Test("a server that refuses x-amz-checksum-* headers (as Backblaze B2 does) gets Content-MD5 instead, and the writes succeed")
    func checksumRefused() throws {
        guard let s = S3TestServer.current() else { return }
        let port = try #require(URL(string: s.endpoint)?.port)
        let (proxy, ready) = try Tools.startPython(Self.root + "/Tests/Tools/no_checksum_proxy.py", ["0", String(port)])
        defer { kill(proxy.processIdentifier, SIGKILL); proxy.waitUntilExit() }   // SIGTERM may be ignored, inherited from the runner
        let listen = try #require(ready.hasPrefix("ready ") ? Int(ready.dropFirst(6)) : nil, "\(ready)")
        let behind = S3TestServer(endpoint: "http://127.0.0.1:\(listen)", bucket: s.bucket, accessKey: s.accessKey, secret: s.secret)
        let storage = try behind.storage(prefix: "md5-" + UUID().uuidString.prefix(8).lowercased())
        var big = [UInt8](repeating: 3, count: 20 << 20)
        for i in stride(from: 0, to: big.count, by: 512) { big[i] = UInt8(truncatingIfNeeded: i >> 9) }
        let w = try storage.writer("packs/ab/big")
        try StorageConformanceTests.append(w, big)
        try w.commit()
        #expect(storage.flexibleChecksums.withLock { $0 } == false)
        try storage.write("index/small", Array("small".utf8), exclusive: false)
        #expect(try storage.read("packs/ab/big") == big && storage.read("index/small") == Array("small".utf8))
        // A whole repository through it: created, backed up to, read back in full.
        let dir = try TempDir(); defer { dir.cleanup() }
        try RepositoryTests.randomFile(dir.path + "/data/r.bin", bytes: 3_000_000)
        let repo = try BuiltinRepository.create(storage: try behind.storage(prefix: "md5r-" + UUID().uuidString.prefix(8).lowercased()), passphrase: "pw", kdfRounds: 1 << 10).0
        _ = try repo.backup(paths: [dir.path + "/data"], tags: [])
        #expect(try repo.check(readData: .all).problems.isEmpty)
    }

    @Test("restic to the same S3 server, with the storage's credentials in restic's environment only")
    func resticToS3() throws {
        guard let s = S3TestServer.current() else { return }
        guard (try? ExternalTool.locate("restic", package: "restic")) != nil else {
            _ = Tools.skip("restic to S3", because: "restic is not installed (apt-get install restic)") { Issue.record(Comment(rawValue: $0)) }
            return
        }
        let dir = try TempDir(); defer { dir.cleanup() }
        try dir.write("pw.txt", "correct horse\n")
        try dir.write("data/a.txt", "alpha")
        let inv = try InventoryLoader.load(texts: [(dir.path + "/inv.yaml", """
            drplan: 1
            sites: [{ id: office, kind: office }, { id: cloud, kind: cloud-region }]
            storage:
              - id: bucket
                kind: cloud-object
                site: cloud
                url: "s3:\(s.endpoint)/\(s.bucket)/restic-\(UUID().uuidString.prefix(8).lowercased())"
                create: true
                credentials: { access_key_id: "env:DRPLAN_S3_ACCESS_KEY_ID", secret_access_key: "env:DRPLAN_S3_SECRET_ACCESS_KEY" }
            assets: [{ id: docs, kind: file-store, site: office, source: { path: data } }]
            jobs: [{ id: nightly, assets: [docs], schedule: "@daily", engine: restic, targets: [bucket], encryption: { at_rest: true, passphrase: "file:pw.txt" } }]
            restore_tests: [{ id: t, job: nightly, scope: full }]
            """)])
        let runner = Runner(inventory: inv, baseDirectory: dir.path, store: try EvidenceStore(path: dir.path + "/ev.sqlite"))
        let b = try runner.backup(jobs: [])
        #expect(b.map(\.status) == [.success], "\(b.map { $0.error ?? "" })")
        let t = try runner.restoreTest(tests: [], sample: nil, seed: 1, keep: false)
        #expect(t.map(\.0.status) == [.success], "\(t.map { $0.0.error ?? "" })")
    }

    @Test("listings page past 1,000 objects")
    func pagination() throws {
        guard let s = S3TestServer.current() else { return }
        let storage = try s.storage(prefix: "page-" + UUID().uuidString.prefix(8).lowercased())
        let names = (0..<1105).map { String(format: "%05d", $0) }
        DispatchQueue.concurrentPerform(iterations: 8) { w in
            for (i, n) in names.enumerated() where i % 8 == w { _ = try? storage.write("snapshots/" + n, [1], exclusive: false) }
        }
        #expect(try storage.list("snapshots") == names)
    }
}
