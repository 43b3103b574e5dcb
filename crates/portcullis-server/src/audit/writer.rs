//! The writer thread: batches, appends, fsyncs, rotates, keeps the head file.

#![allow(
    clippy::disallowed_methods,
    reason = "the audit log is the server's own file, not a client's: it is written here, outside the jail, by design"
)]

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis_config::FsyncPolicy;
use tokio::sync::mpsc;

use super::chain::{GENESIS, Hasher, head_text};
use super::{Health, Job, open_body, postgres};

pub(super) struct Settings {
    pub(super) path: PathBuf,
    pub(super) hasher: Hasher,
    pub(super) replica: String,
    pub(super) rotate_bytes: u64,
    pub(super) fsync: FsyncPolicy,
    pub(super) fsync_interval: Duration,
}

/// Most records written with one `write`.
const BATCH: usize = 512;

struct Writer {
    /// `.NAME.lock`, locked for as long as this writer lives.
    lock: File,
    settings: Settings,
    file: Option<File>,
    size: u64,
    seq: u64,
    prev: String,
    last_sync: Instant,
    /// The head file, kept open: rewritten in place after every batch.
    head: Option<File>,
    health: Arc<Health>,
    sink: Option<postgres::Sink>,
    /// Records not yet where they go: the writer takes off what it wrote (or failed to),
    /// the table's sink what it inserted.
    outstanding: Arc<std::sync::atomic::AtomicUsize>,
}

/// The head file's length: its sealed text padded with spaces, so that every rewrite is one
/// `pwrite` of the same bytes at offset 0 (one sector, never a partial line) with no
/// temporary file or rename: a rename over the old head made ext4 write the new one out at
/// once (its replace-by-rename heuristic), a disk write per batch.
const HEAD_LEN: usize = 255;

/// Opens the file (continuing its chain) and starts the thread.
pub(super) fn start(
    settings: Settings,
    mut jobs: mpsc::Receiver<Job>,
    health: Arc<Health>,
    sink: Option<postgres::Sink>,
    outstanding: Arc<std::sync::atomic::AtomicUsize>,
) -> std::io::Result<()> {
    if let Some(dir) = settings.path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)?;
    }
    // One writer per chain: a second process appending to the same file (another server on
    // the same config, `portcullis call` beside a running server) would fork the chain.
    let lock = lock(&settings.path)?;
    let (seq, prev) = chain_end(&settings.path, settings.fsync)?;
    let mut writer = Writer {
        lock,
        file: None,
        size: 0,
        seq,
        prev,
        last_sync: Instant::now(),
        head: None,
        health,
        sink,
        settings,
        outstanding,
    };
    writer.open()?;
    std::thread::Builder::new()
        .name("portcullis-audit".to_owned())
        .spawn(move || {
            let mut batch = Vec::with_capacity(BATCH);
            while let Some(job) = jobs.blocking_recv() {
                batch.push(job);
                while batch.len() < BATCH {
                    match jobs.try_recv() {
                        Ok(job) => batch.push(job),
                        Err(_) => break,
                    }
                }
                writer.write(&mut batch);
            }
            writer.sync();
        })?;
    Ok(())
}

/// `.NAME.lock` beside the log. Hidden, so that `NAME.*` (the rotations a verify is given)
/// never names it.
fn lock_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.lock"))
}

/// Takes the exclusive lock on `.NAME.lock` beside the log (advisory, released when the
/// process ends) and writes this process's id into it, or says which process holds it.
fn lock(path: &Path) -> std::io::Result<File> {
    let lock_path = lock_path(path);
    // Never through a link (it would truncate whatever it points at), and only a file.
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&lock_path)
        .map_err(|error| {
            std::io::Error::new(
                error.kind(),
                format!(
                    "{}: {error} (it must be a plain file, not a link)",
                    lock_path.display()
                ),
            )
        })?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other(format!(
            "{} is not a plain file; remove it",
            lock_path.display()
        )));
    }
    match file.try_lock() {
        Ok(()) => {
            file.set_len(0)?;
            file.write_all(format!("{}\n", std::process::id()).as_bytes())?;
            Ok(file)
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            Err(std::io::Error::other(format!(
                "the audit log {} is being written by process {} (it holds {}): two writers would fork its hash chain; stop that process, or give this one its own `audit.path` (the lock ends with its process, so it is never stale: do not delete it)",
                path.display(),
                holder.trim(),
                lock_path.display()
            )))
        }
        Err(std::fs::TryLockError::Error(error)) => Err(error),
    }
}

