//! The jail: the only code that touches the file system on a client's behalf, shared by
//! every pack that takes paths (files today; notes and the command pack's working
//! directories and path arguments next).
//!
//! A root is opened once, as a directory handle (`cap-std`). A client's path is checked
//! lexically (no NUL, not absolute, no `..`, not denied), resolved beneath that handle
//! (symlinks that stay inside are followed; any that lead out are refused) and the resolved
//! path is checked against the deny list again. Every later access opens that symlink-free
//! path one component at a time from the root handle without following symlinks, so a
//! directory swapped for a symlink between the check and the use makes the access fail
//! instead of leading out of the root or onto a denied file. Writes go to a fresh temporary
//! file in the target directory (`cap-tempfile`: `O_TMPFILE` or a random name created
//! exclusively) that is renamed over the target atomically.

mod deny;

use std::io::{ErrorKind, Read as _, Write as _};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use cap_fs_ext::{DirExt as _, FollowSymlinks, OpenOptionsFollowExt as _};
use cap_std::fs::{Dir, Metadata, OpenOptions, OpenOptionsExt as _};
use portcullis_core::ToolError;

pub use deny::DEFAULT_DENY;
pub(crate) use deny::DenyList;

/// What a resource URI's path percent-encodes: what may not stand in a URI path (the URL
/// standard's path set, plus `%`).
const URI_PATH: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}');

/// A root-relative path as it stands in a resource URI (`file:///docs/a%20b.md`,
/// `note://a%20b`); percent-decoding the URI's path gives it back.
pub(crate) fn uri_path(rel: &str) -> String {
    percent_encoding::utf8_percent_encode(rel, URI_PATH).to_string()
}

/// A path inside the root, resolved.
#[derive(Debug, Clone)]
pub(crate) struct Located {
    /// Slash-separated path relative to the root, free of symlinks; empty for the root.
    pub(crate) rel: String,
    /// Metadata read while resolving (existing paths only).
    pub(crate) meta: Option<Metadata>,
}

impl Located {
    fn parent_and_name(&self) -> (&str, &str) {
        self.rel.rsplit_once('/').unwrap_or(("", self.rel.as_str()))
    }
}

/// What [`Jail::stat`] reports.
#[derive(Debug, Clone)]
pub(crate) struct Stat {
    pub(crate) is_dir: bool,
    pub(crate) len: u64,
    pub(crate) modified: Option<SystemTime>,
    pub(crate) readonly: bool,
}

/// One entry of a directory listing.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) name: String,
    pub(crate) kind: EntryKind,
    pub(crate) len: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EntryKind {
    File,
    Dir,
    Symlink,
    Other,
}

/// What reading a file produced.
#[derive(Debug)]
pub(crate) enum FileContent {
    Text(String),
    Binary { len: u64 },
}

enum ReadRefusal {
    NotAFile,
    TooLarge(u64),
    Grew,
}

/// One directory tree with its deny list. Cheap to clone (shared).
#[derive(Debug, Clone)]
pub(crate) struct Jail {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    name: String,
    /// Where the root is, for readiness and for programs run inside it. Never used to open
    /// a client's path.
    path: PathBuf,
    root: Dir,
    deny: DenyList,
}

/// Runs blocking file-system work on tokio's blocking pool.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ToolError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ToolError::internal("file-system task", e))
}

/// cap-std's error for a path that resolves outside the directory handle.
fn is_escape(error: &std::io::Error) -> bool {
    error.kind() == ErrorKind::PermissionDenied
        && error.to_string().contains("outside of the filesystem")
}

impl Jail {
    /// Opens the root `dir` (which must exist and be a directory) as a handle.
    pub(crate) fn open(name: &str, dir: &Path, deny: DenyList) -> Result<Self, String> {
        let cannot = |e: std::io::Error| {
            format!("root `{name}` (`{}`) cannot be opened: {e}", dir.display())
        };
        let path = std::fs::canonicalize(dir).map_err(cannot)?;
        if !path.is_dir() {
            return Err(format!(
                "root `{name}` (`{}`) is not a directory",
                dir.display()
            ));
        }
        let root = Dir::open_ambient_dir(&path, cap_std::ambient_authority()).map_err(cannot)?;
        Ok(Self {
            inner: Arc::new(Inner {
                name: name.to_owned(),
                path,
                root,
                deny,
            }),
        })
    }

    pub(crate) fn name(&self) -> &str {
        &self.inner.name
    }

