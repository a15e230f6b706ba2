import CZstd
import Foundation

/// The codec byte that starts every compressible object's plaintext from format version 3 on
/// (docs/repository-format.md). It is inside the encryption, so it is authenticated, and the
/// object id is always computed over the uncompressed bytes: deduplication does not depend
/// on how (or whether) an object was compressed.
enum ObjectCodec: UInt8 {
    case none = 0
    case zstd = 1

    /// zstd's level 3 (its default): on the bench tree's text it stores a quarter of the input
    /// at several hundred MB/s per core; higher levels cost more time than they save money.
    static let level: Int32 = 3
    /// A sample of this many bytes is compressed first (at the fastest level); data whose
    /// sample does not shrink by 5% (media, archives, encrypted files) is stored as it is,
    /// without paying for a full compression.
    static let sample = 16 << 10

    /// Frames `plain` for storage: compressed when that pays, raw otherwise. `probe: false`
    /// skips the sample, for objects whose first bytes say nothing about the rest.
    static func frame(_ plain: [UInt8], with context: CompressionContext, probe: Bool = true) -> [UInt8] {
        if probe, plain.count >= 64, plain.count > sample {
            guard let probe = context.compress(plain[0..<sample], level: 1), probe.count <= sample * 95 / 100 else { return raw(plain) }
        }
        if plain.count >= 64, let packed = context.compress(plain[...], level: level), packed.count < plain.count * 97 / 100 {
            return [zstd.rawValue] + packed
        }
        return raw(plain)
    }

    static func raw(_ plain: [UInt8]) -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(plain.count + 1)
        out.append(none.rawValue)
        out += plain
        return out
    }

    /// The plaintext of a framed object. `limit` bounds what a frame may expand to, so a
    /// damaged (or, unencrypted, forged) frame cannot make drplan allocate gigabytes.
    static func unframe(_ framed: [UInt8], limit: Int) throws(RepositoryError) -> [UInt8] {
        guard let first = framed.first, let codec = ObjectCodec(rawValue: first) else {
            throw RepositoryError(.corrupt, "object has an unknown codec \(framed.first.map(String.init) ?? "(empty)"); it was written by a newer drplan or is damaged")
        }
        switch codec {
        case .none: return Array(framed[1...])
        case .zstd: return try decompress(framed[1...], limit: limit)
        }
    }

    static func decompress(_ src: ArraySlice<UInt8>, limit: Int) throws(RepositoryError) -> [UInt8] {
        let result: Result<[UInt8], RepositoryError> = src.withUnsafeBytes { s in
            let size = ZSTD_getFrameContentSize(s.baseAddress, s.count)
            // ZSTD_CONTENTSIZE_UNKNOWN and _ERROR are the two largest UInt64 values.
            guard size < UInt64.max - 1, size <= UInt64(limit) else {
                return .failure(RepositoryError(.corrupt, "a compressed object declares an impossible size; it is damaged"))
            }
            var out = [UInt8](repeating: 0, count: Int(size))
            let n = out.withUnsafeMutableBytes { d in ZSTD_decompress(d.baseAddress, d.count, s.baseAddress, s.count) }
            guard ZSTD_isError(n) == 0, n == Int(size) else {
                return .failure(RepositoryError(.corrupt, "a compressed object cannot be decompressed (\(String(cString: ZSTD_getErrorName(n)))); it is damaged"))
            }
            return .success(out)
        }
        return try result.get()
    }
}

/// A zstd compression context, reused for every object one worker writes: creating one per
/// object costs more than compressing a small file.
final class CompressionContext {
    private let cctx: OpaquePointer?
    private var buffer: [UInt8] = []

    init() { cctx = ZSTD_createCCtx() }
    deinit { ZSTD_freeCCtx(cctx) }

    /// nil when zstd fails (no memory): the caller stores the object uncompressed.
    func compress(_ src: ArraySlice<UInt8>, level: Int32) -> [UInt8]? {
        guard let cctx else { return nil }
        let bound = ZSTD_compressBound(src.count)
        if buffer.count < bound { buffer = [UInt8](repeating: 0, count: bound) }
        let n = src.withUnsafeBytes { s in
            buffer.withUnsafeMutableBytes { d in ZSTD_compressCCtx(cctx, d.baseAddress, d.count, s.baseAddress, s.count, level) }
        }
        guard ZSTD_isError(n) == 0 else { return nil }
        return Array(buffer[0..<n])
    }
}
