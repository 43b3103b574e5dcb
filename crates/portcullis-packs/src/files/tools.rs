//! The files tools. Each one picks its root, resolves the path through the jail and formats
//! a compact text answer for the model.

use std::fmt::Write as _;
use std::sync::Arc;

use async_trait::async_trait;
use portcullis_core::{CatalogBuilder, Tool, ToolCall, ToolError, ToolOutput};
use rmcp::model::{CallToolResult, ContentBlock, Tool as ToolDef};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;

use super::{MAX_LIST_ENTRIES, Roots};
use crate::definition::{arguments, read_only};
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

fn dot() -> String {
    ".".to_owned()
}

/// `list_directory`'s arguments.
#[derive(Deserialize, JsonSchema)]
struct ListArgs {
    /// Directory relative to the root; `.` or empty for the root itself.
    #[serde(default = "dot")]
    path: String,
}

/// `read_file`'s arguments.
#[derive(Deserialize, JsonSchema)]
struct ReadArgs {
    /// Path relative to the root, with `/` separators (for example `src/main.py`).
    #[schemars(length(min = 1))]
    path: String,
    /// Number of lines to skip from the start (default 0).
    #[serde(default)]
    offset: u64,
    /// Most lines to return (default: all).
    #[schemars(range(min = 1))]
    limit: Option<u64>,
}

/// `search_files`'s arguments.
#[derive(Deserialize, JsonSchema)]
struct SearchArgs {
    /// Glob matched against file names (`*.py`) or, when it contains `/`, against paths relative to the search directory (`src/**/*.rs`).
    #[schemars(length(min = 1, max = 256))]
    pattern: String,
    /// Only files whose text contains this substring (case-sensitive); matching lines are shown.
    #[schemars(length(min = 1, max = 1024))]
    contains: Option<String>,
    /// Directory to search, relative to the root (default: the root).
    #[serde(default = "dot")]
    path: String,
    /// Most matches to return (capped by the root's limit).
    #[schemars(range(min = 1, max = 1000))]
    max_results: Option<u64>,
}

/// `file_info`'s arguments.
#[derive(Deserialize, JsonSchema)]
struct InfoArgs {
    /// Path relative to the root, with `/` separators (for example `src/main.py`).
    path: String,
}

/// `write_file`'s arguments.
#[derive(Deserialize, JsonSchema)]
struct WriteArgs {
    /// Path relative to the root, with `/` separators (for example `src/main.py`).
    #[schemars(length(min = 1))]
    path: String,
    /// The complete new content of the file.
    content: String,
    /// Must be true: this replaces the file's content.
    confirm: bool,
}

/// `edit_file`'s arguments.
#[derive(Deserialize, JsonSchema)]
struct EditArgs {
    /// Path relative to the root, with `/` separators (for example `src/main.py`).
    #[schemars(length(min = 1))]
    path: String,
    /// Replacements applied in order; each `old_text` must occur exactly once.
    #[schemars(length(min = 1, max = 100))]
    edits: Vec<Edit>,
    /// Only return the unified diff; change nothing.
    #[serde(default)]
    dry_run: bool,
    /// Must be true to apply the edits (not needed for a dry run).
    #[serde(default)]
    confirm: bool,
}

/// One replacement of `edit_file`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Edit {
    #[schemars(length(min = 1))]
    old_text: String,
    new_text: String,
}

struct ListDirectory(Arc<Roots>);

#[async_trait]
impl Tool for ListDirectory {
    fn pack(&self) -> &str {
        super::PACK
    }

    fn definition(&self) -> ToolDef {
        let schema = self.0.args_schema::<ListArgs>(false);
        ToolDef::new("list_directory", "List the entries of a directory (directories end with `/`). Denied files are not shown.", schema)
            .with_title("List directory")
            .with_annotations(read_only())
    }

