import CEL
import Crypto
import Foundation

/// AWS credentials for signing: an access key, its secret, and for temporary credentials a
/// session token. `description` never shows the secret.
public struct AWSCredentials: Sendable, CustomStringConvertible {
    public var accessKeyId: String
    public var secretAccessKey: String
    public var sessionToken: String?
    public init(accessKeyId: String, secretAccessKey: String, sessionToken: String? = nil) {
        self.accessKeyId = accessKeyId; self.secretAccessKey = secretAccessKey; self.sessionToken = sessionToken
    }
    public var description: String { "access key \(accessKeyId)" }
}

/// AWS Signature Version 4 (docs.aws.amazon.com, "Signing AWS API requests"), on swift-crypto's
/// HMAC-SHA256 and SHA-256. Payloads are always signed: the caller passes the body's SHA-256
/// as `x-amz-content-sha256`, never `UNSIGNED-PAYLOAD`.
public enum SigV4 {
    /// RFC 3986 unreserved characters pass; everything else is %XX (uppercase). In a path,
    /// `/` passes too (S3 does not double-encode).
    public static func encode(_ s: String, slash: Bool = false) -> String {
        var out = ""
        for b in s.utf8 {
            let c = Character(Unicode.Scalar(b))
            if (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || (b >= 0x30 && b <= 0x39) || "-_.~".contains(c) || (slash && b == 0x2F) {
                out.append(c)
            } else {
                out += String(format: "%%%02X", b)
            }
        }
        return out
    }

    static func hex(_ d: some Sequence<UInt8>) -> String { JSONWriter.hex(Array(d)) }

    public static func sha256Hex(_ data: some DataProtocol) -> String { hex(SHA256.hash(data: data)) }

    static func hmac(_ key: [UInt8], _ text: String) -> [UInt8] {
        Array(HMAC<SHA256>.authenticationCode(for: Array(text.utf8), using: SymmetricKey(data: key)))
    }

    /// The signing key for a day, region and service.
    public static func signingKey(secret: String, date: String, region: String, service: String) -> [UInt8] {
        let kDate = hmac(Array(("AWS4" + secret).utf8), date)
        return hmac(hmac(hmac(kDate, region), service), "aws4_request")
    }

    /// The canonical request: method, encoded path, sorted encoded query, sorted lower-case
    /// headers with trimmed values, the signed header names, and the payload hash.
    public static func canonicalRequest(method: String, path: String, query: [(String, String)], headers: [String: String], payloadHash: String) -> (text: String, signedHeaders: String) {
        let q = query.map { (encode($0.0), encode($0.1)) }.sorted { ($0.0, $0.1) < ($1.0, $1.1) }.map { "\($0.0)=\($0.1)" }.joined(separator: "&")
        let h = headers.map { ($0.key.lowercased(), $0.value.split(separator: " ", omittingEmptySubsequences: true).joined(separator: " ")) }.sorted { $0.0 < $1.0 }
        let signed = h.map(\.0).joined(separator: ";")
        let text = [method, encode(path, slash: true), q, h.map { "\($0.0):\($0.1)\n" }.joined(), signed, payloadHash].joined(separator: "\n")
        return (text, signed)
    }

    /// Signs a request: returns the `Authorization` header value. `headers` must include
    /// `host`, `x-amz-date` and `x-amz-content-sha256` (and `x-amz-security-token` for
    /// temporary credentials); every header given is signed.
    public static func authorization(method: String, path: String, query: [(String, String)], headers: [String: String], payloadHash: String,
                                     credentials: AWSCredentials, region: String, service: String = "s3", amzDate: String) -> String {
        let (canonical, signed) = canonicalRequest(method: method, path: path, query: query, headers: headers, payloadHash: payloadHash)
        let day = String(amzDate.prefix(8))
        let scope = "\(day)/\(region)/\(service)/aws4_request"
        let toSign = ["AWS4-HMAC-SHA256", amzDate, scope, sha256Hex(Array(canonical.utf8))].joined(separator: "\n")
        let signature = hex(hmac(signingKey(secret: credentials.secretAccessKey, date: day, region: region, service: service), toSign))
        return "AWS4-HMAC-SHA256 Credential=\(credentials.accessKeyId)/\(scope), SignedHeaders=\(signed), Signature=\(signature)"
    }

    /// `20130524T000000Z`, as `x-amz-date` wants it.
    public static func amzDate(_ d: Date) -> String {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "yyyyMMdd'T'HHmmss'Z'"
        return f.string(from: d)
    }
}
