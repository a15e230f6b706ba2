import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix

/// Blocking HTTP for the S3 storage, over swift-server's async-http-client: the repository
/// code is synchronous, so each worker thread sends its request and waits for the reply, while
/// NIO's event loops move the bytes.
///
/// Why not FoundationNetworking's URLSession, which this replaced: on Linux it runs over
/// libcurl and hands each received chunk to a dispatch callback that appends it to an
/// `NSMutableData`. A profile of a restore from S3 had 14% of its samples in those callbacks
/// and 7% more in copying response bodies; with async-http-client a response arrives in one
/// buffer (measured side by side in docs/benchmarks.md, "S3"). The `Host` header that was
/// signed is sent as given.
final class HTTPTransport: Sendable {
    struct Reply: Sendable { var status: Int; var headers: [String: String]; var body: [UInt8] }

    /// The process's clients, one per proxy (direct under ""), never shut down:
    /// async-http-client requires a shutdown before a client is released, and these live as
    /// long as the process. Redirects are not followed: S3 answers a wrong region with 301,
    /// which is an error to report, not to chase with a signature made for another host.
    static let shared = HTTPTransport()

    private let clients = LockedBox<[String: HTTPClient]>([:])

    private init() {}

    private func client(for url: URL) throws -> HTTPClient {
        let proxy = try Self.proxy(for: url, environment: ProcessInfo.processInfo.environment)
        let key = proxy.map { "\($0.host):\($0.port):\($0.credentials ?? "")" } ?? ""
        return clients.withLock { clients in
            if let c = clients[key] { return c }
            var config = HTTPClient.Configuration(redirectConfiguration: .disallow, timeout: .init(connect: .seconds(15), read: .seconds(120)),
                                                  connectionPool: .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: 16),
                                                  proxy: proxy.map { p in .server(host: p.host, port: p.port, authorization: p.credentials.map { .basic(credentials: $0) }) },
                                                  decompression: .disabled)
            config.httpVersion = .http1Only
            let c = HTTPClient(eventLoopGroupProvider: .singleton, configuration: config)
            clients[key] = c
            return c
        }
    }

    /// The HTTP proxy for `url` from the environment, as curl and Go's net/http read it
    /// (URLSession, which this replaced, honoured it through libcurl): `https_proxy` or
    /// `HTTPS_PROXY` for https, `http_proxy` or `HTTP_PROXY` for http, none for a host that
    /// `no_proxy`/`NO_PROXY` names (a name, a `.domain` or `domain` suffix, or `*`), and none
    /// for loopback. `credentials` is `user:password` in the clear, for Basic authorization.
    /// A variable that is set but names no proxy is an error, not a reason to go direct (its
    /// value is not repeated: it may hold a password).
    static func proxy(for url: URL, environment env: [String: String]) throws -> (host: String, port: Int, credentials: String?)? {
        guard let host = url.host?.lowercased(), !S3Location.loopbackHosts.contains(host) else { return nil }
        let names = url.scheme == "http" ? ["http_proxy", "HTTP_PROXY"] : ["https_proxy", "HTTPS_PROXY"]
        guard let name = names.first(where: { !(env[$0] ?? "").isEmpty }), let value = env[name] else { return nil }
        let skip = (env["no_proxy"] ?? env["NO_PROXY"] ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
        for entry in skip where !entry.isEmpty {
            let domain = entry.hasPrefix(".") ? String(entry.dropFirst()) : entry
            if entry == "*" || host == domain || host.hasSuffix("." + domain) { return nil }
        }
        guard let proxy = URL(string: value.contains("://") ? value : "http://" + value), proxy.scheme == "http", let proxyHost = proxy.host, !proxyHost.isEmpty else {
            throw TransportError("the environment variable \(name) is set but is not an http proxy (http://HOST:PORT); fix it, or unset it to connect directly", permanent: true)
        }
        let credentials = proxy.user.map { user in (user.removingPercentEncoding ?? user) + ":" + ((proxy.password?.removingPercentEncoding) ?? proxy.password ?? "") }
        return (proxyHost, proxy.port ?? 80, credentials)
    }

    /// Sends one request and waits for the whole reply, at most `timeout` seconds. Never call
    /// it from an event loop (the repository's worker threads are plain threads).
    func send(method: String, url: String, headers: [String: String], body: ArraySlice<UInt8>?, timeout: TimeInterval) -> Result<Reply, any Error> {
        do {
            var fields = HTTPHeaders()
            for (k, v) in headers { fields.add(name: k, value: v) }
            guard let target = URL(string: url) else { throw HTTPClientError.invalidURL }
            let request = try HTTPClient.Request(url: target, method: HTTPMethod(rawValue: method), headers: fields,
                                                 body: body.map { .byteBuffer(ByteBuffer(bytes: $0)) })
            let collector = Collector(expectBody: method != "HEAD")
            let reply = try client(for: target).execute(request: request, delegate: collector, deadline: .now() + .milliseconds(Int64(timeout * 1000))).wait()
            return .success(reply)
        } catch let error as TransportError {
            return .failure(error)
        } catch {
            return .failure(TransportError(Self.describe(error, timeout: timeout)))
        }
    }

    /// A failed exchange, in words for the message that names the bucket and key. `permanent`:
    /// a retry cannot cure it (the machine's own configuration is wrong).
    struct TransportError: Error, CustomStringConvertible {
        let description: String
        var permanent = false
        init(_ d: String, permanent: Bool = false) { description = d; self.permanent = permanent }
    }

    /// async-http-client's errors print as type names ("HTTPClientError.deadlineExceeded");
    /// these are the ones a user meets, said plainly.
    static func describe(_ error: any Error, timeout: TimeInterval) -> String {
        if let e = error as? HTTPClientError {
            switch e {
            case .deadlineExceeded, .readTimeout: return "no complete reply within \(Int(timeout)) s"
            case .connectTimeout: return "the connection timed out"
            case .remoteConnectionClosed: return "the server closed the connection before replying"
            case .invalidURL: return "the request URL is not valid"
            default: return String(describing: e)
            }
        }
        if let e = error as? NIOConnectionError {
            let why = e.connectionErrors.map { describe($0.error, timeout: timeout) } + [e.dnsAError, e.dnsAAAAError].compactMap { $0.map { "name lookup failed: \($0)" } }
            return "cannot connect to \(e.host):\(e.port)" + (why.isEmpty ? "" : " (" + Set(why).sorted().joined(separator: "; ") + ")")
        }
        if let e = error as? IOError { return String(cString: strerror(e.errnoCode)) }
        return String(describing: error)
    }
}

