//! Portcullis tool packs: each turns a config section into tools, resources and prompts on a
//! [`CatalogBuilder`]. Packs never see the transport; every request they serve has already
//! passed the guard pipeline.
//!
//! Adding a pack is one module here (with a `register` function and a `PACK` name that its
//! tools, resources and prompts report), its config section in `portcullis-config`, and one
//! line in [`PACKS`]. What packs share lives beside them: [`params`] (declared parameters →
//! JSON Schema → typed values), [`jail`] (client paths opened beneath a root's handle), and
//! `portcullis_core::outbound` (HTTP with TLS).
//!
//! Each pack is a cargo feature (all by default). A build with only some of them leaves
//! parts of the shared helpers unused, which is expected there, not dead code.
#![cfg_attr(
    not(all(
        feature = "files",
        feature = "prompts",
        feature = "sql",
        feature = "api",
        feature = "command",
        feature = "notes",
        feature = "skills",
        feature = "upstreams"
    )),
    allow(dead_code, unused_variables, unused_imports)
)]

#[cfg(feature = "api")]
pub mod api;
#[cfg(feature = "command")]
pub mod command;
mod definition;
#[cfg(feature = "files")]
pub mod files;
#[cfg(feature = "jail")]
mod jail;

/// Whether a path relative to a served folder is one its deny list refuses (the built-in
/// patterns, `.env*`, `.git/`, `*.pem`, `*.key`, `id_*`, and `extra`): what `portcullis
/// bundle` leaves out of a folder it copies, by the same rule the jail serves it with.
///
/// # Errors
///
/// A pattern of `extra` that is not a glob.
#[cfg(feature = "jail")]
pub fn deny_rule(
    extra: &[String],
    extra_ignore_case: bool,
) -> Result<impl Fn(&str) -> bool + use<>, String> {
    let list = jail::DenyList::new(extra, extra_ignore_case)?;
    Ok(move |relative: &str| list.is_denied(relative))
}
#[cfg(feature = "notes")]
pub mod notes;
mod params;
#[cfg(feature = "prompts")]
pub mod prompts;
pub mod resources;
#[cfg(feature = "skills")]
pub mod skills;
#[cfg(feature = "sql")]
pub mod sql;
mod template;
#[cfg(feature = "upstreams")]
pub mod upstreams;
#[cfg(feature = "watch")]
mod watch;

use portcullis_config::Config;
use portcullis_core::{Catalog, CatalogBuilder, CatalogError};

/// Why the catalog could not be built from a config.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    /// A pack could not be set up from its section (a root that cannot be opened, a
    /// template that does not compile, …).
    #[error("{0}")]
    Pack(String),
    /// The config uses a pack this build does not include.
    #[error("the config uses the `{0}` pack, which this build of portcullis does not include")]
    NotCompiled(&'static str),
    /// Assembling the catalog failed (duplicate names, bad schemas).
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

/// Adds a pack's tools, resources, prompts and readiness checks for its section of `config`.
type Register = fn(&Config, &mut CatalogBuilder, &mut Shared) -> Result<(), String>;

/// What packs open once and others use: the SQL sources and HTTP tools that back resource
/// templates. Filled in [`PACKS`] order (sources before the `resources` pack).
#[derive(Default)]
pub(crate) struct Shared {
    #[cfg(feature = "sql")]
    pub(crate) sql: std::collections::HashMap<String, std::sync::Arc<sql::Source>>,
    #[cfg(feature = "api")]
    pub(crate) api: std::collections::HashMap<(String, String), std::sync::Arc<api::ApiTool>>,
}

/// One pack: its name, whether a config uses it, and its `register` when compiled in.
struct Pack {
    name: &'static str,
    used_by: fn(&Config) -> bool,
    register: Option<Register>,
}

/// The packs, in the order they register (which is also the order resource sources claim
/// URIs in).
const PACKS: &[Pack] = &[
    Pack {
        name: "files",
        used_by: |c| !c.files.is_empty(),
        #[cfg(feature = "files")]
        register: Some(files::register),
        #[cfg(not(feature = "files"))]
        register: None,
    },
    Pack {
        name: "prompts",
        used_by: |c| !c.prompts.is_empty(),
        #[cfg(feature = "prompts")]
        register: Some(prompts::register),
        #[cfg(not(feature = "prompts"))]
        register: None,
    },
    Pack {
        name: "sql",
        used_by: |c| !c.sql.is_empty(),
        #[cfg(feature = "sql")]
        register: Some(sql::register),
        #[cfg(not(feature = "sql"))]
        register: None,
    },
    Pack {
        name: "api",
        used_by: |c| !c.api.is_empty(),
        #[cfg(feature = "api")]
        register: Some(api::register),
        #[cfg(not(feature = "api"))]
        register: None,
    },
    Pack {
        name: "command",
        used_by: |c| !c.commands.is_empty(),
        #[cfg(feature = "command")]
        register: Some(command::register),
        #[cfg(not(feature = "command"))]
        register: None,
    },
    Pack {
        name: "notes",
        used_by: |c| !c.notes.is_empty(),
        #[cfg(feature = "notes")]
        register: Some(notes::register),
        #[cfg(not(feature = "notes"))]
        register: None,
    },
    Pack {
        name: "skills",
        used_by: |c| !c.skills.is_empty(),
        #[cfg(feature = "skills")]
        register: Some(skills::register),
        #[cfg(not(feature = "skills"))]
        register: None,
    },
    Pack {
        name: "upstreams",
        used_by: |c| !c.upstreams.is_empty(),
        #[cfg(feature = "upstreams")]
        register: Some(upstreams::register),
        #[cfg(not(feature = "upstreams"))]
        register: None,
    },
    Pack {
        name: "resources",
        used_by: |c| !c.resources.is_empty() || !c.resource_templates.is_empty(),
        register: Some(resources::register),
    },
];

/// The name of every pack, in the order they register, whether this build includes it or
/// not (`portcullis init --packs` offers these).
pub fn pack_names() -> impl Iterator<Item = &'static str> {
    PACKS.iter().map(|pack| pack.name)
}

/// Builds the whole catalog from `config`: every pack the config uses.
pub fn catalog(config: &Config) -> Result<Catalog, PackError> {
    let mut builder = CatalogBuilder::new();
    register(config, &mut builder)?;
    Ok(builder.build()?)
}

/// Adds every pack the config uses to `builder` (for library users who add their own tools
/// next to the configured ones).
pub fn register(config: &Config, builder: &mut CatalogBuilder) -> Result<(), PackError> {
    let mut shared = Shared::default();
    for pack in PACKS {
        if !(pack.used_by)(config) {
            continue;
        }
        let register = pack.register.ok_or(PackError::NotCompiled(pack.name))?;
        register(config, builder, &mut shared).map_err(PackError::Pack)?;
    }
    Ok(())
}
