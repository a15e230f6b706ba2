import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// File names are bytes, not text: a name that is not valid UTF-8 must be backed up and
/// restored byte for byte, as restic does. Inside drplan a path is a Swift `String`, so such a
/// name is carried losslessly in the private-use range U+F780…U+F7FF, one code point per
/// byte that is not valid UTF-8 (0x80…0xFF); a real U+F780…U+F7FF in a name is escaped the
/// same way, byte by byte, so decoding is never ambiguous. Valid UTF-8 names without those
/// code points, which is nearly every name, are unchanged, and the snapshot format is too.
enum FSName {
    static let base: UInt32 = 0xF700

    /// Bytes from the filesystem → the path as drplan carries it.
    static func encode(_ bytes: some Collection<UInt8>) -> String {
        var out = String.UnicodeScalarView()
        var it = Array(bytes)[...]
        while let first = it.first {
            let len = first < 0x80 ? 1 : first >= 0xC2 && first <= 0xDF ? 2 : first >= 0xE0 && first <= 0xEF ? 3 : first >= 0xF0 && first <= 0xF4 ? 4 : 0
            if len > 0, it.count >= len, let s = String(bytes: it.prefix(len), encoding: .utf8), let scalar = s.unicodeScalars.first, s.unicodeScalars.count == 1 {
                if (0xF780...0xF7FF).contains(scalar.value) {
                    for b in it.prefix(len) { out.append(Unicode.Scalar(base + UInt32(b)) ?? "?") }
                } else {
                    out.append(scalar)
                }
                it = it.dropFirst(len)
            } else {
                out.append(Unicode.Scalar(base + UInt32(first)) ?? "?")
                it = it.dropFirst()
            }
        }
        return String(out)
    }

    /// The path as drplan carries it → the bytes to give the filesystem.
    static func decode(_ path: String) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(path.utf8.count)
        for s in path.unicodeScalars {
            if (0xF780...0xF7FF).contains(s.value) { out.append(UInt8(s.value - base)) } else { out.append(contentsOf: String(s).utf8) }
        }
        return out
    }

    /// Calls `body` with the NUL-terminated filesystem bytes of `path`.
    static func with<T>(_ path: String, _ body: (UnsafePointer<CChar>) -> T) -> T {
        // The common case costs nothing extra: no private-use code point, no translation.
        if !path.unicodeScalars.contains(where: { (0xF780...0xF7FF).contains($0.value) }) { return path.withCString(body) }
        let bytes = decode(path).map { CChar(bitPattern: $0) } + [0]
        return bytes.withUnsafeBufferPointer { b in b.baseAddress.map(body) ?? "".withCString(body) }
    }
}

// Filesystem calls on drplan paths, for the archiver and the restorer.
func fsLstat(_ path: String, _ st: inout stat) -> Int32 { FSName.with(path) { lstat($0, &st) } }
func fsOpen(_ path: String, _ flags: Int32, _ mode: mode_t = 0) -> Int32 { FSName.with(path) { Glibc.open($0, flags, mode) } }
func fsMkdir(_ path: String, _ mode: mode_t) -> Int32 { FSName.with(path) { mkdir($0, mode) } }
func fsSymlink(_ target: String, _ path: String) -> Int32 { FSName.with(target) { t in FSName.with(path) { symlink(t, $0) } } }
func fsChmod(_ path: String, _ mode: mode_t) -> Int32 { FSName.with(path) { chmod($0, mode) } }
func fsUnlink(_ path: String) -> Int32 { FSName.with(path) { unlink($0) } }
func fsUtimens(_ path: String, _ times: inout [timespec]) -> Int32 { FSName.with(path) { utimensat(AT_FDCWD, $0, &times, AT_SYMLINK_NOFOLLOW) } }
func fsOpendir(_ path: String) -> OpaquePointer? { FSName.with(path) { opendir($0) } }
func fsReadlink(_ path: String) -> [UInt8]? {
    var buf = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
    let n = FSName.with(path) { readlink($0, &buf, buf.count - 1) }
    return n < 0 ? nil : buf[0..<n].map { UInt8(bitPattern: $0) }
}
