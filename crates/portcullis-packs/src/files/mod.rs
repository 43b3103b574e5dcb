//! The files pack: `list_directory`, `read_file`, `search_files`, `file_info`, and on
//! writable roots `write_file` and `edit_file`; files are also resources
//! (`file:///{root}/{+path}`). All file-system access goes through [`jail`].

mod resource;
mod tools;

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use portcullis_config::{Config, FilesRoot};
use portcullis_core::{CatalogBuilder, Readiness};
use rmcp::model::JsonObject;
use serde_json::{Value, json};

pub use crate::jail::DEFAULT_DENY;
use crate::jail::{DenyList, Jail};

/// The pack's name, for `[packs.files]`.
pub const PACK: &str = "files";

/// Most entries `list_directory` returns.
const MAX_LIST_ENTRIES: usize = 1000;

/// One configured root: its jail and limits.
pub(crate) struct Root {
    pub(crate) jail: Jail,
    pub(crate) writable: bool,
    pub(crate) max_read_bytes: u64,
    pub(crate) max_search_results: usize,
    pub(crate) max_search_entries: usize,
    /// How changes made outside the server are noticed (for subscribers of its files).
    pub(crate) watch: crate::watch::Settings,
}

/// All roots of the pack, in config order.
pub(crate) struct Roots {
    roots: Vec<Root>,
}

impl Roots {
    /// With several roots, tools take a `root` argument; with one, they do not.
    fn multi(&self) -> bool {
        self.roots.len() > 1
    }

    /// The root a tool uses when the call names none: the first root, or for write tools
    /// the first writable one. The same root is the `default` of the schema's `root`.
    fn default_root(&self, writable_only: bool) -> &Root {
        self.roots
            .iter()
            .find(|r| !writable_only || r.writable)
            .unwrap_or(&self.roots[0])
    }

    /// The root named by the `root` argument (validated by the schema against the roots the
    /// tool may use), or the tool's default root.
    pub(crate) fn pick(&self, args: &JsonObject, writable_only: bool) -> &Root {
        args.get("root")
            .and_then(Value::as_str)
            .and_then(|name| self.by_name(name))
            .unwrap_or_else(|| self.default_root(writable_only))
    }

    pub(crate) fn by_name(&self, name: &str) -> Option<&Root> {
        self.roots.iter().find(|r| r.jail.name() == name)
    }

    /// Adds the `root` property to a tool's input schema when there are several roots.
    fn schema(
        &self,
        mut properties: JsonObject,
        required: &[&str],
        writable_only: bool,
    ) -> JsonObject {
        if self.multi() {
            let names: Vec<&str> = self
                .roots
                .iter()
                .filter(|r| !writable_only || r.writable)
                .map(|r| r.jail.name())
                .collect();
            let default = self.default_root(writable_only).jail.name();
            properties.insert(
                "root".to_owned(),
                json!({ "type": "string", "enum": names, "default": default, "description": "Which root the path is in." }),
            );
        }
        let schema = json!({
            "type": "object",
            "properties": properties,
            "required": required,
            "additionalProperties": false,
        });
        crate::definition::object(schema)
    }
}

/// A string argument; the schema has already guaranteed its presence when required.
pub(crate) fn str_arg<'a>(args: &'a JsonObject, key: &str) -> Option<&'a str> {
    args.get(key).and_then(Value::as_str)
}

/// Why the files pack could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct FilesError(String);

/// Adds the files tools, the file resource template and a readiness check for the config's
/// `[[files]]` roots.
pub(crate) fn register(
    config: &Config,
    catalog: &mut CatalogBuilder,
    _shared: &mut crate::Shared,
) -> Result<(), String> {
    add(&config.files, &config.base_dir, catalog).map_err(|e| e.to_string())
}

fn add(
    roots: &[FilesRoot],
    base_dir: &Path,
    catalog: &mut CatalogBuilder,
) -> Result<(), FilesError> {
    if roots.is_empty() {
        return Ok(());
    }
    let mut opened = Vec::with_capacity(roots.len());
    for root in roots {
        let deny = DenyList::new(&root.deny, root.deny_ignore_case)
            .map_err(|e| FilesError(format!("files root `{}`: {e}", root.name)))?;
        let jail = Jail::open(&root.name, &base_dir.join(&root.path), deny)
            .map_err(|e| FilesError(format!("files {e}")))?;
        opened.push(Root {
            jail,
            writable: root.writable,
            max_read_bytes: root.max_read_bytes,
            max_search_results: root.max_search_results,
            max_search_entries: root.max_search_entries,
            watch: crate::watch::Settings::new(root.watch, root.poll_interval_ms, root.debounce_ms),
        });
    }
    let roots = Arc::new(Roots { roots: opened });
    let notifier = catalog.notifier().for_pack(PACK);
    for root in roots.roots.iter().filter(|r| r.watch.enabled()) {
        let notifier = notifier.clone();
        let name = root.jail.name().to_owned();
        catalog.background(crate::watch::run(
            root.jail.clone(),
            root.watch,
            move |batch| {
                if batch.overflowed {
                    // The watcher lost track: everything followed in this root may have changed.
                    notifier.updated_under(resource::uri(&name, ""));
                }
                for path in &batch.paths {
                    notifier.updated(resource::uri(&name, path));
                }
                std::future::ready(())
            },
        ));
    }
    tools::register(&roots, catalog);
    catalog.resources(resource::FileResources::new(Arc::clone(&roots)));
    catalog.readiness("files", FilesReady(roots));
    Ok(())
}

struct FilesReady(Arc<Roots>);

#[async_trait]
impl Readiness for FilesReady {
    async fn check(&self) -> Result<(), String> {
        for root in &self.0.roots {
            if !root.jail.is_available().await {
                return Err(format!("root `{}` is not available", root.jail.name()));
            }
        }
        Ok(())
    }
}
