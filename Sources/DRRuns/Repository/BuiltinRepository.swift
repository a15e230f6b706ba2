import CEL
import Crypto
import _CryptoExtras
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// drplan's own backup repository (docs/repository-format.md): content-addressed,
/// deduplicated, optionally encrypted with AES-256-GCM under a scrypt-derived key, every
/// object authenticated, every write crash-safe.
///
/// The repository sits on a `RepositoryStorage` and never touches files itself; the code is
/// split as restic's is: this file holds keys, objects and the index, and extensions hold
/// the archiver (backup), restorer, checker, pruner, repair and locks.
public final class BuiltinRepository: @unchecked Sendable {
    public let storage: any RepositoryStorage
    /// The repository's root on a local filesystem (messages, tests).
    public var root: URL { URL(fileURLWithPath: storage.location) }
    let encKey: SymmetricKey?
    let idKey: SymmetricKey?
    public static let chunkSize = 1 << 20
    /// The format this code creates. Version 1 stored each object as its own file under
    /// `data/`; version 2 packs them; version 3 adds a codec byte to every data object and
    /// snapshot, and compresses them with zstd (docs/repository-format.md). Version 1
    /// repositories are upgraded to version 2 by their next backup, their loose objects kept.
    /// Version 2 repositories stay version 2, as restic's v1 repositories stay uncompressed
    /// until migrated: their objects have no codec byte, and mixing both in one repository
    /// would make every read guess.
    public static let formatVersion = 3
    /// The version a version-1 repository is upgraded to: packs, without codec bytes.
    static let packedVersion = 2
    /// From this format on, a config without its `mac` is damaged, not old.
    static let macRequiredVersion = 3
    /// Whether objects and snapshot entries carry a codec byte (format 3 on).
    var framesObjects: Bool { config.version >= 3 }
    /// A pack is closed once it holds this many bytes. Fewer, larger files: creating one
    /// inode per 1 MiB chunk was a third of a version-1 backup's time.
    var packTarget: UInt32 = 16 << 20
    var config: Config
    let indexLock = NSLock()
    /// Every indexed object's location, loaded from `index/` when the repository is opened.
    var blobIndex: [String: BlobLocation] = [:]
    /// Index files that could not be read when the index was loaded; their packs were read
    /// from the packs' own trailers instead.
    public private(set) var indexProblems: [String] = []
    /// Objects found damaged or missing, as `id.pack`: never deduplicated against again.
    var quarantined = Set<String>()

    struct Config: Codable {
        var version: Int
        var encryption: String
        var kdf: KDFParams?
        var keyCheck: String?
        /// A random id, so the evidence store can tell repositories apart (absent before it existed).
        var id: String?
        /// Authenticates every other field: HMAC-SHA256 under the id key when encrypted, SHA-256
        /// otherwise (absent in repositories written before it existed). Without it a flipped
        /// byte in `id` would go unnoticed.
        var mac: String?
        struct KDFParams: Codable { var name: String; var n: Int; var r: Int; var p: Int; var salt: String }
    }

    /// The `mac` of a config: over its canonical JSON (sorted keys) without the mac itself.
    static func configMAC(_ c: Config, idKey: SymmetricKey?) throws(RepositoryError) -> String {
        var bare = c
        bare.mac = nil
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        let data = try Self.io { try enc.encode(bare) }
        if let idKey { return JSONWriter.hex(HMAC<SHA256>.authenticationCode(for: Array("config:".utf8) + data, using: idKey)) }
        return JSONWriter.hex(SHA256.hash(data: data))
    }

    static func damagedConfig(_ storage: any RepositoryStorage) -> RepositoryError {
        RepositoryError(.corrupt, "the repository's 'config' at \(storage.location)/config is damaged (it fails its checksum); copy it back from another copy of this repository")
    }

    init(storage: any RepositoryStorage, encKey: SymmetricKey?, idKey: SymmetricKey?, config: Config) {
        self.storage = storage
        self.encKey = encKey
        self.idKey = idKey
        self.config = config
    }

