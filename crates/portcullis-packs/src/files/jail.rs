//! The jail: the only code in the files pack that touches the file system. Every path a
//! client gives is checked lexically (no NUL, not absolute, no `..`, not denied), then
//! resolved with symlinks followed and checked again against the canonical root and the
//! deny list, so a symlink can neither lead out of the root nor onto a denied file.

use std::io::ErrorKind;
use std::path::{Component, Path, PathBuf};
use std::time::SystemTime;

use portcullis_server::ToolError;

use super::deny::DenyList;

/// A path inside the root.
#[derive(Debug, Clone)]
pub(crate) struct Located {
    /// Absolute, canonical (for existing paths) path.
    pub abs: PathBuf,
    /// Slash-separated path relative to the root; empty for the root itself.
    pub rel: String,
    /// Metadata read while resolving (existing paths only).
    pub meta: Option<std::fs::Metadata>,
}

enum ReadRefusal {
    Directory,
    TooLarge(u64),
    Grew,
}

/// Runs blocking file-system work on tokio's blocking pool.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ToolError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ToolError::internal("file-system task", e))
}

/// What [`Jail::stat`] reports.
#[derive(Debug, Clone)]
pub(crate) struct Stat {
    pub is_dir: bool,
    pub len: u64,
    pub modified: Option<SystemTime>,
    pub readonly: bool,
}

/// One entry of a directory listing.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub name: String,
    pub kind: EntryKind,
    pub len: u64,
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

/// One directory tree root with its deny list.
#[derive(Debug)]
pub(crate) struct Jail {
    name: String,
    dir: PathBuf,
    deny: DenyList,
}

impl Jail {
    /// Opens the root `dir` (which must exist and be a directory).
    pub(crate) fn open(name: &str, dir: &Path, deny: DenyList) -> Result<Self, String> {
        let canonical = std::fs::canonicalize(dir).map_err(|e| {
            format!(
                "files root `{name}` (`{}`) cannot be opened: {e}",
                dir.display()
            )
        })?;
        if !canonical.is_dir() {
            return Err(format!(
                "files root `{name}` (`{}`) is not a directory",
                dir.display()
            ));
        }
        Ok(Self {
            name: name.to_owned(),
            dir: canonical,
            deny,
        })
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Whether the root directory is still there (readiness).
    pub(crate) async fn is_available(&self) -> bool {
        tokio::fs::metadata(&self.dir)
            .await
            .is_ok_and(|m| m.is_dir())
    }

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

    /// The canonical path's position relative to the root, or an error when it lies outside.
    fn inside(&self, raw: &str, canonical: &Path) -> Result<String, ToolError> {
        let rel = canonical.strip_prefix(&self.dir).map_err(|_| {
            ToolError::rejected(format!(
                "path `{raw}` resolves outside the root `{}`",
                self.name
            ))
        })?;
        let rel = rel
            .to_str()
            .ok_or_else(|| ToolError::rejected("path is not valid UTF-8"))?
            .to_owned();
        self.check_denied(raw, &rel)?;
        Ok(rel)
    }

    fn not_found(&self, raw: &str) -> ToolError {
        ToolError::NotFound(format!(
            "no such file or directory `{raw}` in the root `{}`",
            self.name
        ))
    }

    fn io_error(&self, raw: &str, action: &str, error: std::io::Error) -> ToolError {
        match error.kind() {
            ErrorKind::NotFound => self.not_found(raw),
            ErrorKind::PermissionDenied => {
                ToolError::rejected(format!("permission denied to {action} `{raw}`"))
            }
            _ => ToolError::internal(format!("{action} a file in root `{}`", self.name), error),
        }
    }

    /// Resolves an existing path.
    pub(crate) async fn locate(&self, raw: &str) -> Result<Located, ToolError> {
        let rel = self.lexical(raw)?;
        let joined = self.dir.join(&rel);
        // One trip to the blocking pool for both system calls: each `tokio::fs` call is a
        // separate hand-off, and on a hot path the hand-offs cost more than the calls.
        let (canonical, meta) = blocking(move || {
            let canonical = std::fs::canonicalize(&joined)?;
            let meta = std::fs::metadata(&canonical)?;
            Ok((canonical, meta))
        })
        .await?
        .map_err(|e| self.io_error(raw, "open", e))?;
        let rel = self.inside(raw, &canonical)?;
        Ok(Located {
            abs: canonical,
            rel,
            meta: Some(meta),
        })
    }

    /// Resolves a path that may not exist yet (for writes): its parent must exist inside the
    /// root, and if it exists it must be a regular file, not a symlink.
    pub(crate) async fn locate_for_write(&self, raw: &str) -> Result<Located, ToolError> {
        let rel = self.lexical(raw)?;
        let (parent_rel, file_name) = rel.rsplit_once('/').unwrap_or(("", rel.as_str()));
        if file_name.is_empty() {
            return Err(ToolError::rejected(
                "give the path of a file to write, not the root",
            ));
        }
        let parent = tokio::fs::canonicalize(self.dir.join(parent_rel)).await.map_err(|e| match e.kind() {
            ErrorKind::NotFound => ToolError::rejected(format!(
                "the directory of `{raw}` does not exist in the root `{}`; only existing directories can be written to",
                self.name
            )),
            _ => self.io_error(raw, "open", e),
        })?;
        self.inside(raw, &parent)?;
        let abs = parent.join(file_name);
        match tokio::fs::symlink_metadata(&abs).await {
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
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(self.io_error(raw, "inspect", e)),
        }
        let rel = self.inside(raw, &abs)?;
        Ok(Located {
            abs,
            rel,
            meta: None,
        })
    }

    pub(crate) async fn stat(&self, raw: &str, at: &Located) -> Result<Stat, ToolError> {
        let meta = match &at.meta {
            Some(meta) => meta.clone(),
            None => tokio::fs::metadata(&at.abs)
                .await
                .map_err(|e| self.io_error(raw, "inspect", e))?,
        };
        Ok(Stat {
            is_dir: meta.is_dir(),
            len: meta.len(),
            modified: meta.modified().ok(),
            readonly: meta.permissions().readonly(),
        })
    }

    /// Lists a directory, leaving out denied entries. Returns the entries (sorted, at most
    /// `max`) and whether more were left out.
    pub(crate) async fn list(
        &self,
        raw: &str,
        at: &Located,
        max: usize,
    ) -> Result<(Vec<Entry>, bool), ToolError> {
        let mut reader =
            tokio::fs::read_dir(&at.abs)
                .await
                .map_err(|e| match e.raw_os_error() {
                    Some(20) => ToolError::rejected(format!(
                        "`{raw}` is a file, not a directory; use read_file or file_info"
                    )),
                    _ => self.io_error(raw, "list", e),
                })?;
        let mut entries = Vec::new();
        let mut truncated = false;
        while let Some(entry) = reader
            .next_entry()
            .await
            .map_err(|e| self.io_error(raw, "list", e))?
        {
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
            let (kind, len) = match entry.file_type().await {
                Ok(t) if t.is_symlink() => (EntryKind::Symlink, 0),
                Ok(t) if t.is_dir() => (EntryKind::Dir, 0),
                Ok(t) if t.is_file() => (
                    EntryKind::File,
                    entry.metadata().await.map(|m| m.len()).unwrap_or(0),
                ),
                _ => (EntryKind::Other, 0),
            };
            entries.push(Entry { name, kind, len });
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok((entries, truncated))
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
        use std::io::Read as _;
        let path = at.abs.clone();
        let read = blocking(move || {
            let file = std::fs::File::open(&path)?;
            let meta = file.metadata()?;
            if meta.is_dir() {
                return Ok(Err(ReadRefusal::Directory));
            }
            if meta.len() > max {
                return Ok(Err(ReadRefusal::TooLarge(meta.len())));
            }
            let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
            // `take` bounds the read even if the file grows after the size check.
            file.take(max + 1).read_to_end(&mut bytes)?;
            if bytes.len() as u64 > max {
                return Ok(Err(ReadRefusal::Grew));
            }
            Ok(Ok(bytes))
        })
        .await?
        .map_err(|e| self.io_error(raw, "read", e))?;
        read.map_err(|refusal| match refusal {
            ReadRefusal::Directory => {
                ToolError::rejected(format!("`{raw}` is a directory; use list_directory"))
            }
            ReadRefusal::TooLarge(len) => ToolError::rejected(format!(
                "`{raw}` is {len} bytes, over the read limit of {max} bytes for the root `{}`",
                self.name
            )),
            ReadRefusal::Grew => ToolError::rejected(format!(
                "`{raw}` grew over the read limit of {max} bytes while being read"
            )),
        })
    }

    /// Replaces (or creates) a file atomically: write a temporary sibling, then rename.
    #[allow(
        clippy::disallowed_methods,
        reason = "the jail is the one place files are written"
    )]
    pub(crate) async fn write(
        &self,
        raw: &str,
        at: &Located,
        content: &[u8],
    ) -> Result<(), ToolError> {
        let parent = at.abs.parent().ok_or_else(|| self.not_found(raw))?;
        let file_name = at
            .abs
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("file");
        let temp = parent.join(format!(
            ".{file_name}.portcullis-{}.tmp",
            std::process::id()
        ));
        tokio::fs::write(&temp, content)
            .await
            .map_err(|e| self.io_error(raw, "write", e))?;
        if let Err(e) = tokio::fs::rename(&temp, &at.abs).await {
            let _ = tokio::fs::remove_file(&temp).await;
            return Err(self.io_error(raw, "write", e));
        }
        Ok(())
    }

