//! Writing files so that a crash leaves either the old contents or the new, never half: for
//! checkpoints, journals and anything a plugin keeps across restarts.

use std::io;
use std::path::Path;

/// Replaces `path` with what `write` writes, atomically and durably: written to a temporary
/// file beside it, synced, renamed over it, and the directory synced. Creates the directory.
pub fn replace_file(
    path: &Path,
    write: impl FnOnce(&mut std::fs::File) -> io::Result<()>,
) -> io::Result<()> {
    let directory = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(directory)?;
    let mut temporary = tempfile::NamedTempFile::new_in(directory)?;
    write(temporary.as_file_mut())?;
    temporary.as_file().sync_all()?;
    temporary.persist(path).map_err(|error| error.error)?;
    sync_directory(directory)
}

/// Makes the entries of `directory` (a rename into it, a new file) durable.
pub fn sync_directory(directory: &Path) -> io::Result<()> {
    std::fs::File::open(directory)?.sync_all()
}
