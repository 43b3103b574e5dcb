//! The files tools. Each one picks its root, resolves the path through the jail and formats
//! a compact text answer for the model.

use std::fmt::Write as _;
use std::sync::Arc;

use async_trait::async_trait;
use portcullis_core::{CatalogBuilder, Tool, ToolCall, ToolError, ToolOutput};
use rmcp::model::{CallToolResult, ContentBlock, Tool as ToolDef};
use serde_json::{Value, json};

use super::{MAX_LIST_ENTRIES, Roots, str_arg};
use crate::definition::{object, read_only};
use crate::jail::{EntryKind, FileContent};

pub(super) fn register(roots: &Arc<Roots>, catalog: &mut CatalogBuilder) {
    catalog
        .tool(ListDirectory(Arc::clone(roots)))
        .tool(ReadFile(Arc::clone(roots)))
        .tool(SearchFiles(Arc::clone(roots)))
        .tool(FileInfo(Arc::clone(roots)));
    if roots.roots.iter().any(|r| r.writable) {
        catalog
            .tool(WriteFile(Arc::clone(roots)))
            .tool(EditFile(Arc::clone(roots)));
    }
}

fn text(message: impl Into<String>) -> ToolOutput {
    CallToolResult::success(vec![ContentBlock::text(message)]).into()
}

const PATH_DESCRIPTION: &str =
    "Path relative to the root, with `/` separators (for example `src/main.py`).";

struct ListDirectory(Arc<Roots>);

#[async_trait]
impl Tool for ListDirectory {
    fn pack(&self) -> &str {
        super::PACK
    }

    fn definition(&self) -> ToolDef {
        let schema = self.0.schema(
            object(json!({ "path": { "type": "string", "description": "Directory relative to the root; `.` or empty for the root itself.", "default": "." } })),
            &[],
            false,
        );
        ToolDef::new("list_directory", "List the entries of a directory (directories end with `/`). Denied files are not shown.", schema)
            .with_title("List directory")
            .with_annotations(read_only())
    }

    async fn call(&self, call: ToolCall) -> Result<ToolOutput, ToolError> {
        let root = self.0.pick(&call.arguments, false);
        let raw = str_arg(&call.arguments, "path").unwrap_or(".");
        let at = root.jail.locate(raw).await?;
        if !root.jail.stat(&at).is_dir {
            return Err(ToolError::rejected(format!(
                "`{raw}` is a file, not a directory; use read_file or file_info"
            )));
        }
        let (entries, truncated) = root.jail.list(raw, &at, MAX_LIST_ENTRIES).await?;
        let shown = if at.rel.is_empty() {
            ".".to_owned()
        } else {
            at.rel.clone()
        };
        let mut out = format!(
            "{shown} ({} entries{})\n",
            entries.len(),
            if truncated { ", truncated" } else { "" }
        );
        for entry in &entries {
            let _ = match entry.kind {
                EntryKind::Dir => writeln!(out, "{}/", entry.name),
                EntryKind::File => writeln!(out, "{}  ({} bytes)", entry.name, entry.len),
                EntryKind::Symlink => writeln!(out, "{}@", entry.name),
                EntryKind::Other => writeln!(out, "{}  (special file)", entry.name),
            };
        }
        if truncated {
            let _ = writeln!(out, "[only the first {MAX_LIST_ENTRIES} entries are shown]");
        }
        Ok(text(out))
    }
}

struct ReadFile(Arc<Roots>);

#[async_trait]
impl Tool for ReadFile {
    fn pack(&self) -> &str {
        super::PACK
    }

    fn definition(&self) -> ToolDef {
        let schema = self.0.schema(
            object(json!({
                "path": { "type": "string", "description": PATH_DESCRIPTION, "minLength": 1 },
                "offset": { "type": "integer", "minimum": 0, "description": "Number of lines to skip from the start (default 0)." },
                "limit": { "type": "integer", "minimum": 1, "description": "Most lines to return (default: all)." }
            })),
            &["path"],
            false,
        );
        ToolDef::new("read_file", "Read a text file, optionally a window of lines. Binary and oversize files are refused.", schema)
            .with_title("Read file")
            .with_annotations(read_only())
    }