    /// Whether the root-relative `rel` is on the deny list.
    pub(crate) fn is_denied(&self, rel: &str) -> bool {
        self.inner.deny.is_denied(rel)
    }

    /// Where `rel` (resolved by this jail) is on the host, for a program run inside the root
    /// (its working directory); never used to open a client's path.
    pub(crate) fn host_path(&self, rel: &str) -> PathBuf {
        if rel.is_empty() {
            self.inner.path.clone()
        } else {
            self.inner.path.join(rel)
        }
    }

    /// Whether the root is still there and is still the directory the handle opened at
    /// start-up (readiness): a root moved or replaced (a new release behind a symlink) is
    /// not what the tools serve until a restart.
    pub(crate) async fn is_available(&self) -> bool {
        use std::os::unix::fs::MetadataExt as _;
        let inner = Arc::clone(&self.inner);
        blocking(move || {
            let (Ok(now), Ok(opened)) = (std::fs::metadata(&inner.path), inner.root.dir_metadata())
            else {
                return false;
            };
            use cap_std::fs::MetadataExt as _;
            now.is_dir() && now.dev() == opened.dev() && now.ino() == opened.ino()
        })
        .await
        .unwrap_or(false)
    }

    /// Resolves an existing path.
    pub(crate) async fn locate(&self, raw: &str) -> Result<Located, ToolError> {
        let inner = Arc::clone(&self.inner);
        let raw = raw.to_owned();
        blocking(move || inner.locate(&raw)).await?
    }

    /// Resolves a path that may not exist yet (for writes): its directory must exist inside
    /// the root, and if the file exists it must be a regular file, not a symlink.
    pub(crate) async fn locate_for_write(&self, raw: &str) -> Result<Located, ToolError> {
        let inner = Arc::clone(&self.inner);
        let raw = raw.to_owned();
        blocking(move || inner.locate_for_write(&raw)).await?
    }

    pub(crate) fn stat(&self, at: &Located) -> Stat {
        match &at.meta {
            Some(meta) => Stat {
                is_dir: meta.is_dir(),
                len: meta.len(),
                modified: meta
                    .modified()
                    .ok()
                    .map(cap_std::time::SystemTime::into_std),
                readonly: meta.permissions().readonly(),
            },
            None => Stat {
                is_dir: false,
                len: 0,
                modified: None,
                readonly: false,
            },
        }
    }

    /// Lists a directory, leaving out denied entries. Returns the entries (sorted, at most
    /// `max`) and whether more were left out.
    pub(crate) async fn list(
        &self,
        raw: &str,
        at: &Located,
        max: usize,
    ) -> Result<(Vec<Entry>, bool), ToolError> {
        let inner = Arc::clone(&self.inner);
        let (raw, at) = (raw.to_owned(), at.clone());
        blocking(move || inner.list(&raw, &at, max)).await?
    }

    /// Reads a whole file of at most `max` bytes, telling text from binary.
    pub(crate) async fn read(
        &self,
        raw: &str,
        at: &Located,
        max: u64,
    ) -> Result<FileContent, ToolError> {
        let bytes = self.read_bytes(raw, at, max).await?;
        if content_inspector::inspect(&bytes).is_binary() {
            return Ok(FileContent::Binary {
                len: bytes.len() as u64,
            });
        }
        match String::from_utf8(bytes) {
            Ok(text) => Ok(FileContent::Text(text)),
            Err(e) => Ok(FileContent::Binary {
                len: e.as_bytes().len() as u64,
            }),
        }
    }

    /// Reads a whole file of at most `max` bytes, in one trip to the blocking pool.
    pub(crate) async fn read_bytes(
        &self,
        raw: &str,
        at: &Located,
        max: u64,
    ) -> Result<Vec<u8>, ToolError> {
        let inner = Arc::clone(&self.inner);
        let (raw, at) = (raw.to_owned(), at.clone());
        blocking(move || inner.read_bytes(&raw, &at, max)).await?
    }

    /// Replaces (or creates) a file atomically: a fresh temporary file in the same
    /// directory, renamed over the target.
    pub(crate) async fn write(
        &self,
        raw: &str,
        at: &Located,
        content: Vec<u8>,
    ) -> Result<(), ToolError> {
        let inner = Arc::clone(&self.inner);
        let (raw, at) = (raw.to_owned(), at.clone());
        blocking(move || inner.write(&raw, &at, &content)).await?
    }