    /// The repository's id: the one in `config`, or for repositories written before ids
    /// existed, one derived from the config's key parameters (stable, and unique per repository).
    public var id: String {
        if let id = config.id { return id }
        return String(JSONWriter.hex(SHA256.hash(data: Data(((config.kdf?.salt ?? "") + (config.keyCheck ?? "")).utf8))).prefix(32))
    }

    /// The format version in the repository's `config`.
    public var version: Int { config.version }

    static let directories = ["packs", "index", "snapshots", "locks"]

    // MARK: create and open

    /// Creates a repository in `root`, whose parent must exist; a repository already there is
    /// an error. For tests and `drplan init-repository`; backups use `create(storage:…)`.
    public static func initialize(at root: URL, passphrase: String?, kdfRounds: Int = 1 << 15) throws(RepositoryError) -> BuiltinRepository {
        if mkdir(root.path, 0o700) != 0 && errno != EEXIST { throw LocalStorage.failure("create", root.path, errno: errno) }
        let (repo, created) = try create(storage: LocalStorage(root: root.path), passphrase: passphrase, kdfRounds: kdfRounds)
        guard created else { throw RepositoryError(.alreadyExists, "a repository already exists at \(root.path)") }
        return repo
    }

    /// Opens the repository in `storage`, or creates it when there is none. Creation is atomic:
    /// `config` is written exclusively, so of two processes racing to create one, one writes
    /// it and the other opens what the first wrote; both end with the same repository.
    /// Returns whether this call created it. A repository whose `config` was lost is never
    /// re-created: that would give its data a new key.
    public static func create(storage: any RepositoryStorage, passphrase: String?, kdfRounds: Int = 1 << 15) throws(RepositoryError) -> (BuiltinRepository, created: Bool) {
        try create(storage: storage, passphrase: passphrase, kdfRounds: kdfRounds, version: formatVersion)
    }

    /// `version` below the current one is for tests of older repositories.
    static func create(storage: any RepositoryStorage, passphrase: String?, kdfRounds: Int, version: Int) throws(RepositoryError) -> (BuiltinRepository, created: Bool) {
        if try storage.info("config") != nil { return (try open(storage: storage, passphrase: passphrase), false) }
        try refuseOrphanedData(storage)
        if let local = storage as? LocalStorage { for d in directories { try local.makeDirectory(d) } }
        var config = Config(version: version, encryption: "none", kdf: nil, keyCheck: nil, id: JSONWriter.hex(randomBytes(16)))
        var repo = BuiltinRepository(storage: storage, encKey: nil, idKey: nil, config: config)
        if let passphrase {
            let salt = randomBytes(32)
            let params = Config.KDFParams(name: "scrypt", n: kdfRounds, r: 8, p: 1, salt: Data(salt).base64EncodedString())
            let (enc, id) = try deriveKeys(passphrase, params)
            config.encryption = "aes-256-gcm"
            config.kdf = params
            repo = BuiltinRepository(storage: storage, encKey: enc, idKey: id, config: config)
            config.keyCheck = try repo.seal(Array("drplan-repository".utf8), aad: Array("config".utf8)).base64EncodedString()
            repo.config = config
        }
        config.mac = try configMAC(config, idKey: repo.idKey)
        repo.config = config
        let data = try Self.io { try JSONEncoder().encode(config) }
        if try storage.write("config", [UInt8](data), exclusive: true) { return (repo, true) }
        return (try open(storage: storage, passphrase: passphrase), false)
    }

    /// A repository folder that holds data but no `config` has lost its key parameters.
    static func refuseOrphanedData(_ storage: any RepositoryStorage) throws(RepositoryError) {
        for dir in ["snapshots", "index", "packs", "data"] {
            let names: [String]
            do { names = try storage.list(dir) } catch where error.kind == .missing { continue }
            if !names.isEmpty {
                throw RepositoryError(.corrupt, "the repository at \(storage.location) has lost its 'config' file, which holds its format and key parameters, but its '\(dir)' folder still holds data; copy 'config' back from another copy of this repository (drplan never writes a new one over existing data: that would make it unreadable)")
            }
        }
    }

    /// Opens a repository at a local path; see `open(storage:passphrase:)`.
    public static func open(at root: URL, passphrase: String?) throws(RepositoryError) -> BuiltinRepository {
        try open(storage: LocalStorage(root: root.path), passphrase: passphrase)
    }

