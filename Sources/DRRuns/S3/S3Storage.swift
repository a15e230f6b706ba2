import CEL
import Crypto
import DRInventory
import Foundation

/// Where an S3 repository lives: `s3://BUCKET/PREFIX`, and the endpoint that serves it.
public struct S3Location: Sendable, Equatable {
    public var bucket: String
    public var prefix: String
    /// `https://s3.REGION.amazonaws.com` unless an `endpoint` (MinIO, Ceph, B2, R2…) is given.
    public var endpoint: URL
    public var region: String
    /// `https://host/BUCKET/key` instead of `https://BUCKET.host/key`.
    public var pathStyle: Bool

    /// The endpoint hosts that never leave this machine: plain http is allowed to them, and
    /// no proxy is used for them.
    static let loopbackHosts: Set<String> = ["127.0.0.1", "localhost", "::1", "[::1]"]

    /// Parses `s3://bucket/prefix`. Plain `http://` endpoints are refused unless they are on
    /// loopback or `insecureHTTP` says so: credentials and data would cross the network in clear.
    public init(url: String, endpoint: String?, region: String?, pathStyle: Bool?, insecureHTTP: Bool = false) throws(RepositoryError) {
        guard url.hasPrefix("s3://") else { throw RepositoryError(.config, "'\(url)' is not an s3://BUCKET/PREFIX url") }
        let rest = url.dropFirst("s3://".count)
        let parts = rest.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        guard let b = parts.first, !b.isEmpty else { throw RepositoryError(.config, "'\(url)' names no bucket; write s3://BUCKET/PREFIX") }
        bucket = String(b)
        prefix = parts.count > 1 ? String(parts[1]).trimmingCharacters(in: CharacterSet(charactersIn: "/")) : ""
        self.region = region ?? "us-east-1"
        let text = endpoint ?? "https://s3.\(self.region).amazonaws.com"
        guard let e = URL(string: text), let scheme = e.scheme, let host = e.host, ["http", "https"].contains(scheme) else {
            throw RepositoryError(.config, "the endpoint '\(text)' is not an http(s) URL")
        }
        if scheme == "http", !insecureHTTP, !Self.loopbackHosts.contains(host) {
            throw RepositoryError(.config, "the endpoint '\(text)' is plain http on a host that is not loopback: credentials and data would cross the network unencrypted; use https, or set 'insecure_http: true' if you really mean it")
        }
        self.endpoint = e
        self.pathStyle = pathStyle ?? (endpoint != nil)
    }

    /// The object key of a repository path.
    func key(_ path: String) -> String { prefix.isEmpty ? path : (path.isEmpty ? prefix : prefix + "/" + path) }
}

/// A repository on S3-compatible object storage, behind the same `RepositoryStorage` contract
/// as local disk. S3 has no directories and no rename: a "directory" is a key prefix, and a
/// write is atomic because a PUT is (an object is visible whole or not at all); a snapshot is
/// written only after every pack and the index it needs have been uploaded and acknowledged,
/// which is what keeps the crash-safety promise here.
public final class S3Storage: RepositoryStorage, @unchecked Sendable {
    public let s3: S3Location
    let credentials: AWSCredentials
    let timeout: TimeInterval
    /// Retries of what a retry can cure (5xx, 429, timeouts, resets): the runs' own policy,
    /// with the short waits a single request wants.
    var retry = RetryPolicy(attempts: 4, delays: [0.2, 1, 3])
    /// The retention every repository object written gets (nil: none); see ObjectLock.swift.
    public var objectLock: ObjectLock? = nil
    /// The clock retention dates are computed from (tests inject one).
    var now: @Sendable () -> Date = { Date() }
    /// Whether the server takes `x-amz-checksum-*` headers. Cleared by the first refusal
    /// (Backblaze B2 answers them with 400 InvalidArgument "Unsupported header"), after which
    /// uploads carry Content-MD5 instead: an integrity check either way, never none.
    let flexibleChecksums = LockedBox(true)

    public init(_ s3: S3Location, credentials: AWSCredentials, timeout: TimeInterval = 60) {
        self.s3 = s3
        self.credentials = credentials
        self.timeout = timeout
    }