    /// Removes a regular file (resolved by [`Jail::locate_for_write`], so not a symlink).
    pub(crate) async fn remove(&self, raw: &str, at: &Located) -> Result<(), ToolError> {
        let inner = Arc::clone(&self.inner);
        let (raw, at) = (raw.to_owned(), at.clone());
        blocking(move || {
            let (parent, name) = at.parent_and_name();
            let failed = |e: std::io::Error| inner.io_error(&raw, "delete", e);
            inner
                .open_dir(parent)
                .map_err(failed)?
                .remove_file(name)
                .map_err(failed)
        })
        .await?
    }

    /// Creates the directories of `raw` (a root-relative directory path, lexically checked
    /// and not denied) that do not exist yet, beneath the root's handle.
    pub(crate) async fn create_dirs(&self, raw: &str) -> Result<(), ToolError> {
        let inner = Arc::clone(&self.inner);
        let raw = raw.to_owned();
        blocking(move || {
            let rel = inner.lexical(&raw)?;
            if rel.is_empty() {
                return Ok(());
            }
            inner.root.create_dir_all(&rel).map_err(|e| {
                if is_escape(&e) {
                    inner.outside(&raw)
                } else {
                    inner.io_error(&raw, "create the folder of", e)
                }
            })
        })
        .await?
    }

    /// Walks the tree under `at` without following symlinks or entering denied paths, calling
    /// `visit(relative_path, reader)` for each regular file, until `visit` returns false or
    /// `max_entries` entries were seen. Returns whether the walk stopped early. Blocking:
    /// call it on the blocking pool.
    pub(crate) fn walk_blocking(
        &self,
        at: &Located,
        max_entries: usize,
        mut visit: impl FnMut(&str, &FileReader<'_>) -> bool,
    ) -> bool {
        let inner = &self.inner;
        let Ok(start) = inner.open_dir(&at.rel) else {
            return false;
        };
        let mut stack = vec![(start, at.rel.clone())];
        let mut seen = 0usize;
        while let Some((dir, rel)) = stack.pop() {
            let Ok(reader) = dir.entries() else {
                continue;
            };
            let mut children: Vec<_> = reader.filter_map(Result::ok).collect();
            children.sort_by_key(cap_std::fs::DirEntry::file_name);
            // Files of a directory come in name order, then its subdirectories, depth first.
            let mut subdirs = Vec::new();
            for entry in children {
                seen += 1;
                if seen > max_entries {
                    return true;
                }
                let Ok(name) = entry.file_name().into_string() else {
                    continue;
                };
                let child_rel = if rel.is_empty() {
                    name.clone()
                } else {
                    format!("{rel}/{name}")
                };
                if inner.deny.is_denied(&child_rel) {
                    continue;
                }
                let Ok(file_type) = entry.file_type() else {
                    continue;
                };
                if file_type.is_dir() {
                    if let Ok(sub) = dir.open_dir_nofollow(&name) {
                        subdirs.push((sub, child_rel));
                    }
                } else if file_type.is_file() {
                    let reader = FileReader {
                        dir: &dir,
                        name: &name,
                    };
                    if !visit(&child_rel, &reader) {
                        return true;
                    }
                }
            }
            stack.extend(subdirs.into_iter().rev());
        }
        false
    }
}

/// What is at a path now, as [`Jail::probe_blocking`] sees it.
pub(crate) enum Probe<'a> {
    /// A regular file.
    File(&'a FileReader<'a>),
    /// A directory.
    Dir,
    /// Nothing the jail serves: missing, denied, a symlink, a special file, unreadable.
    Nothing,
}

impl Jail {
    /// Looks at the one entry `rel` (slash-separated, relative to the root, as the watcher
    /// reports it) without following symlinks or passing a denied directory, and hands
    /// what is there to `visit`. Blocking: call it on the blocking pool.
    pub(crate) fn probe_blocking<T>(&self, rel: &str, visit: impl FnOnce(Probe<'_>) -> T) -> T {
        let inner = &self.inner;
        let denied = rel
            .match_indices('/')
            .map(|(at, _)| &rel[..at])
            .chain(std::iter::once(rel))
            .any(|prefix| inner.deny.is_denied(prefix));
        let (parent, name) = rel.rsplit_once('/').unwrap_or(("", rel));
        let parts_ok = !rel.is_empty()
            && rel
                .split('/')
                .all(|part| !part.is_empty() && part != "." && part != "..");
        if denied || !parts_ok {
            return visit(Probe::Nothing);
        }
        let Ok(dir) = inner.open_dir(parent) else {
            return visit(Probe::Nothing);
        };
        match dir.symlink_metadata(name) {
            Ok(meta) if meta.is_dir() => visit(Probe::Dir),
            Ok(meta) if meta.is_file() => visit(Probe::File(&FileReader { dir: &dir, name })),
            _ => visit(Probe::Nothing),
        }
    }
}

/// What tells a file's versions apart without reading it: size, modification time, inode.
pub(crate) type Stamp = (u64, Option<SystemTime>, u64);

/// A regular file met during [`Jail::walk_blocking`], readable through its directory handle.
pub(crate) struct FileReader<'a> {
    dir: &'a Dir,
    name: &'a str,
}

