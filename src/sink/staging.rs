//! Where a Parquet file is written while it fills: a local file under the staging directory, so
//! memory holds only each file's open row group, whatever the file's size, and the finished file
//! goes to the store from disk (see [`crate::sink::Uploader::put_file`]).
//!
//! A staged file is only a copy: its rows are in the spool until the file is in its table, so a
//! crash just leaves a stale staging file, which the next start deletes ([`StagingDir::open`])
//! before the replay cuts the same file again. When the staging disk refuses a write (full, or
//! read-only), the file carries on in memory: a warning, and memory grows with that one file,
//! but ingestion never stops for it.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;

/// The directory of staged files, emptied when it is opened.
#[derive(Debug, Clone)]
pub struct StagingDir {
    dir: PathBuf,
}

impl StagingDir {
    /// Opens (creating it when missing) and empties the staging directory. Everything in it is
    /// left over from an earlier run: the spool still holds those rows.
    pub fn open(dir: &Path) -> io::Result<StagingDir> {
        fs::create_dir_all(dir)?;
        for entry in fs::read_dir(dir)? {
            let path = entry?.path();
            if path.is_file() {
                fs::remove_file(&path)?;
            }
        }
        Ok(StagingDir { dir: dir.to_owned() })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// A sink for a new file named `name` (unique among the open files). A file that cannot be
    /// created starts in memory.
    pub fn create(&self, name: &str) -> StagingSink {
        let path = self.dir.join(name);
        match File::create(&path) {
            Ok(file) => StagingSink { path, place: Place::Disk(file), len: 0 },
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot create a staging file; this file is built in memory");
                StagingSink { path, place: Place::Memory(Vec::new()), len: 0 }
            }
        }
    }
}

/// A staged file being written: what the Parquet writer writes to.
#[derive(Debug)]
pub struct StagingSink {
    path: PathBuf,
    place: Place,
    len: u64,
}

#[derive(Debug)]
enum Place {
    Disk(File),
    Memory(Vec<u8>),
}

/// A finished file, on disk or (after a staging failure, or with no staging dir) in memory.
#[derive(Debug)]
pub enum FileBody {
    Disk { path: PathBuf, len: u64 },
    Memory(Bytes),
}

impl FileBody {
    pub fn len(&self) -> u64 {
        match self {
            FileBody::Disk { len, .. } => *len,
            FileBody::Memory(bytes) => bytes.len() as u64,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Deletes the staged copy once the file is in the store.
    pub fn discard(&self) {
        if let FileBody::Disk { path, .. } = self
            && let Err(e) = fs::remove_file(path)
        {
            tracing::warn!(path = %path.display(), error = %e, "cannot delete a staging file; the next start deletes it");
        }
    }
}

impl StagingSink {
    /// An in-memory sink (a test, or a writer with no staging dir).
    pub fn memory() -> StagingSink {
        StagingSink { path: PathBuf::new(), place: Place::Memory(Vec::new()), len: 0 }
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The whole file, once its writer wrote the footer.
    pub fn finish(mut self) -> io::Result<FileBody> {
        if let Place::Disk(file) = &mut self.place {
            file.flush()?;
        }
        Ok(match self.place {
            Place::Disk(_) => FileBody::Disk { path: self.path, len: self.len },
            Place::Memory(bytes) => FileBody::Memory(Bytes::from(bytes)),
        })
    }

    /// The disk refused a write: carry on in memory with what it holds so far.
    fn move_to_memory(&mut self, error: &io::Error) -> io::Result<()> {
        let mut held = Vec::with_capacity(self.len as usize);
        File::open(&self.path)?.take(self.len).read_to_end(&mut held)?;
        if held.len() as u64 != self.len {
            return Err(io::Error::other(format!("staging file {} lost bytes", self.path.display())));
        }
        tracing::warn!(
            path = %self.path.display(), error = %error,
            "cannot write a staging file (disk full?); this file carries on in memory"
        );
        crate::metrics::staging_error();
        let _ = fs::remove_file(&self.path);
        self.place = Place::Memory(held);
        Ok(())
    }
}

impl Write for StagingSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = match &mut self.place {
            Place::Disk(file) => match file.write_all(buf) {
                Ok(()) => buf.len(),
                Err(e) => {
                    self.move_to_memory(&e)?;
                    return self.write(buf);
                }
            },
            Place::Memory(bytes) => {
                bytes.extend_from_slice(buf);
                buf.len()
            }
        };
        self.len += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_staged_file_is_on_disk_and_leftovers_go_at_open() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StagingDir::open(&tmp.path().join("staging")).unwrap();
        let mut sink = dir.create("a.parquet");
        sink.write_all(b"hello ").unwrap();
        sink.write_all(b"world").unwrap();
        assert_eq!(sink.len(), 11);
        let body = sink.finish().unwrap();
        let FileBody::Disk { path, len } = &body else { panic!("staged in memory: {body:?}") };
        assert_eq!((fs::read(path).unwrap().as_slice(), *len), (&b"hello world"[..], 11));

        // A restart finds the file left over: its rows are in the spool, so it goes.
        let dir = StagingDir::open(dir.path()).unwrap();
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
        body.discard(); // already gone: a warning, no panic
    }

    #[test]
    fn a_refused_write_carries_on_in_memory_with_every_byte() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("b.parquet");
        fs::write(&path, b"0123456789").unwrap();
        // A read-only handle refuses the next write, as a full disk would.
        let file = File::open(&path).unwrap();
        let mut sink = StagingSink { path: path.clone(), place: Place::Disk(file), len: 10 };
        sink.write_all(b"abc").unwrap();
        assert_eq!(sink.len(), 13);
        let FileBody::Memory(bytes) = sink.finish().unwrap() else { panic!("still on disk") };
        assert_eq!(&bytes[..], b"0123456789abc");
        assert!(!path.exists(), "the partial staging file is removed");
    }

    #[test]
    fn a_staging_dir_that_cannot_be_written_builds_in_memory() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StagingDir::open(tmp.path()).unwrap();
        fs::remove_dir(tmp.path()).unwrap();
        let mut sink = dir.create("c.parquet");
        sink.write_all(b"xyz").unwrap();
        let FileBody::Memory(bytes) = sink.finish().unwrap() else { panic!("on disk") };
        assert_eq!(&bytes[..], b"xyz");
    }
}