    /// Opens a repository without writing anything; a wrong passphrase is a permanent error,
    /// checked before anything else is read. A missing repository is `.notARepository`, and a
    /// missing or damaged `config` beside existing data is `.corrupt`, naming the file.
    public static func open(storage: any RepositoryStorage, passphrase: String?) throws(RepositoryError) -> BuiltinRepository {
        let data: [UInt8]
        do { data = try storage.read("config") } catch where error.kind == .missing {
            try refuseOrphanedData(storage)
            throw RepositoryError(.notARepository, "\(storage.location) holds no drplan repository (no 'config' file)")
        }
        guard let config = try? JSONDecoder().decode(Config.self, from: Data(data)) else {
            throw RepositoryError(.corrupt, "the repository's 'config' at \(storage.location)/config is damaged (it is not valid JSON); copy it back from another copy of this repository")
        }
        guard (1...formatVersion).contains(config.version) else {
            // A newer drplan, or a damaged config (the version digit is under the mac too, but
            // the mac of a newer format cannot be judged here): the message says both.
            throw RepositoryError(.notARepository, "the repository's 'config' at \(storage.location)/config says format version \(config.version), which this drplan does not read (it reads 1 to \(formatVersion)): upgrade drplan, or, if no newer drplan wrote it, the config is damaged; copy it back from another copy of this repository")
        }
        // Every repository of format 3 was written with a mac: one without is damage (a flipped
        // byte in the key name "mac" would otherwise switch the check off). Older formats may
        // predate it.
        if config.version >= Self.macRequiredVersion && config.mac == nil { throw damagedConfig(storage) }
        guard config.encryption == "aes-256-gcm" else {
            guard config.encryption == "none" else { throw RepositoryError(.corrupt, "the repository's 'config' at \(storage.location) names an unknown encryption '\(config.encryption)'") }
            if let mac = config.mac, try mac != configMAC(config, idKey: nil) { throw damagedConfig(storage) }
            let repo = BuiltinRepository(storage: storage, encKey: nil, idKey: nil, config: config)
            try repo.loadIndex()
            return repo
        }
        guard let params = config.kdf, let check = config.keyCheck.flatMap({ Data(base64Encoded: $0) }) else {
            throw RepositoryError(.corrupt, "the repository's 'config' at \(storage.location) is encrypted but lacks its key parameters; copy it back from another copy of this repository")
        }
        guard let passphrase else { throw RepositoryError(.passphraseRequired, "the repository at \(storage.location) is encrypted; give the job's passphrase secret (encryption.passphrase)") }
        let (enc, id) = try deriveKeys(passphrase, params)
        let repo = BuiltinRepository(storage: storage, encKey: enc, idKey: id, config: config)
        guard (try? repo.open(check, aad: Array("config".utf8))) == Array("drplan-repository".utf8) else {
            throw RepositoryError(.wrongPassphrase, "wrong passphrase for the repository at \(storage.location) (or its 'config' file is damaged); nothing was read or written")
        }
        if let mac = config.mac, try mac != configMAC(config, idKey: id) { throw damagedConfig(storage) }
        try repo.loadIndex()
        return repo
    }

    /// A version-1 repository becomes version 2 before its first pack is written, so an older
    /// drplan refuses it rather than reporting the packed objects as missing.
    func upgradeFormat() throws(RepositoryError) {
        guard config.version < Self.packedVersion else { return }
        if let local = storage as? LocalStorage { for d in Self.directories { try local.makeDirectory(d) } }
        var upgraded = config
        upgraded.version = Self.packedVersion
        upgraded.mac = try Self.configMAC(upgraded, idKey: idKey)
        let data = try Self.io { try JSONEncoder().encode(upgraded) }
        try storage.write("config", [UInt8](data), exclusive: false)
        config = upgraded
    }

