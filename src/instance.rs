//! The instance id, kept in `<data-dir>/instance-id`: created on first start, then read at every
//! start. It names this writer in object keys, so it must survive restarts: files replayed after
//! a crash get the same names as before it.

use std::io;
use std::path::Path;

use crate::fsutil;
use crate::sink::WriterId;

/// The instance id kept in `path`, created on first use.
pub(crate) fn load_or_create(path: &Path) -> io::Result<WriterId> {
    match std::fs::read_to_string(path) {
        Ok(text) => WriterId::parse(text.trim()).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidData, format!("{} does not hold an instance id", path.display()))
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let id = WriterId::generate();
            fsutil::replace(path, format!("{}\n", id.as_str()).as_bytes(), false)?;
            Ok(id)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_survives_a_restart_and_a_bad_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("instance-id");
        let first = load_or_create(&path).unwrap();
        assert_eq!(load_or_create(&path).unwrap(), first);
        std::fs::write(&path, "not/an id").unwrap();
        assert!(load_or_create(&path).unwrap_err().to_string().contains("instance-id"));
    }
}