    async fn call(&self, call: ToolCall) -> Result<ToolOutput, ToolError> {
        let args: ListArgs = arguments(&call.arguments)?;
        let root = self.0.pick(&call.arguments, false);
        let raw = args.path.as_str();
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
        let schema = self.0.args_schema::<ReadArgs>(false);
        ToolDef::new("read_file", "Read a text file, optionally a window of lines. Binary and oversize files are refused.", schema)
            .with_title("Read file")
            .with_annotations(read_only())
    }

    async fn call(&self, call: ToolCall) -> Result<ToolOutput, ToolError> {
        let args: ReadArgs = arguments(&call.arguments)?;
        let root = self.0.pick(&call.arguments, false);
        let (raw, offset, limit) = (args.path.as_str(), args.offset, args.limit);
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
                let end = offset.saturating_add(window.len() as u64);
                let mut body = window.join("\n");
                if !body.is_empty() {
                    body.push('\n');
                }
                let note = if offset >= total && total > 0 {
                    format!("[offset {offset} is past the end: the file has {total} lines]")
                } else if end < total {
                    format!(
                        "[lines {}-{end} of {total}; call again with offset={end} to continue]",
                        offset + 1
                    )
                } else {
                    format!(
                        "[lines {}-{end} of {total}; end of file]",
                        offset.saturating_add(1).min(total.max(1))
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
        let schema = self.0.args_schema::<SearchArgs>(false);
        ToolDef::new("search_files", "Find files by name glob, optionally only those containing a text substring. Bounded; denied files are skipped.", schema)
            .with_title("Search files")
            .with_annotations(read_only())
    }

    async fn call(&self, call: ToolCall) -> Result<ToolOutput, ToolError> {
        let SearchArgs {
            pattern,
            contains,
            path,
            max_results,
            ..
        } = arguments(&call.arguments)?;
        let root = self.0.pick(&call.arguments, false);
        let raw = path.as_str();
        let requested =
            max_results.map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX));
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
        let schema = self.0.args_schema::<InfoArgs>(false);
        ToolDef::new("file_info", "Show a file's or directory's type, size, modification time and whether it can be written.", schema)
            .with_title("File info")
            .with_annotations(read_only())
    }

    async fn call(&self, call: ToolCall) -> Result<ToolOutput, ToolError> {
        let args: InfoArgs = arguments(&call.arguments)?;
        let root = self.0.pick(&call.arguments, false);
        let at = root.jail.locate(&args.path).await?;
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
        let schema = self.0.args_schema::<WriteArgs>(true);
        ToolDef::new(
            "write_file",
            "Create or replace a text file in a writable root. Requires `confirm: true`.",
            schema,
        )
        .with_title("Write file")
        .with_annotations(crate::definition::writes(true))
    }