    static func deriveKeys(_ passphrase: String, _ p: Config.KDFParams) throws(RepositoryError) -> (SymmetricKey, SymmetricKey) {
        // Out-of-range parameters are damage, not a reason to allocate gigabytes.
        guard let salt = Data(base64Encoded: p.salt), p.name == "scrypt", (1...(1 << 22)).contains(p.n), p.n & (p.n - 1) == 0, (1...32).contains(p.r), (1...16).contains(p.p) else {
            throw RepositoryError(.corrupt, "the repository's key parameters in 'config' are damaged; copy 'config' back from another copy of this repository")
        }
        do {
            let key = try KDF.Scrypt.deriveKey(from: Array(passphrase.utf8), salt: salt, outputByteCount: 64, rounds: p.n, blockSize: p.r, parallelism: p.p)
            let bytes = key.withUnsafeBytes { Array($0) }
            return (SymmetricKey(data: bytes[0..<32]), SymmetricKey(data: bytes[32..<64]))
        } catch {
            throw RepositoryError(.corrupt, "key derivation from the parameters in 'config' failed (\(error)); the file may be damaged")
        }
    }

    // MARK: objects

    /// Keyed with the repository's id key when encrypted, so ids reveal nothing about content.
    func objectId(_ plaintext: some DataProtocol) -> String {
        if let idKey { return JSONWriter.hex(HMAC<SHA256>.authenticationCode(for: plaintext, using: idKey)) }
        return JSONWriter.hex(SHA256.hash(data: plaintext))
    }

    /// Where a version-1 repository kept an object, as a file of its own.
    func objectPath(_ id: String) -> String { "data/\(id.prefix(2))/\(id)" }
    func packPath(_ pack: String) -> String { "packs/\(pack.prefix(2))/\(pack)" }
    func objectURL(_ id: String) -> URL { root.appendingPathComponent(objectPath(id)) }
    func packURL(_ pack: String) -> URL { root.appendingPathComponent(packPath(pack)) }

    /// Where an object is stored, or nil when no index names it.
    public func location(_ id: String) -> BlobLocation? { indexLock.withLock { blobIndex[id] } }

    /// Index files, oldest first: by modification time, then name. Later entries win, so
    /// when an object was stored again (its first pack lost or damaged), the newest copy is
    /// the one read and deduplicated against.
    func indexFiles() throws(RepositoryError) -> [String] {
        let names: [String]
        do { names = try storage.list("index") } catch where error.kind == .missing && config.version == 1 { return [] }
        var dated: [(name: String, at: Date)] = []
        for n in names where PackCodec.isId(n) {
            guard let info = try storage.info("index/" + n) else { continue }   // removed by a prune since the listing
            dated.append((n, info.modified))
        }
        return dated.sorted { ($0.at, $0.name) < ($1.at, $1.name) }.map(\.name)
    }

    /// Reads every index file, in `indexFiles()` order. A damaged index file is reported in
    /// `indexProblems` and bypassed: the packs it would have named describe themselves in
    /// their trailers, which are read instead. A failed listing fails the open.
    func loadIndex() throws(RepositoryError) {
        var index: [String: BlobLocation] = [:]
        var problems: [String] = []
        var named = Set<String>()
        for name in try indexFiles() {
            do {
                for pack in try readIndexFile(name) {
                    named.insert(pack.pack)
                    for b in pack.blobs { index[b.id] = BlobLocation(pack: pack.pack, offset: b.offset, length: b.length) }
                }
            } catch where error.kind == .corrupt || error.kind == .missing {
                problems.append(error.message)
            }
        }
        if !problems.isEmpty {
            for pack in try packNames() where !named.contains(pack) {
                let contents: PackContents
                do { contents = try readTrailer(pack) } catch where error.kind == .corrupt || error.kind == .missing {
                    continue   // a pack with no valid trailer holds nothing readable; I/O errors still fail the open
                }
                for b in contents.blobs where index[b.id] == nil { index[b.id] = BlobLocation(pack: pack, offset: b.offset, length: b.length) }
            }
        }
        var bad = Set<String>()
        do { for n in try storage.list("damaged") { bad.insert(n) } } catch where error.kind == .missing {}
        indexLock.withLock {
            blobIndex = index
            indexProblems = problems
            quarantined = bad
        }
    }