impl FileReader<'_> {
    /// Size, modification time and inode, without opening the file.
    pub(crate) fn fingerprint(&self) -> Option<Stamp> {
        use cap_std::fs::MetadataExt as _;
        let meta = self.dir.symlink_metadata(self.name).ok()?;
        let modified = meta
            .modified()
            .ok()
            .map(cap_std::time::SystemTime::into_std);
        Some((meta.len(), modified, meta.ino()))
    }

    /// How many names the file has (hard links): a file linked from outside the root has
    /// more than one.
    pub(crate) fn links(&self) -> Option<u64> {
        use cap_std::fs::MetadataExt as _;
        Some(self.dir.symlink_metadata(self.name).ok()?.nlink())
    }

    /// The file's text: `None` when it is larger than `max`, unreadable or binary.
    pub(crate) fn text(&self, max: u64) -> Option<String> {
        let bytes = self.bytes(max)?;
        if content_inspector::inspect(&bytes).is_binary() {
            return None;
        }
        String::from_utf8(bytes).ok()
    }

    /// The file's bytes: `None` when it is larger than `max` (also when it grew past it
    /// while being read) or unreadable.
    pub(crate) fn bytes(&self, max: u64) -> Option<Vec<u8>> {
        let file = open_regular(self.dir, self.name).ok()?;
        let meta = file.metadata().ok()?;
        if !meta.is_file() || meta.len() > max {
            return None;
        }
        let mut bytes = Vec::new();
        file.take(max + 1).read_to_end(&mut bytes).ok()?;
        (bytes.len() as u64 <= max).then_some(bytes)
    }
}

/// Opens `name` in `dir` for reading without following a symlink, and without blocking
/// on a FIFO or device (`O_NONBLOCK`; it does nothing to regular files).
fn open_regular(dir: &Dir, name: &str) -> std::io::Result<cap_std::fs::File> {
    let mut options = OpenOptions::new();
    options
        .read(true)
        .follow(FollowSymlinks::No)
        .custom_flags(libc::O_NONBLOCK);
    dir.open_with(name, &options)
}

impl Inner {
    /// The lexical checks: returns the normalised relative path.
    fn lexical(&self, raw: &str) -> Result<String, ToolError> {
        if raw.contains('\0') {
            return Err(ToolError::rejected(
                "path contains a NUL byte; give a plain relative path",
            ));
        }
        let looks_absolute = raw.starts_with('/')
            || raw.starts_with('\\')
            || raw.as_bytes().get(1) == Some(&b':') && raw.as_bytes()[0].is_ascii_alphabetic();
        // Absolute paths are not echoed back: they name places outside the root.
        if looks_absolute {
            return Err(self.absolute());
        }
        let mut parts = Vec::new();
        for component in Path::new(raw).components() {
            match component {
                Component::Normal(part) => {
                    let Some(part) = part.to_str() else {
                        return Err(ToolError::rejected("path is not valid UTF-8"));
                    };
                    parts.push(part);
                }
                Component::CurDir => {}
                Component::ParentDir => {
                    return Err(ToolError::rejected(format!(
                        "path `{raw}` leaves the root `{}`; `..` is not allowed",
                        self.name
                    )));
                }
                Component::RootDir | Component::Prefix(_) => return Err(self.absolute()),
            }
        }
        let rel = parts.join("/");
        self.check_denied(raw, &rel)?;
        Ok(rel)
    }

    fn absolute(&self) -> ToolError {
        ToolError::rejected(format!(
            "the path is absolute; paths are relative to the root `{}`",
            self.name
        ))
    }

    fn check_denied(&self, raw: &str, rel: &str) -> Result<(), ToolError> {
        if self.deny.is_denied(rel) {
            return Err(ToolError::rejected(format!(
                "path `{raw}` is denied by policy: secrets such as `.env*`, `.git/`, `*.pem`, `*.key` and `id_*` (and the root's own deny list) are never served"
            )));
        }
        Ok(())
    }

