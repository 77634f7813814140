import Foundation

/// The data files of a folder: the one place that lists folders for the readers.
public enum FolderListing {
    /// Whether `path` names a folder (false also when nothing is there). O(1).
    public static func isFolder(_ path: String) -> Bool {
        var isDirectory: ObjCBool = false
        return FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) && isDirectory.boolValue
    }

    /// The paths of the files in `folder` whose names end with one of `suffixes` and (when given)
    /// contain `word`, sorted by name.
    ///
    /// - Throws: `DataError.cannotRead` when the folder cannot be listed. O(entries log entries).
    public static func files(in folder: String, suffixes: [String], containing word: String? = nil) throws(DataError) -> [String] {
        let names: [String]
        do { names = try FileManager.default.contentsOfDirectory(atPath: folder) } catch {
            throw .cannotRead(path: folder, reason: "not a readable folder")
        }
        return names.sorted().filter { name in
            (word.map { name.contains($0) } ?? true) && suffixes.contains { name.hasSuffix($0) }
        }.map { folder.hasSuffix("/") ? folder + $0 : folder + "/" + $0 }
    }
}
