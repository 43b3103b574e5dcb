//! Portcullis tool packs: each turns a config section into tools, resources and prompts on a
//! [`CatalogBuilder`]. Packs never see the transport; every call they serve has already
//! passed the guard pipeline.

mod definition;
#[cfg(feature = "files")]
pub mod files;
#[cfg(feature = "prompts")]
pub mod prompts;
pub mod resources;
#[cfg(feature = "sql")]
pub mod sql;

use portcullis_config::Config;
use portcullis_server::{Catalog, CatalogBuilder, CatalogError};

/// Why the catalog could not be built from a config.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    /// The files pack.
    #[cfg(feature = "files")]
    #[error(transparent)]
    Files(#[from] files::FilesError),
    /// Prompt templates.
    #[cfg(feature = "prompts")]
    #[error(transparent)]
    Prompts(#[from] prompts::PromptsError),
    /// The SQL pack.
    #[cfg(feature = "sql")]
    #[error(transparent)]
    Sql(#[from] sql::SqlError),
    /// Static resources.
    #[error(transparent)]
    Resources(#[from] resources::ResourcesError),
    /// The config uses a pack this build does not include.
    #[error("the config uses the `{0}` pack, which this build of portcullis does not include")]
    NotCompiled(&'static str),
    /// Assembling the catalog failed (duplicate names, bad schemas).
    #[error(transparent)]
    Catalog(#[from] CatalogError),
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
    let base = &config.base_dir;
    #[cfg(feature = "files")]
    files::register(&config.files, base, builder)?;
    #[cfg(not(feature = "files"))]
    if !config.files.is_empty() {
        return Err(PackError::NotCompiled("files"));
    }
    #[cfg(feature = "prompts")]
    prompts::register(&config.prompts, base, builder)?;
    #[cfg(not(feature = "prompts"))]
    if !config.prompts.is_empty() {
        return Err(PackError::NotCompiled("prompts"));
    }
    #[cfg(feature = "sql")]
    sql::register(&config.sql, base, builder)?;
    #[cfg(not(feature = "sql"))]
    if !config.sql.is_empty() {
        return Err(PackError::NotCompiled("sql"));
    }
    resources::register(&config.resources, base, builder)?;
    Ok(())
}