    fn outside(&self, raw: &str) -> ToolError {
        ToolError::rejected(format!(
            "path `{raw}` resolves outside the root `{}`",
            self.name
        ))
    }

    fn not_found(&self, raw: &str) -> ToolError {
        ToolError::NotFound(format!(
            "no such file or directory `{raw}` in the root `{}`",
            self.name
        ))
    }

    fn io_error(&self, raw: &str, action: &str, error: std::io::Error) -> ToolError {
        if is_escape(&error) {
            return self.outside(raw);
        }
        match error.kind() {
            ErrorKind::NotFound => self.not_found(raw),
            ErrorKind::PermissionDenied => {
                ToolError::rejected(format!("permission denied to {action} `{raw}`"))
            }
            ErrorKind::InvalidFilename => ToolError::rejected(format!(
                "the path is too long (or a name in it is) for the root `{}`",
                self.name
            )),
            ErrorKind::NotADirectory => ToolError::rejected(format!(
                "`{raw}` is a file, not a directory; use read_file or file_info"
            )),
            // A symlink where the resolved path had none: the tree changed under the call.
            _ if error.raw_os_error() == Some(libc::ELOOP) => ToolError::rejected(format!(
                "`{raw}` changed while it was being opened; try again"
            )),
            _ => ToolError::internal(format!("{action} a file in root `{}`", self.name), error),
        }
    }

    /// Resolves `rel` (lexically clean) beneath the root: symlinks inside are followed, any
    /// that lead out are refused. The result is symlink-free and checked against the deny
    /// list.
    fn resolve(&self, raw: &str, rel: &str) -> Result<String, ToolError> {
        let target = if rel.is_empty() { "." } else { rel };
        let canonical = self
            .root
            .canonicalize(target)
            .map_err(|e| self.io_error(raw, "open", e))?;
        let mut parts = Vec::new();
        for component in canonical.components() {
            match component {
                Component::Normal(part) => parts.push(
                    part.to_str()
                        .ok_or_else(|| ToolError::rejected("path is not valid UTF-8"))?,
                ),
                Component::CurDir => {}
                _ => return Err(self.outside(raw)),
            }
        }
        let resolved = parts.join("/");
        self.check_denied(raw, &resolved)?;
        Ok(resolved)
    }

    /// Opens the directory at `rel` (symlink-free) one component at a time from the root,
    /// never following a symlink.
    fn open_dir(&self, rel: &str) -> std::io::Result<Dir> {
        let mut dir = self.root.try_clone()?;
        for part in rel.split('/').filter(|p| !p.is_empty()) {
            dir = dir.open_dir_nofollow(part)?;
        }
        Ok(dir)
    }

    /// `rel` reached without meeting a symlink: every directory on the way opened without
    /// following one, and the entry itself not one. `lexical` left no `.`, `..` or empty
    /// component, so `rel` is then its own canonical path (what [`Inner::resolve`] would
    /// return, already checked against the deny list) and the full resolution, several
    /// system calls per component, is not needed. `None` for anything else (a symlink, a
    /// missing entry, any error): the full resolution decides, and words the refusal.
    fn locate_direct(&self, rel: &str) -> Option<Located> {
        let (parent, name) = rel.rsplit_once('/').unwrap_or(("", rel));
        if name.is_empty() {
            return None;
        }
        let meta = if parent.is_empty() {
            self.root.symlink_metadata(name)
        } else {
            self.open_dir(parent)
                .and_then(|dir| dir.symlink_metadata(name))
        }
        .ok()?;
        (!meta.file_type().is_symlink()).then(|| Located {
            rel: rel.to_owned(),
            meta: Some(meta),
        })
    }

    fn locate(&self, raw: &str) -> Result<Located, ToolError> {
        let rel = self.lexical(raw)?;
        if let Some(located) = self.locate_direct(&rel) {
            return Ok(located);
        }
        let rel = self.resolve(raw, &rel)?;
        let at = Located { rel, meta: None };
        let meta = if at.rel.is_empty() {
            self.root.dir_metadata()
        } else {
            let (parent, name) = at.parent_and_name();
            self.open_dir(parent)
                .and_then(|dir| dir.symlink_metadata(name))
        }
        .map_err(|e| self.io_error(raw, "open", e))?;
        if meta.file_type().is_symlink() {
            return Err(ToolError::rejected(format!(
                "`{raw}` changed while it was being opened; try again"
            )));
        }
        Ok(Located {
            meta: Some(meta),
            ..at
        })
    }

