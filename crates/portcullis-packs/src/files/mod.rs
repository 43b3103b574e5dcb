//! The files pack: `list_directory`, `read_file`, `search_files`, `file_info`, and on
//! writable roots `write_file` and `edit_file`; files are also resources
//! (`file:///{root}/{+path}`). All file-system access goes through [`jail`].

mod resource;
mod tools;

use std::path::Path;
use std::sync::Arc;

use portcullis_config::{Config, FilesRoot};
use portcullis_core::CatalogBuilder;
use rmcp::model::JsonObject;

use crate::definition::Choice;

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

/// All roots of the pack, in config order, and the choice of one that tools offer (with
/// several roots, a `root` argument).
pub(crate) struct Roots {
    roots: Vec<Root>,
    /// Any root (by index), the first by default.
    any: Choice<usize>,
    /// A writable root (by index), the first writable by default; `any` when none is.
    writable: Choice<usize>,
}

impl Roots {
    fn new(roots: Vec<Root>) -> Self {
        const ARGUMENT: &str = "root";
        const DESCRIPTION: &str = "Which root the path is in.";
        let several = roots.len() > 1;
        let named = |keep: &dyn Fn(&Root) -> bool| -> Vec<(String, usize)> {
            roots
                .iter()
                .enumerate()
                .filter(|(_, r)| keep(r))
                .map(|(i, r)| (r.jail.name().to_owned(), i))
                .collect()
        };
        let any = named(&|_| true);
        let writable = Some(named(&|r| r.writable))
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| any.clone());
        Self {
            any: Choice::new(ARGUMENT, DESCRIPTION, any, several),
            writable: Choice::new(ARGUMENT, DESCRIPTION, writable, several),
            roots,
        }
    }

    /// The root the `root` argument names among those the tool may use, or its default.
    pub(crate) fn pick(&self, args: &JsonObject, writable_only: bool) -> &Root {
        let choice = if writable_only {
            &self.writable
        } else {
            &self.any
        };
        &self.roots[*choice.pick(args)]
    }

    pub(crate) fn by_name(&self, name: &str) -> Option<&Root> {
        self.roots.iter().find(|r| r.jail.name() == name)
    }

    /// The input schema of a tool whose arguments are `A`, with `root` when there are
    /// several roots to choose from.
    fn args_schema<A: schemars::JsonSchema>(&self, writable_only: bool) -> JsonObject {
        if writable_only {
            self.writable.args_schema::<A>()
        } else {
            self.any.args_schema::<A>()
        }
    }
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
    let roots = Arc::new(Roots::new(opened));
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
    catalog.readiness(
        "files",
        crate::jail::RootsReady {
            what: "root",
            jails: roots.roots.iter().map(|r| r.jail.clone()).collect(),
        },
    );
    Ok(())
}