    async fn call(&self, call: ToolCall) -> Result<ToolOutput, ToolError> {
        let root = self.0.pick(&call.arguments, false);
        let raw = str_arg(&call.arguments, "path").unwrap_or_default();
        let offset = call
            .arguments
            .get("offset")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let limit = call.arguments.get("limit").and_then(Value::as_u64);
        let at = root.jail.locate(raw).await?;
        match root.jail.read(raw, &at, root.max_read_bytes).await? {
            FileContent::Binary { len } => Err(ToolError::rejected(format!(
                "`{raw}` is a binary file ({len} bytes); only text files can be read with read_file"
            ))),
            FileContent::Text(content) => {
                if offset == 0 && limit.is_none() {
                    return Ok(text(content));
                }
                let total = content.lines().count() as u64;
                let skip = usize::try_from(offset).unwrap_or(usize::MAX);
                let take = limit.map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
                let window: Vec<&str> = content.lines().skip(skip).take(take).collect();
                let end = offset + window.len() as u64;
                let mut body = window.join("\n");
                if !body.is_empty() {
                    body.push('\n');
                }
                let note = if end < total {
                    format!(
                        "[lines {}-{end} of {total}; call again with offset={end} to continue]",
                        offset + 1
                    )
                } else {
                    format!(
                        "[lines {}-{end} of {total}; end of file]",
                        (offset + 1).min(total.max(1))
                    )
                };
                Ok(CallToolResult::success(vec![
                    ContentBlock::text(body),
                    ContentBlock::text(note),
                ])
                .into())
            }
        }
    }
}

struct SearchFiles(Arc<Roots>);

#[async_trait]
impl Tool for SearchFiles {
    fn pack(&self) -> &str {
        super::PACK
    }

    fn definition(&self) -> ToolDef {
        let schema = self.0.schema(
            object(json!({
                "pattern": { "type": "string", "minLength": 1, "maxLength": 256, "description": "Glob matched against file names (`*.py`) or, when it contains `/`, against paths relative to the search directory (`src/**/*.rs`)." },
                "contains": { "type": "string", "minLength": 1, "maxLength": 1024, "description": "Only files whose text contains this substring (case-sensitive); matching lines are shown." },
                "path": { "type": "string", "description": "Directory to search, relative to the root (default: the root).", "default": "." },
                "max_results": { "type": "integer", "minimum": 1, "maximum": 1000, "description": "Most matches to return (capped by the root's limit)." }
            })),
            &["pattern"],
            false,
        );
        ToolDef::new("search_files", "Find files by name glob, optionally only those containing a text substring. Bounded; denied files are skipped.", schema)
            .with_title("Search files")
            .with_annotations(read_only())
    }

    async fn call(&self, call: ToolCall) -> Result<ToolOutput, ToolError> {
        let root = self.0.pick(&call.arguments, false);
        let pattern = str_arg(&call.arguments, "pattern")
            .unwrap_or("*")
            .to_owned();
        let contains = str_arg(&call.arguments, "contains").map(str::to_owned);
        let raw = str_arg(&call.arguments, "path").unwrap_or(".");
        let requested = call
            .arguments
            .get("max_results")
            .and_then(Value::as_u64)
            .map_or(usize::MAX, |n| n as usize);
        let max_results = requested.min(root.max_search_results);
        let glob = globset::GlobBuilder::new(&pattern)
            .literal_separator(true)
            .build()
            .map_err(|e| ToolError::rejected(format!("`pattern` is not a valid glob: {e}")))?
            .compile_matcher();
        let by_path = pattern.contains('/');
        let at = root.jail.locate(raw).await?;
        if !root.jail.stat(&at).is_dir {
            return Err(ToolError::rejected(format!(
                "`{raw}` is a file, not a directory"
            )));
        }

        let max_entries = root.max_search_entries;
        let max_read = root.max_read_bytes;
        let base_len = if at.rel.is_empty() {
            0
        } else {
            at.rel.len() + 1
        };
        let cancel = call.cancel.clone();
        let jail = root.jail.clone();
        let (matches, stopped) = tokio::task::spawn_blocking(move || {
            let mut matches: Vec<String> = Vec::new();
            let stopped = jail.walk_blocking(&at, max_entries, |rel, file| {
                if cancel.is_cancelled() {
                    return false;
                }
                let relative_to_search = &rel[base_len.min(rel.len())..];
                let name = rel.rsplit('/').next().unwrap_or(rel);
                if !glob.is_match(if by_path { relative_to_search } else { name }) {
                    return true;
                }
                match &contains {
                    None => matches.push(rel.to_owned()),
                    Some(needle) => {
                        if let Some(text) = file.text(max_read) {
                            for (number, line) in text.lines().enumerate() {
                                if line.contains(needle.as_str()) {
                                    let line: String = line.trim().chars().take(200).collect();
                                    matches.push(format!("{rel}:{}: {line}", number + 1));
                                    if matches.len() >= max_results {
                                        break;
                                    }
                                }
                            }
                        }
                    }
                }
                matches.len() < max_results
            });
            (matches, stopped)
        })
        .await
        .map_err(|e| ToolError::internal("search_files walk", e))?;

        if matches.is_empty() {
            let scope = if stopped {
                " (the search stopped early at its limits)"
            } else {
                ""
            };
            return Ok(text(format!("no files match `{pattern}`{scope}")));
        }
        let mut out = matches.join("\n");
        if stopped {
            let _ = write!(
                out,
                "\n[stopped after {} matches or {max_entries} entries visited; narrow `path` or `pattern` for more]",
                matches.len()
            );
        }
        Ok(text(out))
    }
}