    public var location: String { "s3://\(s3.bucket)" + (s3.prefix.isEmpty ? "" : "/" + s3.prefix) }

    // MARK: requests

    struct Response { var status: Int; var headers: [String: String]; var body: [UInt8] }

    /// The URL and path (for signing) of a key in the bucket.
    func target(_ key: String?) -> (url: String, path: String, host: String) {
        let host = s3.endpoint.host ?? ""
        let port = s3.endpoint.port.map { ":\($0)" } ?? ""
        let base = s3.endpoint.path.trimmingCharacters(in: CharacterSet(charactersIn: "/"))
        var path = base.isEmpty ? "" : "/" + base
        let hostHeader: String
        if s3.pathStyle {
            path += "/" + s3.bucket + (key.map { "/" + $0 } ?? "")
            hostHeader = host + port
        } else {
            path += "/" + (key ?? "")
            hostHeader = s3.bucket + "." + host + port
        }
        if key == nil && !s3.pathStyle { path = path.isEmpty ? "/" : path }
        let scheme = s3.endpoint.scheme ?? "https"
        return ("\(scheme)://\(hostHeader)\(SigV4.encode(path, slash: true))", path, hostHeader)
    }

    /// Sends one signed request, retrying 5xx, 429 and transport failures with exponential
    /// backoff and jitter. A 4xx is returned as it is (the caller decides what it means).
    /// `checksum` sends the body's SHA-256 as `x-amz-checksum-sha256`, which S3 verifies
    /// before storing: the digest SigV4 signs anyway, so the integrity check costs nothing
    /// (Content-MD5 was 13% of a backup's CPU). `digest` is the body's SHA-256 when the
    /// caller has it already.
    func send(_ method: String, key: String?, query: [(String, String)] = [], headers extra: [String: String] = [:], body: ArraySlice<UInt8> = [],
              checksum: Bool = false, digest known: SHA256.Digest? = nil) throws(RepositoryError) -> Response {
        let (url, path, host) = target(key)
        let q = query.map { "\(SigV4.encode($0.0))=\(SigV4.encode($0.1))" }.joined(separator: "&")
        let full = q.isEmpty ? url : url + "?" + q
        let digest = known ?? SHA256.hash(data: body)
        let payloadHash = SigV4.hex(digest)
        var fixed = extra
        if checksum {
            // x-amz-sdk-checksum-algorithm is what S3 accepts in place of Content-MD5 on a PUT
            // under Object Lock.
            fixed["x-amz-sdk-checksum-algorithm"] = "SHA256"
            fixed["x-amz-checksum-sha256"] = Data(digest).base64EncodedString()
        }
        return try retry.run("S3 \(method) on \(location)", log: { _ in }) { () throws(RepositoryError) -> Response in
            let date = SigV4.amzDate(Date())
            var headers = fixed
            headers["host"] = host
            headers["x-amz-date"] = date
            headers["x-amz-content-sha256"] = payloadHash
            if let t = credentials.sessionToken { headers["x-amz-security-token"] = t }
            let auth = SigV4.authorization(method: method, path: path, query: query, headers: headers, payloadHash: payloadHash,
                                           credentials: credentials, region: s3.region, amzDate: date)
            var sent = headers
            sent["authorization"] = auth
            switch HTTPTransport.shared.send(method: method, url: full, headers: sent, body: !body.isEmpty || method == "PUT" ? body : nil, timeout: timeout) {
            case .success(let r) where r.status < 500 && r.status != 429:
                return Response(status: r.status, headers: r.headers, body: r.body)
            case .success(let r):
                throw error(r.status, r.body, key: key, what: method)   // .io: retried
            case .failure(let e as HTTPTransport.TransportError) where e.permanent:
                throw RepositoryError(.config, "cannot send a request to \(location): \(e)")
            case .failure(let e):
                throw RepositoryError(.io, "cannot reach \(s3.endpoint.absoluteString) for \(location)\(key.map { " (key \($0))" } ?? ""): \(e); check the endpoint and the network")
            }
        }
    }