/// Whether `held` is still the lock file at its path (`true`), or had to be taken again
/// (`false`: someone removed it, taking it for stale, and another process may have written
/// meanwhile). While another process holds the new one, this writer writes nothing, rather
/// than fork the chain.
fn still_held(path: &Path, held: &mut File) -> std::io::Result<bool> {
    use std::os::unix::fs::MetadataExt as _;
    let ours = held.metadata()?;
    match std::fs::metadata(lock_path(path)) {
        Ok(now) if now.dev() == ours.dev() && now.ino() == ours.ino() => return Ok(true),
        _ => {}
    }
    tracing::warn!(path = %lock_path(path).display(), "the audit log's lock file was removed or replaced");
    *held = lock(path)?;
    Ok(false)
}

impl Writer {
    /// Makes sure this writer holds the chain's lock; when it had to take it again, the
    /// chain goes on from where it ends now (another writer may have added to it, or
    /// rotated it), through files opened afresh.
    fn relock(&mut self) -> std::io::Result<()> {
        if still_held(&self.settings.path, &mut self.lock)? {
            return Ok(());
        }
        (self.seq, self.prev) = chain_end(&self.settings.path, self.settings.fsync)?;
        self.file = None;
        self.head = None;
        Ok(())
    }

    fn open(&mut self) -> std::io::Result<()> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&self.settings.path)?;
        self.size = file.metadata()?.len();
        self.file = Some(file);
        Ok(())
    }

    fn write(&mut self, batch: &mut Vec<Job>) {
        // One writer per chain, checked before every batch: a lock file removed while this
        // one runs would let a second writer in.
        if let Err(error) = self.relock() {
            self.outstanding
                .fetch_sub(batch.len(), std::sync::atomic::Ordering::AcqRel);
            tracing::error!(%error, records = batch.len(), "cannot write the audit log");
            metrics::counter!("portcullis_audit_failures_total").increment(1);
            metrics::counter!("portcullis_audit_lost_records_total").increment(batch.len() as u64);
            self.health.set(Some(
                "another process writes the audit log (its lock file was removed)".to_owned(),
            ));
            for job in batch.drain(..) {
                if let Some(written) = job.written {
                    let _ = written.send(false);
                }
            }
            return;
        }
        let (seq, prev) = (self.seq, self.prev.clone());
        let mut text = String::with_capacity(batch.len() * 512);
        let mut lines = Vec::new();
        for job in batch.iter() {
            self.seq += 1;
            let body = open_body(self.seq, &self.settings.replica, &job.event, &self.prev);
            let (line, hash) = self.settings.hasher.seal(&self.prev, &body);
            text.push_str(&line);
            text.push('\n');
            if self.sink.is_some() {
                lines.push((self.seq, line));
            }
            self.prev = hash;
        }
        let result = self.append(text.as_bytes());
        let ok = result.is_ok();
        // Done here unless the table's sink takes them on.
        if !ok || self.sink.is_none() {
            self.outstanding
                .fetch_sub(batch.len(), std::sync::atomic::Ordering::AcqRel);
        }
        match result {
            Ok(()) => {
                metrics::counter!("portcullis_audit_records_total").increment(batch.len() as u64);
                if let Some(sink) = &self.sink {
                    sink.send(lines);
                }
                // The records are in the file: what follows cannot take them back.
                let after = self.write_head().and_then(|()| {
                    if self.size >= self.settings.rotate_bytes {
                        self.rotate()
                    } else {
                        Ok(())
                    }
                });
                match after {
                    Ok(()) => {
                        if self
                            .health
                            .failing
                            .load(std::sync::atomic::Ordering::Acquire)
                        {
                            tracing::warn!("the audit log can be written again");
                        }
                        self.health.set(None);
                    }
                    Err(error) => {
                        tracing::error!(error = %error.kind(), "cannot update the audit log's head file or rotate it");
                        metrics::counter!("portcullis_audit_failures_total").increment(1);
                        self.health.set(Some(format!(
                            "cannot update the audit head file or rotate the log: {}",
                            error.kind()
                        )));
                    }
                }
            }
            Err(error) => {
                // Nothing of the batch stays: the chain goes on from the last record on disk.
                self.seq = seq;
                self.prev = prev;
                tracing::error!(error = %error.kind(), records = batch.len(), "cannot write the audit log");
                metrics::counter!("portcullis_audit_failures_total").increment(1);
                metrics::counter!("portcullis_audit_lost_records_total")
                    .increment(batch.len() as u64);
                self.health.set(Some(format!(
                    "cannot write the audit log: {}",
                    error.kind()
                )));
            }
        }
        for job in batch.drain(..) {
            if let Some(written) = job.written {
                let _ = written.send(ok);
            }
        }
    }

    /// Appends `bytes` and fsyncs by policy. On failure the file is cut back to where it was.
    fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if self.file.is_none() {
            self.open()?;
        }
        let file = self.file.as_mut().expect("opened above");
        let before = self.size;
        let written = file
            .write_all(bytes)
            .and_then(|()| match self.settings.fsync {
                FsyncPolicy::Always => file.sync_data(),
                FsyncPolicy::Interval
                    if self.last_sync.elapsed() >= self.settings.fsync_interval =>
                {
                    self.last_sync = Instant::now();
                    file.sync_data()
                }
                _ => Ok(()),
            });
        if let Err(error) = written {
            if file.set_len(before).is_err() {
                // The file cannot even be cut back: reopen it next time.
                self.file = None;
            }
            return Err(error);
        }
        self.size += bytes.len() as u64;
        Ok(())
    }

    fn write_head(&mut self) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt as _;
        let mut text = head_text(&self.settings.hasher, self.seq, &self.prev);
        // The sealed text ends in a newline; the padding goes before it (JSON allows the
        // whitespace, and verification trims it).
        text.pop();
        if text.len() < HEAD_LEN - 1 {
            text.extend(std::iter::repeat_n(' ', HEAD_LEN - 1 - text.len()));
        }
        text.push('\n');
        let fresh = self.head.is_none();
        if fresh {
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .mode(0o600)
                .open(head_path(&self.settings.path))?;
            self.head = Some(file);
        }
        let file = self.head.as_ref().expect("opened above");
        let written = file.write_all_at(text.as_bytes(), 0).and_then(|()| {
            // Cut after the first write (never a hole of NULs before it): a head written
            // by an older version, whatever its length, leaves no tail behind.
            if fresh || text.len() != HEAD_LEN {
                file.set_len(text.len() as u64)?;
            }
            if self.settings.fsync == FsyncPolicy::Always {
                file.sync_data()?;
            }
            Ok(())
        });
        if written.is_err() {
            // Reopened on the next batch.
            self.head = None;
        }
        written
    }

    /// Renames the file to the next free `NAME.N` and starts a new one; the chain goes on.
    fn rotate(&mut self) -> std::io::Result<()> {
        self.sync();
        let next = rotated(&self.settings.path)
            .last()
            .map_or(1, |(n, _)| n + 1);
        let mut target = self.settings.path.clone().into_os_string();
        target.push(format!(".{next}"));
        std::fs::rename(&self.settings.path, &target)?;
        self.file = None;
        // The head is reopened by path too (in case it was replaced from outside).
        self.head = None;
        self.open()?;
        metrics::counter!("portcullis_audit_rotations_total").increment(1);
        tracing::info!(file = next, "audit log rotated");
        Ok(())
    }

    fn sync(&mut self) {
        if let Some(file) = &self.file
            && self.settings.fsync != FsyncPolicy::Never
        {
            let _ = file.sync_data();
        }
    }
}