struct FileInfo(Arc<Roots>);

#[async_trait]
impl Tool for FileInfo {
    fn pack(&self) -> &str {
        super::PACK
    }

    fn definition(&self) -> ToolDef {
        let schema = self.0.schema(
            object(json!({ "path": { "type": "string", "description": PATH_DESCRIPTION } })),
            &["path"],
            false,
        );
        ToolDef::new("file_info", "Show a file's or directory's type, size, modification time and whether it can be written.", schema)
            .with_title("File info")
            .with_annotations(read_only())
    }

    async fn call(&self, call: ToolCall) -> Result<ToolOutput, ToolError> {
        let root = self.0.pick(&call.arguments, false);
        let raw = str_arg(&call.arguments, "path").unwrap_or(".");
        let at = root.jail.locate(raw).await?;
        let stat = root.jail.stat(&at);
        let modified = stat
            .modified
            .map(|t| humantime::format_rfc3339_seconds(t).to_string());
        let info = json!({
            "path": if at.rel.is_empty() { "." } else { at.rel.as_str() },
            "type": if stat.is_dir { "directory" } else { "file" },
            "size": stat.len,
            "modified": modified,
            "writable": root.writable && !stat.readonly,
        });
        let mut result = CallToolResult::success(vec![ContentBlock::text(
            serde_json::to_string_pretty(&info).unwrap_or_default(),
        )]);
        result.structured_content = Some(info);
        Ok(result.into())
    }
}

struct WriteFile(Arc<Roots>);

#[async_trait]
impl Tool for WriteFile {
    fn pack(&self) -> &str {
        super::PACK
    }

    fn definition(&self) -> ToolDef {
        let schema = self.0.schema(
            object(json!({
                "path": { "type": "string", "minLength": 1, "description": PATH_DESCRIPTION },
                "content": { "type": "string", "description": "The complete new content of the file." },
                "confirm": { "type": "boolean", "description": "Must be true: this replaces the file's content." }
            })),
            &["path", "content", "confirm"],
            true,
        );
        ToolDef::new(
            "write_file",
            "Create or replace a text file in a writable root. Requires `confirm: true`.",
            schema,
        )
        .with_title("Write file")
        .with_annotations(crate::definition::writes(true))
    }

    async fn call(&self, call: ToolCall) -> Result<ToolOutput, ToolError> {
        let root = self.0.pick(&call.arguments, true);
        let raw = str_arg(&call.arguments, "path").unwrap_or_default();
        let content = str_arg(&call.arguments, "content").unwrap_or_default();
        writable(root.writable, root.jail.name())?;
        if !crate::definition::confirmed(&call.arguments) {
            return Err(ToolError::rejected(
                "write_file replaces the file's content; call again with `confirm: true` to write",
            ));
        }
        if content.len() as u64 > root.max_read_bytes {
            return Err(ToolError::rejected(format!(
                "content is {} bytes, over the limit of {} bytes",
                content.len(),
                root.max_read_bytes
            )));
        }
        let at = root.jail.locate_for_write(raw).await?;
        root.jail
            .write(raw, &at, content.as_bytes().to_vec())
            .await?;
        Ok(text(format!(
            "wrote {} bytes to `{}`",
            content.len(),
            at.rel
        )))
    }
}

