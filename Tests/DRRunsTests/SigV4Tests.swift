import Foundation
import Testing
@testable import DRRuns

/// SigV4 against known answers. The AWS test suite's own files cannot be committed here, so
/// these cases were computed with botocore 1.43 (`S3SigV4Auth.canonical_request`,
/// `string_to_sign` and `signature`, the implementation the AWS CLI uses), on AWS's documented
/// example credentials and date; the real check is moto verifying every request's signature.
@Suite("SigV4")
struct SigV4Tests {
    static let credentials = AWSCredentials(accessKeyId: "AKIAIOSFODNN7EXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    static let date = "20130524T000000Z"
    static let empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

    struct Case: Sendable, CustomTestStringConvertible {
        var method: String, host: String, path: String, query: [(String, String)], headers: [String: String], body: String, signature: String
        var testDescription: String { "\(method) \(path)" }
    }

    static let cases: [Case] = [
        Case(method: "GET", host: "examplebucket.s3.amazonaws.com", path: "/test.txt", query: [], headers: ["range": "bytes=0-9"], body: "",
             signature: "67fe34c8530db585abddc51067328adfedb6e42487d2566dc7d927d6e2722900"),
        Case(method: "PUT", host: "examplebucket.s3.amazonaws.com", path: "/test$file.text", query: [],
             headers: ["date": "Fri, 24 May 2013 00:00:00 GMT", "x-amz-storage-class": "REDUCED_REDUNDANCY"], body: "Welcome to Amazon S3.",
             signature: "7c0f3caf24a16d5948905b8ebf67d29fb415e93fddaed9ca6aeb5ac2348cfee4"),
        Case(method: "GET", host: "examplebucket.s3.amazonaws.com", path: "/", query: [("max-keys", "2"), ("prefix", "J")], headers: [:], body: "",
             signature: "b331a8a008500e1d26eaac3f17e064ed30785ac0cd1bed5e2acc9565175a7d92"),
        Case(method: "GET", host: "127.0.0.1:5000", path: "/bucket", query: [("list-type", "2"), ("prefix", "a/b/"), ("delimiter", "/"), ("continuation-token", "x+y=")],
             headers: [:], body: "", signature: "936137540253420c4605d0196f8d930e71975d38011978de079f16dd492d8626"),
        Case(method: "DELETE", host: "127.0.0.1:5000", path: "/bucket/repo/packs/ab/ab12", query: [], headers: [:], body: "",
             signature: "9a6e93f901a79b55e7e01d8fd74873a5f030e5a42c6ef97e530bac494ac4134d"),
    ]

    @Test("signatures match botocore's", arguments: cases)
    func signature(_ c: Case) {
        var headers = c.headers
        headers["host"] = c.host
        headers["x-amz-date"] = Self.date
        let hash = SigV4.sha256Hex(Array(c.body.utf8))
        headers["x-amz-content-sha256"] = hash
        let auth = SigV4.authorization(method: c.method, path: c.path, query: c.query, headers: headers, payloadHash: hash,
                                       credentials: Self.credentials, region: "us-east-1", amzDate: Self.date)
        #expect(auth.hasSuffix("Signature=" + c.signature), "\(auth)")
        #expect(auth.hasPrefix("AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, SignedHeaders="))
    }

    @Test("the signing key of AWS's documented example")
    func signingKey() {
        // docs.aws.amazon.com, "Derive a signing key": 20120215, us-east-1, iam.
        let k = SigV4.signingKey(secret: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", date: "20120215", region: "us-east-1", service: "iam")
        #expect(SigV4.hex(k) == "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d")
    }
}
