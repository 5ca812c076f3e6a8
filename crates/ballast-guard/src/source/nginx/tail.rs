//! Tailing a log file: the complete lines written since the last poll, through rotation and
//! truncation.
//!
//! - Rotation (`mv access.log access.log.1`, then `kill -USR1` the master): the path names
//!   another file, or none for a while. The old file is read to its end, then the new one
//!   from its start. nginx workers reopen their logs one after the other, so a few lines can
//!   still land in the old file after the new one appears: the old file stays open and is
//!   drained at every poll until two polls in a row find nothing more in it.
//! - Truncation (`copytruncate`): the file is shorter than what was read, or its first bytes
//!   changed (it was truncated and grew past the old offset between two polls): start again
//!   at its start. Lines written between the last poll and the truncation are in the copy,
//!   not here: that is what copytruncate does, and why rotation by rename is the one to use.
//! - A partial last line (nginx writes a line with one `write`, but a poll can land in the
//!   middle of a buffered flush) is held until its newline arrives.

use std::fs::{File, Metadata};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Where to start reading a file that already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// At its end: only new traffic.
    End,
    /// At its start: everything it holds.
    Beginning,
}

/// The longest line kept whole; a longer one is passed on cut (and will not parse), so a
/// file without newlines cannot grow memory without bound.
const MAX_LINE: usize = 64 * 1024;
/// How many bytes at the start of a file identify its content, to tell a truncation that
/// grew past the old offset.
const HEAD: usize = 64;
/// Empty polls after which a rotated file is closed.
const RETIRE_AFTER_EMPTY_POLLS: u32 = 2;
const CHUNK: usize = 64 * 1024;

/// What one poll saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Poll {
    pub lines: u64,
    pub bytes: u64,
    pub rotated: bool,
    pub truncated: bool,
}

/// A log file followed by name.
#[derive(Debug)]
pub struct Tailer {
    path: PathBuf,
    current: Option<Open>,
    /// The file the path named before a rotation, drained until it stays quiet.
    retired: Option<(Open, u32)>,
    buf: Vec<u8>,
}

#[derive(Debug)]
struct Open {
    file: File,
    id: (u64, u64),
    offset: u64,
    partial: Vec<u8>,
    /// The first bytes of the file as read (up to [`HEAD`]).
    head: Vec<u8>,
}

impl Open {
    fn new(path: &Path, start: Start) -> io::Result<Open> {
        let file = File::open(path)?;
        let meta = file.metadata()?;
        let offset = match start {
            Start::End => meta.len(),
            Start::Beginning => 0,
        };
        let mut open = Open {
            file,
            id: id(&meta),
            offset,
            partial: Vec::new(),
            head: Vec::new(),
        };
        open.head = open.read_head(offset.min(HEAD as u64) as usize)?;
        Ok(open)
    }

    fn read_head(&self, len: usize) -> io::Result<Vec<u8>> {
        let mut head = vec![0; len];
        let mut got = 0;
        while got < len {
            match self.file.read_at(&mut head[got..], got as u64)? {
                0 => break,
                n => got += n,
            }
        }
        head.truncate(got);
        Ok(head)
    }

    /// Whether the file was truncated since the last read: shorter than the offset, or its
    /// first bytes are no longer those read.
    fn was_truncated(&self, len: u64) -> io::Result<bool> {
        if len < self.offset {
            return Ok(true);
        }
        if self.head.is_empty() {
            return Ok(false);
        }
        Ok(self.read_head(self.head.len())? != self.head)
    }

    fn restart(&mut self) {
        self.offset = 0;
        self.partial.clear();
        self.head.clear();
    }

    /// Reads to the end of the file, passing each complete line (without its newline).
    fn drain(
        &mut self,
        buf: &mut Vec<u8>,
        poll: &mut Poll,
        on_line: &mut dyn FnMut(&[u8]),
    ) -> io::Result<u64> {
        let mut total = 0;
        buf.resize(CHUNK, 0);
        loop {
            let n = self.file.read_at(buf, self.offset)?;
            if n == 0 {
                break;
            }
            if self.head.len() < HEAD && self.offset < HEAD as u64 {
                let start = self.offset as usize;
                let take = (HEAD - start).min(n);
                if start == self.head.len() {
                    self.head.extend_from_slice(&buf[..take]);
                }
            }
            self.offset += n as u64;
            total += n as u64;
            let mut chunk = &buf[..n];
            while let Some(nl) = chunk.iter().position(|&c| c == b'\n') {
                let piece = &chunk[..nl];
                if self.partial.is_empty() {
                    on_line(piece);
                } else {
                    self.partial.extend_from_slice(piece);
                    on_line(&self.partial);
                    self.partial.clear();
                }
                poll.lines += 1;
                chunk = &chunk[nl + 1..];
            }
            self.partial.extend_from_slice(chunk);
            if self.partial.len() > MAX_LINE {
                on_line(&self.partial);
                poll.lines += 1;
                self.partial.clear();
            }
        }
        poll.bytes += total;
        Ok(total)
    }

    /// A torn last line left when the file is closed: passed on so it is counted.
    fn finish(mut self, poll: &mut Poll, on_line: &mut dyn FnMut(&[u8])) {
        if !self.partial.is_empty() {
            on_line(&self.partial);
            poll.lines += 1;
            self.partial.clear();
        }
    }
}

fn id(meta: &Metadata) -> (u64, u64) {
    (meta.dev(), meta.ino())
}