/// Gathers a reply into one array sized from its Content-Length, so a 16 MiB pack is copied
/// once out of NIO's buffers (a growing ByteBuffer, then Data, then an array, were three).
/// Each request has its own collector, touched only on that request's event loop.
private final class Collector: HTTPClientResponseDelegate, @unchecked Sendable {
    typealias Response = HTTPTransport.Reply
    private let expectBody: Bool
    private var status = 0
    private var headers: [String: String] = [:]
    private var body: [UInt8] = []

    init(expectBody: Bool) { self.expectBody = expectBody }

    func didReceiveHead(task: HTTPClient.Task<Response>, _ head: HTTPResponseHead) -> EventLoopFuture<Void> {
        status = Int(head.status.code)
        for (k, v) in head.headers { headers[k.lowercased()] = headers[k.lowercased()].map { $0 + "," + v } ?? v }
        // A declared length is only a capacity hint, capped so a hostile header cannot make
        // the client reserve gigabytes; the bytes that arrive are what count.
        if expectBody, let n = headers["content-length"].flatMap(Int.init), n > 0 { body.reserveCapacity(min(n, 64 << 20)) }
        return task.eventLoop.makeSucceededVoidFuture()
    }

    /// No reply drplan asks for comes near this (a pack is 16 MiB, a listing page 1,000 keys,
    /// a snapshot at most 1 GiB decoded); a server that sends more is refused before it fills
    /// the memory.
    static let maxBody = 1 << 31

    func didReceiveBodyPart(task: HTTPClient.Task<Response>, _ buffer: ByteBuffer) -> EventLoopFuture<Void> {
        guard body.count + buffer.readableBytes <= Self.maxBody else {
            return task.eventLoop.makeFailedFuture(HTTPTransport.TransportError("the server's reply is larger than \(Self.maxBody >> 20) MiB, more than any object drplan stores"))
        }
        body.append(contentsOf: buffer.readableBytesView)
        return task.eventLoop.makeSucceededVoidFuture()
    }

    func didFinishRequest(task: HTTPClient.Task<Response>) throws -> Response { Response(status: status, headers: headers, body: body) }
}