    /// An S3 error as a RepositoryError naming the bucket, the key and S3's own code.
    func error(_ status: Int, _ body: [UInt8], key: String?, what: String) -> RepositoryError {
        let text = String(decoding: body, as: UTF8.self)
        let code = XMLText.first("Code", in: text) ?? "HTTP \(status)"
        let message = XMLText.first("Message", in: text).map { ": \($0)" } ?? ""
        let whereText = "bucket '\(s3.bucket)'" + (key.map { ", key '\($0)'" } ?? "")
        switch code {
        case "SignatureDoesNotMatch", "InvalidAccessKeyId", "AccessDenied", "InvalidToken", "ExpiredToken", "AuthorizationHeaderMalformed":
            return RepositoryError(.config, "S3 refused \(what) on \(whereText): \(code)\(message); check the storage's credentials (access key id and secret) and their permissions")
        case "NoSuchBucket":
            return RepositoryError(.missing, "S3 bucket '\(s3.bucket)' does not exist at \(s3.endpoint.absoluteString) (NoSuchBucket); create it, or fix the storage's url, endpoint and region")
        default:
            let kind: RepositoryError.Kind = status >= 500 || status == 429 ? .io : (status == 404 ? .missing : .io)
            return RepositoryError(kind, "S3 \(what) on \(whereText) failed: \(code) (HTTP \(status))\(message)")
        }
    }

    // MARK: RepositoryStorage

    /// Every page of a ListObjectsV2 under `prefix`, in order, each as its XML text. A failed
    /// or truncated-without-token page fails the whole listing: prune and check must never
    /// decide from a short list.
    func listPages(prefix: String, delimiter: String?, _ page: (String) throws(RepositoryError) -> Void) throws(RepositoryError) {
        var token: String? = nil
        repeat {
            var query = [("list-type", "2"), ("prefix", prefix)]
            if let delimiter { query.append(("delimiter", delimiter)) }
            if let token { query.append(("continuation-token", token)) }
            let r = try send("GET", key: nil, query: query)
            guard r.status == 200 else { throw error(r.status, r.body, key: prefix, what: "a listing") }
            let text = String(decoding: r.body, as: UTF8.self)
            try page(text)
            let truncated = XMLText.first("IsTruncated", in: text) == "true"
            token = truncated ? XMLText.first("NextContinuationToken", in: text) : nil
            if truncated && token == nil {
                throw RepositoryError(.io, "S3 listing of bucket '\(s3.bucket)', prefix '\(prefix)' was truncated without a continuation token; the listing is incomplete")
            }
        } while token != nil
    }

    public func list(_ dir: String) throws(RepositoryError) -> [String] {
        let prefix = s3.key(dir).isEmpty ? "" : s3.key(dir) + "/"
        var names = Set<String>()
        try listPages(prefix: prefix, delimiter: "/") { text in
            for k in XMLText.all("Key", in: text) where k.hasPrefix(prefix) { names.insert(String(k.dropFirst(prefix.count))) }
            for block in XMLText.all("CommonPrefixes", in: text) {
                if let p = XMLText.first("Prefix", in: block), p.hasPrefix(prefix) { names.insert(String(p.dropFirst(prefix.count).dropLast())) }
            }
        }
        return names.filter { !$0.isEmpty && !$0.hasPrefix(".") && !$0.contains("/") }.sorted()
    }

    public func info(_ path: String) throws(RepositoryError) -> StorageFileInfo? {
        let r = try send("HEAD", key: s3.key(path))
        if r.status == 404 { return nil }
        guard r.status == 200 else {
            // A HEAD reply has no body, so no S3 error code: ask again with a GET to get one.
            let g = try send("GET", key: s3.key(path), headers: ["range": "bytes=0-0"])
            if r.status == 403 && g.status != 403 {
                // The GET was allowed where the HEAD was not (a policy, or a server, that checks
                // HeadObject apart from GetObject): its reply says nothing about the refusal.
                throw RepositoryError(.config, "S3 refused HEAD on bucket '\(s3.bucket)', key '\(s3.key(path))': HTTP 403, though a GET of the same key was answered HTTP \(g.status); check the storage's credentials and their permissions (a HEAD needs s3:GetObject, and s3:ListBucket to tell a missing key from a refused one)")
            }
            throw error(g.status, g.body, key: s3.key(path), what: "HEAD")
        }
        let size = Int64(r.headers["content-length"] ?? "") ?? 0
        let modified = r.headers["last-modified"].flatMap(Self.httpDate) ?? Date()
        return StorageFileInfo(size: size, modified: modified, retainUntil: r.headers["x-amz-object-lock-retain-until-date"].flatMap(Self.isoDate),
                               lockMode: r.headers["x-amz-object-lock-mode"])
    }