    async fn call(&self, call: ToolCall) -> Result<ToolOutput, ToolError> {
        let args: WriteArgs = arguments(&call.arguments)?;
        let root = self.0.pick(&call.arguments, true);
        let (raw, content) = (args.path.as_str(), args.content.as_str());
        writable(root.writable, root.jail.name())?;
        if !args.confirm {
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
        let schema = self.0.args_schema::<EditArgs>(true);
        ToolDef::new("edit_file", "Replace exact text in a file of a writable root. `dry_run: true` returns the unified diff; applying requires `confirm: true`.", schema)
            .with_title("Edit file")
            .with_annotations(crate::definition::writes(false))
    }

    async fn call(&self, call: ToolCall) -> Result<ToolOutput, ToolError> {
        let args: EditArgs = arguments(&call.arguments)?;
        let root = self.0.pick(&call.arguments, true);
        let raw = args.path.as_str();
        writable(root.writable, root.jail.name())?;
        if !args.dry_run && !args.confirm {
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
        let edits = &args.edits;
        for (
            i,
            Edit {
                old_text: old,
                new_text: new,
            },
        ) in edits.iter().enumerate()
        {
            let (old, new) = (old.as_str(), new.as_str());
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
        if args.dry_run {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::definition::args_schema;

    /// The derived schemas advertise what the hand-written ones did: the same properties,
    /// bounds, defaults and required names, and no other argument.
    #[test]
    fn the_derived_schemas_bound_what_the_tools_read() {
        assert_eq!(
            serde_json::Value::Object(args_schema::<ReadArgs>()),
            json!({
                "type": "object",
                "additionalProperties": false,
                "required": ["path"],
                "properties": {
                    "path": { "type": "string", "minLength": 1, "description": "Path relative to the root, with `/` separators (for example `src/main.py`)." },
                    "offset": { "type": "integer", "format": "uint64", "minimum": 0, "default": 0, "description": "Number of lines to skip from the start (default 0)." },
                    "limit": { "type": "integer", "format": "uint64", "minimum": 1, "description": "Most lines to return (default: all)." }
                }
            })
        );
        let check = |schema: rmcp::model::JsonObject, input: serde_json::Value| {
            portcullis_core::ArgumentValidator::compile(&schema)
                .expect("compiles")
                .violations(&input)
                .is_empty()
        };
        let table = [
            (args_schema::<ReadArgs>(), json!({ "path": "a" }), true),
            (args_schema::<ReadArgs>(), json!({ "path": "" }), false),
            (
                args_schema::<ReadArgs>(),
                json!({ "path": "a", "limit": 0 }),
                false,
            ),
            (
                args_schema::<ReadArgs>(),
                json!({ "path": "a", "limit": null }),
                false,
            ),
            (
                args_schema::<ReadArgs>(),
                json!({ "path": "a", "offset": -1 }),
                false,
            ),
            (
                args_schema::<ReadArgs>(),
                json!({ "path": "a", "extra": 1 }),
                false,
            ),
            (
                args_schema::<SearchArgs>(),
                json!({ "pattern": "*.rs", "max_results": 1000 }),
                true,
            ),
            (
                args_schema::<SearchArgs>(),
                json!({ "pattern": "*.rs", "max_results": 1001 }),
                false,
            ),
            (
                args_schema::<SearchArgs>(),
                json!({ "pattern": "x".repeat(257) }),
                false,
            ),
            (
                args_schema::<SearchArgs>(),
                json!({ "pattern": "*", "contains": "" }),
                false,
            ),
            (args_schema::<ListArgs>(), json!({}), true),
            (args_schema::<InfoArgs>(), json!({}), false),
            (
                args_schema::<WriteArgs>(),
                json!({ "path": "a", "content": "" }),
                false,
            ),
            (
                args_schema::<WriteArgs>(),
                json!({ "path": "a", "content": "", "confirm": true }),
                true,
            ),
            (
                args_schema::<EditArgs>(),
                json!({ "path": "a", "edits": [] }),
                false,
            ),
            (
                args_schema::<EditArgs>(),
                json!({ "path": "a", "edits": [{ "old_text": "x", "new_text": "y" }] }),
                true,
            ),
            (
                args_schema::<EditArgs>(),
                json!({ "path": "a", "edits": [{ "old_text": "", "new_text": "y" }] }),
                false,
            ),
            (
                args_schema::<EditArgs>(),
                json!({ "path": "a", "edits": [{ "old_text": "x" }] }),
                false,
            ),
            (
                args_schema::<EditArgs>(),
                json!({ "path": "a", "edits": [{ "old_text": "x", "new_text": "y", "z": 1 }] }),
                false,
            ),
        ];
        for (schema, input, accepted) in table {
            assert_eq!(check(schema, input.clone()), accepted, "{input}");
        }
        // What the schema accepts, the type reads.
        let args: EditArgs = arguments(&crate::definition::object(
            json!({ "path": "a", "edits": [{ "old_text": "x", "new_text": "y" }], "root": "docs" }),
        ))
        .expect("reads");
        assert_eq!(
            (args.edits.len(), args.dry_run, args.confirm),
            (1, false, false)
        );
    }
}