    /// Every pack file in the repository, whether or not an index names it.
    func packNames() throws(RepositoryError) -> [String] {
        var out: [String] = []
        let fanout: [String]
        do { fanout = try storage.list("packs") } catch where error.kind == .missing && config.version == 1 { return [] }
        for dir in fanout { for name in try storage.list("packs/" + dir) where PackCodec.isId(name) { out.append(name) } }
        return out
    }

    func readIndexFile(_ name: String) throws(RepositoryError) -> [PackContents] {
        let path = "index/" + name
        let stored = try storage.read(path)
        guard let plain = try? open(stored, aad: Array(("index:" + name).utf8)), let packs = PackCodec.decode(plain) else {
            throw RepositoryError(.corrupt, "the index file \(storage.location)/\(path) is damaged (it fails authentication or cannot be decoded); 'drplan repair index' rebuilds the index from the packs")
        }
        return packs
    }

    /// A pack's own listing of its objects, from its sealed trailer.
    func readTrailer(_ pack: String) throws(RepositoryError) -> PackContents {
        let path = packPath(pack)
        guard let info = try storage.info(path) else { throw RepositoryError(.missing, "pack \(pack.prefix(12)) is missing") }
        guard info.size >= 4 else { throw RepositoryError(.corrupt, "pack \(pack.prefix(12)) is too short to hold a trailer") }
        var r = ByteReader(try storage.readRange(path, offset: info.size - 4, length: 4))
        guard let length = r.u32(), Int64(length) + 4 <= info.size else { throw RepositoryError(.corrupt, "pack \(pack.prefix(12)) has a damaged trailer length") }
        let sealed = try storage.readRange(path, offset: info.size - 4 - Int64(length), length: Int(length))
        guard let plain = try? open(sealed, aad: Array(("pack:" + pack).utf8)), let contents = PackCodec.decode(plain), contents.count == 1, contents[0].pack == pack else {
            throw RepositoryError(.corrupt, "pack \(pack.prefix(12)) has a damaged trailer")
        }
        return contents[0]
    }

    /// Written atomically, after the packs it names are durable.
    func writeIndex(_ packs: [PackContents]) throws(RepositoryError) -> String {
        let name = JSONWriter.hex(Self.randomBytes(32))
        let sealed = try seal(PackCodec.encode(packs), aad: Array(("index:" + name).utf8))
        try storage.write("index/" + name, [UInt8](sealed), exclusive: false)
        indexLock.withLock {
            for p in packs { for b in p.blobs { blobIndex[b.id] = BlobLocation(pack: p.pack, offset: b.offset, length: b.length) } }
        }
        return name
    }

    /// Records that the copy of `id` in `pack` is damaged or missing, so that no backup
    /// deduplicates against it again: the next backup that meets the data stores it afresh,
    /// and the newer index entry then wins. Best effort: a repository that cannot be written
    /// (a read-only mount) still reports the damage; the returned text says so.
    @discardableResult
    func quarantine(_ id: String, pack: String) -> String? {
        let name = id + "." + pack
        let known = indexLock.withLock { !quarantined.insert(name).inserted }
        if known { return nil }
        do {
            if let local = storage as? LocalStorage { try local.makeDirectory("damaged") }
            try storage.write("damaged/" + name, [], exclusive: false)
            return nil
        } catch {
            return "the damage could not be recorded in the repository (\(error.message)); run 'drplan repair index' once it is writable"
        }
    }

    func isQuarantined(_ id: String, _ loc: BlobLocation) -> Bool {
        indexLock.withLock { quarantined.contains(id + "." + loc.pack) }
    }

    func seal(_ plaintext: [UInt8], aad: [UInt8]) throws(RepositoryError) -> Data {
        guard let encKey else { return Data(plaintext) }
        do { return try AES.GCM.seal(plaintext, using: encKey, authenticating: aad).combined ?? Data() } catch {
            throw RepositoryError(.io, "encryption failed: \(error)")
        }
    }

    func open(_ stored: some DataProtocol, aad: [UInt8]) throws(RepositoryError) -> [UInt8] {
        guard let encKey else { return [UInt8](stored) }
        do {
            let box = try AES.GCM.SealedBox(combined: stored)
            return [UInt8](try AES.GCM.open(box, using: encKey, authenticating: aad))
        } catch {
            throw RepositoryError(.corrupt, "object failed authentication")
        }
    }