struct EditFile(Arc<Roots>);

#[async_trait]
impl Tool for EditFile {
    fn pack(&self) -> &str {
        super::PACK
    }

    fn definition(&self) -> ToolDef {
        let schema = self.0.schema(
            object(json!({
                "path": { "type": "string", "minLength": 1, "description": PATH_DESCRIPTION },
                "edits": {
                    "type": "array", "minItems": 1, "maxItems": 100,
                    "description": "Replacements applied in order; each `old_text` must occur exactly once.",
                    "items": {
                        "type": "object",
                        "properties": { "old_text": { "type": "string", "minLength": 1 }, "new_text": { "type": "string" } },
                        "required": ["old_text", "new_text"],
                        "additionalProperties": false
                    }
                },
                "dry_run": { "type": "boolean", "default": false, "description": "Only return the unified diff; change nothing." },
                "confirm": { "type": "boolean", "description": "Must be true to apply the edits (not needed for a dry run)." }
            })),
            &["path", "edits"],
            true,
        );
        ToolDef::new("edit_file", "Replace exact text in a file of a writable root. `dry_run: true` returns the unified diff; applying requires `confirm: true`.", schema)
            .with_title("Edit file")
            .with_annotations(crate::definition::writes(false))
    }

    async fn call(&self, call: ToolCall) -> Result<ToolOutput, ToolError> {
        let root = self.0.pick(&call.arguments, true);
        let raw = str_arg(&call.arguments, "path").unwrap_or_default();
        writable(root.writable, root.jail.name())?;
        let dry_run = call.arguments.get("dry_run") == Some(&Value::Bool(true));
        if !dry_run && !crate::definition::confirmed(&call.arguments) {
            return Err(ToolError::rejected(
                "edit_file changes the file; call with `dry_run: true` to preview the diff, or with `confirm: true` to apply",
            ));
        }
        let at = root.jail.locate_for_write(raw).await?;
        let original = match root.jail.read(raw, &at, root.max_read_bytes).await? {
            FileContent::Text(text) => text,
            FileContent::Binary { .. } => {
                return Err(ToolError::rejected(format!(
                    "`{raw}` is a binary file; only text files can be edited"
                )));
            }
        };
        let mut updated = original.clone();
        let edits = call
            .arguments
            .get("edits")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        for (i, edit) in edits.iter().enumerate() {
            let old = edit
                .get("old_text")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let new = edit
                .get("new_text")
                .and_then(Value::as_str)
                .unwrap_or_default();
            match updated.matches(old).count() {
                1 => updated = updated.replacen(old, new, 1),
                0 => {
                    return Err(ToolError::rejected(format!(
                        "edit {i}: `old_text` does not occur in `{raw}`; nothing was changed"
                    )));
                }
                n => {
                    return Err(ToolError::rejected(format!(
                        "edit {i}: `old_text` occurs {n} times in `{raw}`; include more context so it occurs exactly once; nothing was changed"
                    )));
                }
            }
        }
        let diff = similar::TextDiff::from_lines(&original, &updated)
            .unified_diff()
            .context_radius(3)
            .header(&format!("a/{}", at.rel), &format!("b/{}", at.rel))
            .to_string();
        if dry_run {
            return Ok(text(format!("dry run, nothing written:\n{diff}")));
        }
        root.jail.write(raw, &at, updated.into_bytes()).await?;
        Ok(text(format!(
            "applied {} edit(s) to `{}`:\n{diff}",
            edits.len(),
            at.rel
        )))
    }
}

fn writable(writable: bool, root: &str) -> Result<(), ToolError> {
    if writable {
        Ok(())
    } else {
        Err(ToolError::rejected(format!(
            "the root `{root}` is read-only; writes are allowed only in roots configured with `writable = true`"
        )))
    }
}