    /// Walks the tree under `at` without following symlinks or entering denied paths, calling
    /// `visit(relative_path, absolute_path)` for each regular file, until `visit` returns
    /// false or `max_entries` entries were seen. Returns whether the walk stopped early.
    /// Runs on the blocking pool: directory walking is blocking I/O.
    pub(crate) fn walk_blocking(
        &self,
        at: &Located,
        max_entries: usize,
        mut visit: impl FnMut(&str, &Path) -> bool,
    ) -> bool {
        let mut stack = vec![(at.abs.clone(), at.rel.clone())];
        let mut seen = 0usize;
        while let Some((dir, rel)) = stack.pop() {
            let Ok(reader) = std::fs::read_dir(&dir) else {
                continue;
            };
            let mut children: Vec<_> = reader.filter_map(Result::ok).collect();
            children.sort_by_key(std::fs::DirEntry::file_name);
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
                    name
                } else {
                    format!("{rel}/{name}")
                };
                if self.deny.is_denied(&child_rel) {
                    continue;
                }
                let Ok(file_type) = entry.file_type() else {
                    continue;
                };
                if file_type.is_dir() {
                    subdirs.push((entry.path(), child_rel));
                } else if file_type.is_file() && !visit(&child_rel, &entry.path()) {
                    return true;
                }
            }
            stack.extend(subdirs.into_iter().rev());
        }
        false
    }

    /// Reads a file for searching: `None` when it is too large, unreadable or binary.
    pub(crate) fn read_text_blocking(path: &Path, max: u64) -> Option<String> {
        let meta = std::fs::metadata(path).ok()?;
        if meta.len() > max {
            return None;
        }
        let bytes = std::fs::read(path).ok()?;
        if content_inspector::inspect(&bytes).is_binary() {
            return None;
        }
        String::from_utf8(bytes).ok()
    }
}