    /// Reads and authenticates an object: a flipped bit, a truncation or a missing file is an
    /// error, and the damaged copy is quarantined. Encrypted, AES-GCM's tag covers the
    /// ciphertext and the id (as associated data), which only the key's holder can produce, so
    /// the id's HMAC is not computed again: that was a third of a restore's hashing.
    /// Unencrypted, recomputing the id is the only check.
    func get(_ id: String, packs: PackCache? = nil) throws(RepositoryError) -> [UInt8] {
        do { return try authenticate(try stored(id, packs: packs), id: id) } catch {
            // Only real damage: a read that timed out says nothing about the object.
            if error.category == .integrity, let loc = location(id) { quarantine(id, pack: loc.pack) }
            throw error
        }
    }

    /// The plaintext of an object's stored bytes, once they prove to be that object.
    func authenticate(_ sealed: [UInt8], id: String) throws(RepositoryError) -> [UInt8] {
        var plain: [UInt8]
        do { plain = try open(sealed, aad: Array(id.utf8)) } catch {
            throw RepositoryError(.corrupt, "object \(id.prefix(12)) fails authentication (damaged)")
        }
        if framesObjects {
            do { plain = try ObjectCodec.unframe(plain, limit: Self.chunkSize) } catch {
                throw RepositoryError(.corrupt, "object \(id.prefix(12)): \(error.message)")
            }
        }
        guard encKey != nil || objectId(plain) == id else { throw RepositoryError(.corrupt, "object \(id.prefix(12)) does not match its id (corrupt or truncated)") }
        return plain
    }

    /// An object's stored (sealed) bytes, from its pack or, in a version-1 repository, its own file.
    func stored(_ id: String, packs: PackCache? = nil) throws(RepositoryError) -> [UInt8] {
        guard let loc = location(id) else {
            do { return try storage.read(objectPath(id)) } catch where error.kind == .missing {
                throw RepositoryError(.missing, "object \(id.prefix(12)) is missing: no index names it")
            }
        }
        // A stored object is at most a chunk plus the nonce and tag; a larger length is a
        // damaged (unencrypted, so unauthenticated) index, not an allocation to attempt.
        guard Int(loc.length) <= Self.chunkSize + 64 else { throw RepositoryError(.corrupt, "object \(id.prefix(12)) has an impossible length in the index; the index is damaged") }
        if let packs {
            let bytes: [UInt8]
            do { bytes = try packs.pack(loc.pack) { () throws(RepositoryError) -> [UInt8] in try storage.read(packPath(loc.pack)) } } catch where error.kind == .missing {
                throw RepositoryError(.missing, "object \(id.prefix(12)) is missing: its pack \(loc.pack.prefix(12)) cannot be read (it does not exist)")
            }
            let start = Int(loc.offset), end = start + Int(loc.length)
            guard end <= bytes.count else { throw RepositoryError(.corrupt, "object \(id.prefix(12)) is truncated: its pack \(loc.pack.prefix(12)) ends early") }
            return Array(bytes[start..<end])
        }
        do { return try storage.readRange(packPath(loc.pack), offset: Int64(loc.offset), length: Int(loc.length)) } catch {
            switch error.kind {
            case .missing: throw RepositoryError(.missing, "object \(id.prefix(12)) is missing: its pack \(loc.pack.prefix(12)) cannot be read (it does not exist)")
            case .corrupt: throw RepositoryError(.corrupt, "object \(id.prefix(12)) is truncated: its pack \(loc.pack.prefix(12)) ends early")
            default: throw error
            }
        }
    }

    // MARK: helpers

    static func io<T>(_ body: () throws -> T) throws(RepositoryError) -> T {
        do { return try body() } catch { throw RepositoryError(.io, "\(error.localizedDescription)") }
    }

    static func randomBytes(_ n: Int) -> [UInt8] {
        var g = SystemRandomNumberGenerator()
        return (0..<n).map { _ in UInt8.random(in: 0...255, using: &g) }
    }
}
