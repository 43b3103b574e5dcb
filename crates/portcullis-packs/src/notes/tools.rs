//! `write_note` and `delete_note`, on writable folders. Both need `confirm: true`; both go
//! through the jail and end with a refresh of the path they wrote, which is what notifies subscribers.

use std::sync::Arc;

use async_trait::async_trait;
use portcullis_core::{CatalogBuilder, Tool, ToolCall, ToolError, ToolOutput};
use rmcp::model::{CallToolResult, ContentBlock, JsonObject, Tool as ToolDef};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;

use super::Folder;
use crate::definition::{Choice, arguments, object};

/// `write_note`'s arguments.
#[derive(Deserialize, JsonSchema)]
struct WriteArgs {
    /// The note's slug: its path in the folder without the extension, with `/` between sub-folders (`meetings/2026-12-01`).
    #[schemars(length(min = 1, max = 512))]
    slug: String,
    /// The complete markdown of the note; a first `# Heading` is its title.
    content: String,
    /// Must be true: this creates the note or replaces its content.
    confirm: bool,
}

/// `delete_note`'s arguments.
#[derive(Deserialize, JsonSchema)]
struct DeleteArgs {
    /// The note's slug: its path in the folder without the extension, with `/` between sub-folders (`meetings/2026-12-01`).
    #[schemars(length(min = 1, max = 512))]
    slug: String,
    /// Must be true: the note is deleted for good.
    confirm: bool,
}

/// The writable folders; with more than one, the tools take a `folder` argument.
struct Writable(Choice<Arc<Folder>>);

impl Writable {
    fn new(folders: Vec<Arc<Folder>>) -> Self {
        let several = folders.len() > 1;
        let named = folders
            .into_iter()
            .map(|f| (f.jail.name().to_owned(), f))
            .collect();
        Self(Choice::new("folder", "Which notes folder.", named, several))
    }

    /// The folder the call names, or the first.
    fn pick(&self, args: &JsonObject) -> &Arc<Folder> {
        self.0.pick(args)
    }
}

pub(super) fn register(writable: Vec<Arc<Folder>>, catalog: &mut CatalogBuilder) {
    let writable = Arc::new(Writable::new(writable));
    catalog
        .tool(WriteNote(Arc::clone(&writable)))
        .tool(DeleteNote(writable));
}

fn confirmed(confirm: bool, what: &str) -> Result<(), ToolError> {
    if confirm {
        Ok(())
    } else {
        Err(ToolError::rejected(format!(
            "{what}; call again with `confirm: true`"
        )))
    }
}

fn done(message: String, uri: String) -> ToolOutput {
    let mut result = CallToolResult::success(vec![ContentBlock::text(message)]);
    result.structured_content = Some(json!({ "uri": uri }));
    result.into()
}

struct WriteNote(Arc<Writable>);

#[async_trait]
impl Tool for WriteNote {
    fn pack(&self) -> &str {
        super::PACK
    }

    fn definition(&self) -> ToolDef {
        let schema = self.0.0.args_schema::<WriteArgs>();
        ToolDef::new(
            "write_note",
            "Create or replace a markdown note. Subscribers of the note are told it changed. Requires `confirm: true`.",
            schema,
        )
        .with_title("Write note")
        .with_raw_output_schema(Arc::new(uri_output()))
        .with_annotations(crate::definition::writes(true))
    }

    async fn call(&self, call: ToolCall) -> Result<ToolOutput, ToolError> {
        let args: WriteArgs = arguments(&call.arguments)?;
        confirmed(args.confirm, "write_note creates or replaces the note")?;
        let folder = self.0.pick(&call.arguments);
        let slug = args.slug.trim_matches('/');
        let content = args.content.as_str();
        if content.len() as u64 > folder.max_note_bytes {
            return Err(ToolError::rejected(format!(
                "the note is {} bytes; notes here hold at most {} bytes",
                content.len(),
                folder.max_note_bytes
            )));
        }
        let rel = folder.path_for(slug);
        if let Some((parent, _)) = rel.rsplit_once('/') {
            folder.jail.create_dirs(parent).await?;
        }
        let at = folder.jail.locate_for_write(&rel).await?;
        folder
            .jail
            .write(&rel, &at, content.as_bytes().to_vec())
            .await?;
        folder.refresh([at.rel.clone()].into()).await;
        let slug = folder.slug_of_path(&at.rel).unwrap_or(slug).to_owned();
        let uri = folder.uri(&slug);
        Ok(done(
            format!("wrote note `{slug}` ({} bytes): {uri}", content.len()),
            uri,
        ))
    }
}

struct DeleteNote(Arc<Writable>);

#[async_trait]
impl Tool for DeleteNote {
    fn pack(&self) -> &str {
        super::PACK
    }

    fn definition(&self) -> ToolDef {
        let schema = self.0.0.args_schema::<DeleteArgs>();
        ToolDef::new(
            "delete_note",
            "Delete a markdown note. Requires `confirm: true`.",
            schema,
        )
        .with_title("Delete note")
        .with_raw_output_schema(Arc::new(uri_output()))
        .with_annotations(crate::definition::writes(false))
    }

    async fn call(&self, call: ToolCall) -> Result<ToolOutput, ToolError> {
        let args: DeleteArgs = arguments(&call.arguments)?;
        confirmed(args.confirm, "delete_note deletes the note for good")?;
        let folder = self.0.pick(&call.arguments);
        let slug = args.slug.trim_matches('/');
        let (rel, _) = folder.locate(slug).await.map_err(|e| match e {
            portcullis_core::ResourceError::NotFound(m) => ToolError::NotFound(m),
            portcullis_core::ResourceError::Rejected(m) => ToolError::Rejected(m),
            portcullis_core::ResourceError::Internal { context, source } => {
                ToolError::Internal { context, source }
            }
        })?;
        let at = folder.jail.locate_for_write(&rel).await?;
        if at.meta.is_none() {
            return Err(ToolError::NotFound(format!("no note `{slug}`")));
        }
        folder.jail.remove(&rel, &at).await?;
        folder.refresh([at.rel.clone()].into()).await;
        // The URI the note was published under (`x.md` is `note://x`), as write_note answers.
        let slug = folder.slug_of_path(&at.rel).unwrap_or(slug).to_owned();
        let uri = folder.uri(&slug);
        Ok(done(format!("deleted note `{slug}`"), uri))
    }
}

fn uri_output() -> JsonObject {
    object(json!({
        "type": "object",
        "properties": { "uri": { "type": "string", "description": "The note's resource URI." } },
        "required": ["uri"]
    }))
}