    static func httpDate(_ s: String) -> Date? {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "GMT")
        f.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
        return f.date(from: s)
    }

    public func read(_ path: String) throws(RepositoryError) -> [UInt8] {
        let r = try send("GET", key: s3.key(path))
        if r.status == 404 { throw RepositoryError(.missing, "\(location)/\(path) does not exist") }
        guard r.status == 200 else { throw error(r.status, r.body, key: s3.key(path), what: "GET") }
        return r.body
    }

    public func readRange(_ path: String, offset: Int64, length: Int) throws(RepositoryError) -> [UInt8] {
        guard length > 0 else { return [] }
        let r = try send("GET", key: s3.key(path), headers: ["range": "bytes=\(offset)-\(offset + Int64(length) - 1)"])
        if r.status == 404 { throw RepositoryError(.missing, "\(location)/\(path) does not exist") }
        if r.status == 416 { throw RepositoryError(.corrupt, "\(location)/\(path) ends before offset \(offset)") }
        guard r.status == 206 || r.status == 200 else { throw error(r.status, r.body, key: s3.key(path), what: "GET") }
        let bytes = r.status == 200 ? Array(r.body.dropFirst(Int(offset)).prefix(length)) : r.body
        guard bytes.count == length else { throw RepositoryError(.corrupt, "\(location)/\(path) ends early: \(bytes.count) of \(length) bytes at offset \(offset) could be read") }
        return bytes
    }

    @discardableResult
    public func write(_ path: String, _ bytes: [UInt8], exclusive: Bool) throws(RepositoryError) -> Bool {
        var headers = lockHeaders(path)
        if exclusive {
            // Servers that ignore If-None-Match (older S3 APIs) still get a check first; the
            // conditional PUT is what closes the race where it is supported.
            if try info(path) != nil { return false }
            headers["if-none-match"] = "*"
        }
        let r = try putChecked(key: s3.key(path), headers: headers, body: bytes[...])
        if exclusive && r.status == 412 { return false }
        guard r.status == 200 else { throw error(r.status, r.body, key: s3.key(path), what: "PUT") }
        return true
    }

    /// A PUT with the body's checksum: `x-amz-checksum-sha256` while the server takes it,
    /// Content-MD5 from its first refusal on (the refused request is sent again that way).
    func putChecked(key: String, headers: [String: String], body: ArraySlice<UInt8>) throws(RepositoryError) -> Response {
        if flexibleChecksums.withLock({ $0 }) {
            let r = try put(key: key, headers: headers, body: body, flexible: true)
            guard Self.refusesChecksums(r) else { return r }
            flexibleChecksums.withLock { $0 = false }
        }
        return try put(key: key, headers: headers, body: body, flexible: false)
    }

    /// One PUT with the body's checksum: `x-amz-checksum-sha256` when `flexible`, else
    /// Content-MD5.
    func put(key: String, query: [(String, String)] = [], headers: [String: String] = [:], body: ArraySlice<UInt8>, digest: SHA256.Digest? = nil,
             flexible: Bool) throws(RepositoryError) -> Response {
        if flexible { return try send("PUT", key: key, query: query, headers: headers, body: body, checksum: true, digest: digest) }
        var md5 = headers
        md5["content-md5"] = Data(Insecure.MD5.hash(data: body)).base64EncodedString()
        return try send("PUT", key: key, query: query, headers: md5, body: body, digest: digest)
    }

    /// Whether `r` is a server's refusal of the flexible-checksum headers themselves.
    static func refusesChecksums(_ r: Response) -> Bool {
        guard r.status == 400 || r.status == 501 else { return false }
        let text = String(decoding: r.body, as: UTF8.self)
        guard let code = XMLText.first("Code", in: text), ["InvalidArgument", "NotImplemented", "InvalidRequest"].contains(code) else { return false }
        return (XMLText.first("Message", in: text) ?? "").lowercased().contains("checksum")
    }

    public func delete(_ path: String) throws(RepositoryError) {
        let r = try send("DELETE", key: s3.key(path))
        guard r.status == 204 || r.status == 200 || r.status == 404 else { throw error(r.status, r.body, key: s3.key(path), what: "DELETE") }
    }

    public func writer(_ path: String) throws(RepositoryError) -> any StorageWriter { S3Writer(storage: self, path: path) }

    /// Nothing to do: a PUT that returned is durable.
    public func syncDirectories(_ dirs: [String]) throws(RepositoryError) {}

    public var isRemote: Bool { true }
}