impl Tailer {
    /// Opens `path`, which must exist, at `start`.
    pub fn open(path: &Path, start: Start) -> io::Result<Tailer> {
        Ok(Tailer {
            path: path.to_path_buf(),
            current: Some(Open::new(path, start)?),
            retired: None,
            buf: Vec::new(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Passes every complete line written since the last poll to `on_line`, in file order
    /// (a rotated file's last lines first).
    pub fn poll(&mut self, mut on_line: impl FnMut(&[u8])) -> io::Result<Poll> {
        let mut poll = Poll::default();
        let on_line: &mut dyn FnMut(&[u8]) = &mut on_line;
        if let Some((mut old, quiet)) = self.retired.take() {
            let read = old.drain(&mut self.buf, &mut poll, on_line)?;
            let quiet = if read == 0 { quiet + 1 } else { 0 };
            if quiet >= RETIRE_AFTER_EMPTY_POLLS {
                old.finish(&mut poll, on_line);
            } else {
                self.retired = Some((old, quiet));
            }
        }
        let meta = match std::fs::metadata(&self.path) {
            Ok(m) => Some(m),
            // Between the rename and the reopen the path names nothing: keep reading the
            // file we have.
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        if let Some(meta) = meta {
            let same = self.current.as_ref().is_some_and(|c| c.id == id(&meta));
            if !same {
                // Rotated: finish the old file, then read the new one from its start.
                if let Some(mut old) = self.current.take() {
                    old.drain(&mut self.buf, &mut poll, on_line)?;
                    if let Some((older, _)) = self.retired.take() {
                        older.finish(&mut poll, on_line);
                    }
                    self.retired = Some((old, 0));
                }
                match Open::new(&self.path, Start::Beginning) {
                    Ok(new) => self.current = Some(new),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
                poll.rotated = true;
            } else if let Some(c) = self.current.as_mut()
                && c.was_truncated(meta.len())?
            {
                c.restart();
                poll.truncated = true;
            }
        }
        if let Some(c) = self.current.as_mut() {
            c.drain(&mut self.buf, &mut poll, on_line)?;
        }
        Ok(poll)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn append(path: &Path, text: &str) {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }

    fn lines(t: &mut Tailer) -> (Vec<String>, Poll) {
        let mut out = Vec::new();
        let p = t
            .poll(|l| out.push(String::from_utf8_lossy(l).into_owned()))
            .unwrap();
        (out, p)
    }

    #[test]
    fn starts_at_the_end_or_the_beginning() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        append(&path, "old 1\nold 2\n");
        let mut end = Tailer::open(&path, Start::End).unwrap();
        let mut start = Tailer::open(&path, Start::Beginning).unwrap();
        append(&path, "new\n");
        assert_eq!(lines(&mut end).0, ["new"]);
        assert_eq!(lines(&mut start).0, ["old 1", "old 2", "new"]);
        assert!(lines(&mut end).0.is_empty());
    }

    #[test]
    fn a_partial_line_waits_for_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        append(&path, "");
        let mut t = Tailer::open(&path, Start::End).unwrap();
        append(&path, "one\ntw");
        assert_eq!(lines(&mut t).0, ["one"]);
        append(&path, "o\nthr");
        assert_eq!(lines(&mut t).0, ["two"]);
        append(&path, "ee\n");
        assert_eq!(lines(&mut t).0, ["three"]);
    }

    #[test]
    fn rotation_finishes_the_old_file_then_reads_the_new() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        append(&path, "");
        let mut t = Tailer::open(&path, Start::End).unwrap();
        append(&path, "1\n2\n");
        assert_eq!(lines(&mut t).0, ["1", "2"]);
        append(&path, "3\n");
        std::fs::rename(&path, dir.path().join("a.log.1")).unwrap();
        // Written to the old file after the rename, before the reopen.
        append(&dir.path().join("a.log.1"), "4\n");
        assert_eq!(lines(&mut t).0, ["3", "4"]);
        append(&path, "5\n");
        // A worker that had not reopened yet still writes to the old file.
        append(&dir.path().join("a.log.1"), "6\n");
        let (got, p) = lines(&mut t);
        assert!(p.rotated);
        assert_eq!(got, ["6", "5"]);
        append(&dir.path().join("a.log.1"), "7\n");
        append(&path, "8\n");
        assert_eq!(lines(&mut t).0, ["7", "8"]);
        // Two quiet polls close the old file; nothing is read twice.
        for _ in 0..3 {
            assert!(lines(&mut t).0.is_empty());
        }
        append(&path, "9\n");
        assert_eq!(lines(&mut t).0, ["9"]);
    }

    #[test]
    fn truncation_starts_again_even_when_the_file_grew_past_the_old_offset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        append(&path, "");
        let mut t = Tailer::open(&path, Start::End).unwrap();
        append(&path, "aaaa\nbbbb\n");
        assert_eq!(lines(&mut t).0.len(), 2);
        std::fs::File::create(&path).unwrap(); // truncates
        append(&path, "c\n");
        let (got, p) = lines(&mut t);
        assert!(p.truncated);
        assert_eq!(got, ["c"]);
        // Truncated again and rewritten longer than before between two polls.
        std::fs::File::create(&path).unwrap();
        append(&path, "dddddddd\neeeeeeee\n");
        let (got, p) = lines(&mut t);
        assert!(p.truncated, "{got:?}");
        assert_eq!(got, ["dddddddd", "eeeeeeee"]);
    }

    #[test]
    fn a_missing_file_is_an_error_and_a_very_long_line_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Tailer::open(&dir.path().join("none"), Start::End).is_err());
        let path = dir.path().join("a.log");
        append(&path, "");
        let mut t = Tailer::open(&path, Start::End).unwrap();
        append(&path, &"x".repeat(MAX_LINE * 2 + 10));
        let (got, _) = lines(&mut t);
        assert!(!got.is_empty() && got.iter().all(|l| l.len() <= MAX_LINE + CHUNK));
    }
}
