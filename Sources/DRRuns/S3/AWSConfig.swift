import Foundation

/// The AWS CLI's own places for credentials and the region, read the way it reads them.
enum AWSConfig {
    static var env: [String: String] { ProcessInfo.processInfo.environment }

    static func fromEnvironment() -> AWSCredentials? {
        guard let id = env["AWS_ACCESS_KEY_ID"], !id.isEmpty, let secret = env["AWS_SECRET_ACCESS_KEY"], !secret.isEmpty else { return nil }
        return AWSCredentials(accessKeyId: id, secretAccessKey: secret, sessionToken: env["AWS_SESSION_TOKEN"].flatMap { $0.isEmpty ? nil : $0 })
    }

    /// The AWS_PROFILE (or `default`) section of ~/.aws/credentials (AWS_SHARED_CREDENTIALS_FILE).
    /// A file that is not there is no credentials; one that cannot be read is an error.
    static func fromProfile() throws(RepositoryError) -> AWSCredentials? {
        let path = env["AWS_SHARED_CREDENTIALS_FILE"] ?? expandTilde("~/.aws/credentials")
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        guard let data = FileManager.default.contents(atPath: path) else { throw RepositoryError(.config, "cannot read \(path); check its permissions") }
        let section = ini(String(decoding: data, as: UTF8.self))[env["AWS_PROFILE"] ?? "default"] ?? [:]
        guard let id = section["aws_access_key_id"], let secret = section["aws_secret_access_key"] else { return nil }
        return AWSCredentials(accessKeyId: id, secretAccessKey: secret, sessionToken: section["aws_session_token"])
    }

    /// AWS_REGION, AWS_DEFAULT_REGION, then the profile's `region` in ~/.aws/config.
    static func region() -> String? {
        if let r = env["AWS_REGION"] ?? env["AWS_DEFAULT_REGION"], !r.isEmpty { return r }
        let path = env["AWS_CONFIG_FILE"] ?? expandTilde("~/.aws/config")
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        let profile = env["AWS_PROFILE"] ?? "default"
        let sections = ini(String(decoding: data, as: UTF8.self))
        return (sections[profile == "default" ? "default" : "profile " + profile] ?? sections[profile])?["region"]
    }

    /// `[section]` and `key = value` lines; `#` and `;` start comments.
    static func ini(_ text: String) -> [String: [String: String]] {
        var out: [String: [String: String]] = [:]
        var current = ""
        for raw in text.split(whereSeparator: \.isNewline) {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") || line.hasPrefix(";") { continue }
            if line.hasPrefix("["), line.hasSuffix("]") { current = String(line.dropFirst().dropLast()).trimmingCharacters(in: .whitespaces); continue }
            guard let eq = line.firstIndex(of: "=") else { continue }
            out[current, default: [:]][line[..<eq].trimmingCharacters(in: .whitespaces)] = line[line.index(after: eq)...].trimmingCharacters(in: .whitespaces)
        }
        return out
    }
}