extension S3Storage {
    /// The smallest part of a multipart upload (S3's own minimum is 5 MiB, but for the last).
    static let partSize = 8 << 20

    /// Byte ranges of the parts for an object of `count` bytes: as many parts as whole
    /// `partSize`s fit, in equal shares, so that a 16.3 MiB pack goes up in two parts of
    /// 8.15 MiB and not in 8 + 8 + 0.3 (a third request, billed, for a sliver).
    static func partRanges(_ count: Int) -> [Range<Int>] {
        let parts = max(1, count / partSize)
        let share = (count + parts - 1) / parts
        return (0..<parts).map { ($0 * share)..<min(count, ($0 + 1) * share) }
    }
    /// Objects this large go up in parts, several at once.
    static let multipartThreshold = 16 << 20

    /// Uploads `bytes` in parts, up to four in flight, each with its SHA-256 checksum (the
    /// upload declares the algorithm, and the completion lists each part's; Content-MD5 where
    /// the server refuses that), then completes the upload; on any failure the upload is
    /// aborted so no parts are left to pay for, and the object never appears.
    func putMultipart(_ path: String, _ bytes: [UInt8]) throws(RepositoryError) {
        let key = s3.key(path)
        let offered = flexibleChecksums.withLock { $0 }
        var start = try send("POST", key: key, query: [("uploads", "")], headers: lockHeaders(path).merging(offered ? ["x-amz-checksum-algorithm": "SHA256"] : [:]) { a, _ in a })
        let refused = offered && Self.refusesChecksums(start)
        if refused {
            flexibleChecksums.withLock { $0 = false }
            start = try send("POST", key: key, query: [("uploads", "")], headers: lockHeaders(path))
        }
        guard start.status == 200, let id = XMLText.first("UploadId", in: String(decoding: start.body, as: UTF8.self)) else {
            throw error(start.status, start.body, key: key, what: "CreateMultipartUpload")
        }
        let checked = offered && !refused
        let ranges = Self.partRanges(bytes.count)
        let count = ranges.count
        let results = LockedBox<[Int: Result<(etag: String, checksum: String), RepositoryError>]>([:])
        Threads.perform(min(4, count)) { [self] worker in
            for part in stride(from: worker, to: count, by: min(4, count)) {
                if results.withLock({ $0.values.contains { if case .failure = $0 { return true }; return false } }) { return }
                let slice = bytes[ranges[part]]
                let r: Result<(etag: String, checksum: String), RepositoryError>
                do throws(RepositoryError) {
                    let digest = SHA256.hash(data: slice)
                    let reply = try put(key: key, query: [("partNumber", String(part + 1)), ("uploadId", id)], body: slice, digest: digest, flexible: checked)
                    guard reply.status == 200, let etag = reply.headers["etag"] else { throw error(reply.status, reply.body, key: key, what: "UploadPart \(part + 1)") }
                    r = .success((etag, Data(digest).base64EncodedString()))
                } catch { r = .failure(error) }
                results.withLock { $0[part + 1] = r }
            }
        }
        let done = results.withLock { $0 }
        var etags: [(etag: String, checksum: String)] = []
        for n in 1...count {
            guard case .success(let etag)? = done[n] else {
                abandonUpload(key, id)
                if case .failure(let e)? = done[n] { throw e }
                throw RepositoryError(.io, "the multipart upload of \(location)/\(path) stopped before part \(n); it was aborted")
            }
            etags.append(etag)
        }
        let xml = "<CompleteMultipartUpload>" + etags.enumerated().map {
            "<Part><PartNumber>\($0.offset + 1)</PartNumber><ETag>\($0.element.etag)</ETag>" + (checked ? "<ChecksumSHA256>\($0.element.checksum)</ChecksumSHA256>" : "") + "</Part>"
        }.joined() + "</CompleteMultipartUpload>"
        let complete: Response
        do { complete = try send("POST", key: key, query: [("uploadId", id)], headers: ["content-type": "application/xml"], body: Array(xml.utf8)[...]) } catch { abandonUpload(key, id); throw error }
        // S3 can answer 200 with an error in the body.
        guard complete.status == 200, XMLText.first("Code", in: String(decoding: complete.body, as: UTF8.self)) == nil else {
            abandonUpload(key, id)
            throw error(complete.status, complete.body, key: key, what: "CompleteMultipartUpload")
        }
    }

