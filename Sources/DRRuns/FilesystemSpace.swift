import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Free and total space of the filesystem holding a path, from statvfs: what the user can
/// write there (`f_bavail`, not the root-reserved `f_bfree`), as `df` shows it.
public enum FilesystemSpace {
    public struct Space: Sendable, Equatable {
        public var free: Int64
        public var total: Int64
        public init(free: Int64, total: Int64) { self.free = free; self.total = total }
    }

    public static func measure(_ path: String) -> Result<Space, RepositoryError> {
        var s = statvfs()
        guard statvfs(path, &s) == 0 else {
            return .failure(RepositoryError(.io, "cannot measure the free space at \(path): \(String(cString: strerror(errno)))"))
        }
        let unit = Int64(s.f_frsize)
        return .success(Space(free: Int64(s.f_bavail) * unit, total: Int64(s.f_blocks) * unit))
    }
}