    fn locate_for_write(&self, raw: &str) -> Result<Located, ToolError> {
        let rel = self.lexical(raw)?;
        let (parent_rel, file_name) = rel.rsplit_once('/').unwrap_or(("", rel.as_str()));
        if file_name.is_empty() {
            return Err(ToolError::rejected(
                "give the path of a file to write, not the root",
            ));
        }
        let parent = self.resolve(raw, parent_rel).map_err(|e| match e {
            ToolError::NotFound(_) => ToolError::rejected(format!(
                "the directory of `{raw}` does not exist in the root `{}`; only existing directories can be written to",
                self.name
            )),
            other => other,
        })?;
        let rel = if parent.is_empty() {
            file_name.to_owned()
        } else {
            format!("{parent}/{file_name}")
        };
        self.check_denied(raw, &rel)?;
        let dir = self
            .open_dir(&parent)
            .map_err(|e| self.io_error(raw, "open", e))?;
        let meta = match dir.symlink_metadata(file_name) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(ToolError::rejected(format!(
                    "`{raw}` is a symbolic link; only regular files can be written"
                )));
            }
            Ok(meta) if !meta.is_file() => {
                return Err(ToolError::rejected(format!(
                    "`{raw}` is not a regular file"
                )));
            }
            Ok(meta) => Some(meta),
            Err(e) if e.kind() == ErrorKind::NotFound => None,
            Err(e) => return Err(self.io_error(raw, "inspect", e)),
        };
        Ok(Located { rel, meta })
    }

    fn list(&self, raw: &str, at: &Located, max: usize) -> Result<(Vec<Entry>, bool), ToolError> {
        let dir = self
            .open_dir(&at.rel)
            .map_err(|e| self.io_error(raw, "list", e))?;
        let reader = dir.entries().map_err(|e| self.io_error(raw, "list", e))?;
        let mut entries = Vec::new();
        let mut truncated = false;
        for entry in reader {
            let entry = entry.map_err(|e| self.io_error(raw, "list", e))?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            let rel = if at.rel.is_empty() {
                name.clone()
            } else {
                format!("{}/{name}", at.rel)
            };
            if self.deny.is_denied(&rel) {
                continue;
            }
            if entries.len() >= max {
                truncated = true;
                break;
            }
            let (kind, len) = match entry.file_type() {
                Ok(t) if t.is_symlink() => (EntryKind::Symlink, 0),
                Ok(t) if t.is_dir() => (EntryKind::Dir, 0),
                Ok(t) if t.is_file() => (
                    EntryKind::File,
                    entry.metadata().map(|m| m.len()).unwrap_or(0),
                ),
                _ => (EntryKind::Other, 0),
            };
            entries.push(Entry { name, kind, len });
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok((entries, truncated))
    }

    fn read_bytes(&self, raw: &str, at: &Located, max: u64) -> Result<Vec<u8>, ToolError> {
        let refuse = |refusal: ReadRefusal| match refusal {
            ReadRefusal::NotAFile => ToolError::rejected(format!(
                "`{raw}` is not a regular file (a directory? use list_directory)"
            )),
            ReadRefusal::TooLarge(len) => ToolError::rejected(format!(
                "`{raw}` is {len} bytes, over the read limit of {max} bytes for the root `{}`",
                self.name
            )),
            ReadRefusal::Grew => ToolError::rejected(format!(
                "`{raw}` grew over the read limit of {max} bytes while being read"
            )),
        };
        if at.rel.is_empty() || at.meta.as_ref().is_some_and(Metadata::is_dir) {
            return Err(ToolError::rejected(format!(
                "`{raw}` is a directory; use list_directory"
            )));
        }
        let (parent, name) = at.parent_and_name();
        let file = self
            .open_dir(parent)
            .and_then(|dir| open_regular(&dir, name))
            .map_err(|e| self.io_error(raw, "read", e))?;
        let meta = file.metadata().map_err(|e| self.io_error(raw, "read", e))?;
        if !meta.is_file() {
            return Err(refuse(ReadRefusal::NotAFile));
        }
        if meta.len() > max {
            return Err(refuse(ReadRefusal::TooLarge(meta.len())));
        }
        let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
        // `take` bounds the read even if the file grows after the size check.
        file.take(max + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| self.io_error(raw, "read", e))?;
        if bytes.len() as u64 > max {
            return Err(refuse(ReadRefusal::Grew));
        }
        Ok(bytes)
    }

    fn write(&self, raw: &str, at: &Located, content: &[u8]) -> Result<(), ToolError> {
        let (parent, name) = at.parent_and_name();
        let failed = |e: std::io::Error| self.io_error(raw, "write", e);
        let dir = self.open_dir(parent).map_err(failed)?;
        let mut temp = cap_tempfile::TempFile::new(&dir).map_err(failed)?;
        // A replaced file keeps its permissions (set before the content is written, so the
        // new content is never more readable than the old), without setuid, setgid or
        // sticky bits.
        if let Ok(existing) = dir.symlink_metadata(name)
            && existing.is_file()
        {
            use cap_std::fs::PermissionsExt as _;
            let mode = existing.permissions().mode() & 0o777;
            temp.as_file()
                .set_permissions(cap_std::fs::Permissions::from_mode(mode))
                .map_err(failed)?;
        }
        temp.write_all(content).map_err(failed)?;
        temp.as_file().sync_data().map_err(failed)?;
        temp.replace(name).map_err(failed)
    }
}