/// The head file next to the log.
pub fn head_path(path: &Path) -> PathBuf {
    let mut head = path.to_owned().into_os_string();
    head.push(".head");
    PathBuf::from(head)
}

/// The rotated files of `path`: (number, path), oldest first.
pub(super) fn rotated(path: &Path) -> Vec<(u64, PathBuf)> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
        return Vec::new();
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let mut found: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let file = entry.file_name();
            let n = file
                .to_str()?
                .strip_prefix(name)?
                .strip_prefix('.')?
                .parse()
                .ok()?;
            Some((n, entry.path()))
        })
        .collect();
    found.sort();
    found
}

/// Where an existing chain ends: the last complete record of the current file, or of the
/// newest rotated file when the current one is empty. A record cut short by a crash (never
/// acknowledged) is removed, with a warning.
fn chain_end(path: &Path, fsync: FsyncPolicy) -> std::io::Result<(u64, String)> {
    let mut candidates = vec![path.to_owned()];
    candidates.extend(rotated(path).into_iter().rev().map(|(_, p)| p));
    for candidate in candidates {
        let Ok(mut file) = OpenOptions::new().read(true).write(true).open(&candidate) else {
            continue;
        };
        let len = file.metadata()?.len();
        if len == 0 {
            continue;
        }
        let tail_len = len.min(1024 * 1024);
        file.seek(SeekFrom::Start(len - tail_len))?;
        let mut tail = Vec::with_capacity(tail_len as usize);
        file.read_to_end(&mut tail)?;
        #[derive(serde::Deserialize)]
        struct Last {
            seq: u64,
            hash: String,
        }
        let mut complete = tail.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        if complete < tail.len() {
            if serde_json::from_slice::<Last>(&tail[complete..]).is_ok() {
                // A whole record without its line end (a crash between the two, or someone
                // taking the newline away): it stays, completed; `audit verify` judges it.
                // Removing it would erase the newest record unnoticed.
                tracing::warn!("the audit log's last record has no line end; completing it");
                file.seek(SeekFrom::End(0))?;
                file.write_all(b"\n")?;
                tail.push(b'\n');
                complete = tail.len();
            } else {
                // Cut short by a crash, the record was never acknowledged, and the head file
                // (rewritten after each batch) does not vouch for it: it is removed. A
                // record the head vouches for was damaged afterwards: removing it would
                // erase it unnoticed, so the log is left for `audit verify` and the server
                // does not start on it.
                let last_whole = String::from_utf8_lossy(&tail[..complete])
                    .lines()
                    .last()
                    .and_then(|line| serde_json::from_str::<Last>(line).ok())
                    .map_or(0, |last| last.seq);
                let vouched = portcullis_core::operator_file::read_to_string(&head_path(path))
                    .ok()
                    .and_then(|text| serde_json::from_str::<serde_json::Value>(text.trim()).ok())
                    .and_then(|head| head["head_seq"].as_u64());
                // Only with `fsync = "always"` is the log on disk before its head: with
                // the other policies a power loss can leave a head ahead of a torn record,
                // which is then a crash's, not tampering, and is cut off with a warning.
                if fsync == FsyncPolicy::Always && vouched.is_none_or(|seq| seq > last_whole) {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!(
                            "the last record of {} is damaged and its head file {}: run `portcullis audit verify`; move the log aside to start a new chain",
                            candidate.display(),
                            if vouched.is_some() {
                                "vouches for it"
                            } else {
                                "is missing, so it cannot tell whether it was acknowledged"
                            }
                        ),
                    ));
                }
                tracing::warn!(
                    bytes = tail.len() - complete,
                    "the audit log ends in a record cut short (a crash while writing); removing it"
                );
                file.set_len(len - tail_len + complete as u64)?;
            }
        }
        let text = String::from_utf8_lossy(&tail[..complete]);
        let Some(last) = text.lines().last() else {
            continue;
        };
        let last: Last = serde_json::from_str(last).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "the last record of {} is not an audit record ({e})",
                    candidate.display()
                ),
            )
        })?;
        return Ok((last.seq, last.hash));
    }
    Ok((0, GENESIS.to_owned()))
}