    /// Aborts a multipart upload; fails when S3 does not confirm it (204, or 404 for one
    /// already gone).
    func abortUpload(_ key: String, _ id: String) throws(RepositoryError) {
        let r = try send("DELETE", key: key, query: [("uploadId", id)])
        guard r.status == 204 || r.status == 200 || r.status == 404 else { throw error(r.status, r.body, key: key, what: "AbortMultipartUpload") }
    }

    /// After a failed upload: its error is what the caller reports. An abort that fails too
    /// leaves the parts, which `check-repository` lists and `prune` aborts.
    func abandonUpload(_ key: String, _ id: String) {
        do { try abortUpload(key, id) } catch {}
    }

    /// Multipart uploads started under the repository and never completed or aborted (what a
    /// killed backup leaves): key and upload id.
    public func unfinishedUploads() throws(RepositoryError) -> [(key: String, uploadId: String)] {
        let r = try send("GET", key: nil, query: [("uploads", ""), ("prefix", s3.key(""))])
        guard r.status == 200 else { throw error(r.status, r.body, key: nil, what: "ListMultipartUploads") }
        return XMLText.all("Upload", in: String(decoding: r.body, as: UTF8.self)).compactMap { u in
            guard let k = XMLText.first("Key", in: u), let id = XMLText.first("UploadId", in: u) else { return nil }
            return (k, id)
        }
    }

    /// Aborts every unfinished upload under the repository; returns how many.
    public func abortUnfinishedUploads() throws(RepositoryError) -> Int {
        let left = try unfinishedUploads()
        for u in left { try abortUpload(u.key, u.uploadId) }
        return left.count
    }
}

/// A pack bound for S3: kept in memory (packs are 16 MiB) and uploaded on `commit`, in parts
/// when large.
final class S3Writer: StorageWriter, @unchecked Sendable {   // one owner at a time
    let storage: S3Storage
    let path: String
    private var buffer: [UInt8] = []
    var size: Int64 { Int64(buffer.count) }

    init(storage: S3Storage, path: String) { self.storage = storage; self.path = path }

    func append(_ bytes: UnsafeRawBufferPointer) throws(RepositoryError) { buffer.append(contentsOf: bytes) }
    func commit() throws(RepositoryError) {
        if buffer.count >= S3Storage.multipartThreshold { try storage.putMultipart(path, buffer) } else { _ = try storage.write(path, buffer, exclusive: false) }
        buffer = []
    }
    func abort() {
        buffer = []
        try? storage.delete(path)
    }
}

/// Minimal reading of S3's XML replies: the text of elements, entities decoded.
enum XMLText {
    static func all(_ tag: String, in text: String) -> [String] {
        var out: [String] = []
        var rest = text[...]
        while let open = rest.range(of: "<\(tag)>"), let close = rest.range(of: "</\(tag)>", range: open.upperBound..<rest.endIndex) {
            out.append(unescape(String(rest[open.upperBound..<close.lowerBound])))
            rest = rest[close.upperBound...]
        }
        return out
    }

    static func first(_ tag: String, in text: String) -> String? { all(tag, in: text).first }

    static func unescape(_ s: String) -> String {
        s.replacingOccurrences(of: "&lt;", with: "<").replacingOccurrences(of: "&gt;", with: ">").replacingOccurrences(of: "&quot;", with: "\"")
            .replacingOccurrences(of: "&apos;", with: "'").replacingOccurrences(of: "&#13;", with: "\r").replacingOccurrences(of: "&amp;", with: "&")
    }
}