impl Jail {
    /// Opens a configured folder of `kind` (`notes`, `skills`) at `path` below `base_dir`
    /// with its deny list; the error names the folder.
    pub(crate) fn open_folder(
        kind: &str,
        name: &str,
        path: &Path,
        deny: &[String],
        deny_ignore_case: bool,
    ) -> Result<Self, String> {
        let deny = DenyList::new(deny, deny_ignore_case)
            .map_err(|e| format!("{kind} folder `{name}`: {e}"))?;
        Self::open(name, path, deny).map_err(|e| format!("{kind} {e}"))
    }
}

/// The readiness of a pack's roots: each still the directory opened at start-up
/// ([`Jail::is_available`]); `what` names one in the answer (`root`, `notes folder`).
pub(crate) struct RootsReady {
    pub(crate) what: &'static str,
    pub(crate) jails: Vec<Jail>,
}

#[async_trait::async_trait]
impl portcullis_core::Readiness for RootsReady {
    async fn check(&self) -> Result<(), portcullis_core::NotReady> {
        for jail in &self.jails {
            if !jail.is_available().await {
                return Err(portcullis_core::NotReady::new(format!(
                    "{} `{}` is not available",
                    self.what,
                    jail.name()
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The direct path and the full resolution agree: a path with no symlink on it is its
    /// own canonical path, and one with a symlink anywhere is resolved (and its target
    /// checked) as before.
    #[test]
    #[allow(
        clippy::disallowed_methods,
        reason = "the test builds its fixture tree outside any jail"
    )]
    fn paths_with_and_without_symlinks_resolve_to_their_canonical_path() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let (root, outside) = (dir.path().join("root"), dir.path().join("outside"));
        for sub in ["real/deeper", "outside"] {
            let path = if sub == "outside" {
                outside.clone()
            } else {
                root.join(sub)
            };
            std::fs::create_dir_all(path).unwrap();
        }
        std::fs::write(root.join("real/deeper/x.txt"), "x").unwrap();
        std::fs::write(root.join(".env"), "SECRET=1").unwrap();
        std::fs::write(outside.join("secret.txt"), "s").unwrap();
        symlink("real", root.join("alias")).unwrap();
        symlink("real/deeper/x.txt", root.join("x-link")).unwrap();
        symlink(".env", root.join("env-link")).unwrap();
        symlink(outside.join("secret.txt"), root.join("out-link")).unwrap();
        symlink(&outside, root.join("out-dir")).unwrap();
        let jail = Jail::open("t", &root, DenyList::new(&[], true).unwrap()).unwrap();
        let inner = &jail.inner;

        for (raw, rel) in [
            ("real/deeper/x.txt", "real/deeper/x.txt"),
            ("./real//deeper/x.txt", "real/deeper/x.txt"),
            ("real/deeper", "real/deeper"),
            ("alias/deeper/x.txt", "real/deeper/x.txt"),
            ("x-link", "real/deeper/x.txt"),
            (".", ""),
        ] {
            let located = inner.locate(raw).unwrap_or_else(|e| panic!("{raw}: {e:?}"));
            assert_eq!(located.rel, rel, "{raw}");
            assert!(located.meta.is_some(), "{raw}");
        }
        assert!(inner.locate_direct("real/deeper/x.txt").is_some());
        for through_a_symlink in ["alias/deeper/x.txt", "x-link", "out-dir/secret.txt"] {
            assert!(
                inner.locate_direct(through_a_symlink).is_none(),
                "{through_a_symlink} must take the full resolution"
            );
        }
        for refused in [
            "env-link",
            "out-link",
            "out-dir/secret.txt",
            "out-dir",
            ".env",
        ] {
            assert!(inner.locate(refused).is_err(), "{refused} must be refused");
        }
    }

    /// The path corpus, one row per input: what `locate` (read) and `locate_for_write`
    /// answer, as the resolved path or the class of refusal the model is told. A failing
    /// row names the input and both answers.
    #[test]
    #[allow(
        clippy::disallowed_methods,
        reason = "the test builds its fixture tree outside any jail"
    )]
    fn the_path_corpus() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let (root, outside) = (dir.path().join("root"), dir.path().join("outside"));
        std::fs::create_dir_all(root.join("docs/sub")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(root.join("docs/a.txt"), "a").unwrap();
        std::fs::write(root.join("docs/sub/b.txt"), "b").unwrap();
        std::fs::write(root.join("id_rsa"), "k").unwrap();
        std::fs::create_dir_all(root.join(".git")).unwrap();
        std::fs::write(root.join(".git/config"), "c").unwrap();
        std::fs::write(outside.join("s.txt"), "s").unwrap();
        symlink("docs", root.join("docs-link")).unwrap();
        symlink(&outside, root.join("out")).unwrap();
        symlink(outside.join("s.txt"), root.join("out-file")).unwrap();
        symlink("docs/a.txt", root.join("a-link")).unwrap();
        symlink("missing", root.join("dangling")).unwrap();
        let jail = Jail::open(
            "t",
            &root,
            DenyList::new(&["*.secret".to_owned()], true).unwrap(),
        )
        .unwrap();
        let inner = &jail.inner;

        /// What a call answers: the path inside the root, or the refusal's class.
        fn class(result: Result<Located, ToolError>) -> String {
            match result {
                Ok(at) => format!("ok:{}", at.rel),
                Err(ToolError::NotFound(_)) => "not found".to_owned(),
                Err(error) => {
                    let text = error.to_string();
                    [
                        ("is denied by policy", "denied"),
                        ("resolves outside the root", "outside"),
                        ("`..` is not allowed", "dot-dot"),
                        ("the path is absolute", "absolute"),
                        ("NUL byte", "nul"),
                        ("symbolic link; only regular files", "symlink"),
                        ("is not a regular file", "not a file"),
                        ("does not exist in the root", "no directory"),
                        ("not the root", "the root"),
                    ]
                    .iter()
                    .find(|(needle, _)| text.contains(needle))
                    .map_or_else(
                        || format!("other: {text}"),
                        |(_, class)| (*class).to_owned(),
                    )
                }
            }
        }
        let check = |raw: &str, read: &str, write: &str| {
            let got = (class(inner.locate(raw)), class(inner.locate_for_write(raw)));
            assert_eq!(
                (got.0.as_str(), got.1.as_str()),
                (read, write),
                "{raw:?}: (read, write)"
            );
        };
        //    input                    read                    write
        check("docs/a.txt", "ok:docs/a.txt", "ok:docs/a.txt");
        check("./docs//a.txt", "ok:docs/a.txt", "ok:docs/a.txt");
        check("docs/new.txt", "not found", "ok:docs/new.txt");
        check("nowhere/new.txt", "not found", "no directory");
        check("docs", "ok:docs", "not a file");
        check(".", "ok:", "the root");
        check("", "ok:", "the root");
        check("docs-link/a.txt", "ok:docs/a.txt", "ok:docs/a.txt");
        check("a-link", "ok:docs/a.txt", "symlink");
        check("dangling", "not found", "symlink");
        check("out/s.txt", "outside", "outside");
        check("out", "outside", "symlink");
        check("out-file", "outside", "symlink");
        check("../outside/s.txt", "dot-dot", "dot-dot");
        check("docs/../../outside", "dot-dot", "dot-dot");
        check("/etc/passwd", "absolute", "absolute");
        check("\\server\\share", "absolute", "absolute");
        check("C:/Windows", "absolute", "absolute");
        check("docs/a.txt\0.png", "nul", "nul");
        check("id_rsa", "denied", "denied");
        check("ID_RSA", "denied", "denied");
        check(".git/config", "denied", "denied");
        check(".GIT/config", "denied", "denied");
        check(".env", "denied", "denied");
        check("docs/x.secret", "denied", "denied");
        check("docs/X.SECRET", "denied", "denied");
    }
}
