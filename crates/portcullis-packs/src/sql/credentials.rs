//! `portcullis check`: does a read-only source's login allow writes? The pack enforces
//! read-only access in layers regardless; this tells the operator when the database itself
//! would not be one of them. The facts come from [`Source::privileges`]; this module only
//! words them.

use std::time::Duration;

use portcullis_config::Config;

use super::source::{Privileges, Source};

const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// Privileges that write, as MySQL/MariaDB's `SHOW GRANTS` names them.
const MYSQL_WRITES: [&str; 10] = [
    "ALL PRIVILEGES",
    "INSERT",
    "UPDATE",
    "DELETE",
    "DROP",
    "CREATE",
    "ALTER",
    "SUPER",
    "FILE",
    "GRANT OPTION",
];

/// Warnings for every read-only source whose credentials could write, or that could not be
/// checked. Connects to each source once (with a short timeout); never writes.
///
/// - PostgreSQL: the role is a superuser, can write to (or owns) tables, or can create
///   schemas in the database.
/// - MySQL/MariaDB: `SHOW GRANTS` lists a privilege that writes.
/// - SQLite: the database file is writable by this process (the pack opens it read-only
///   with `query_only` anyway).
pub fn credential_warnings(config: &Config) -> Vec<String> {
    let sources: Vec<Source> = config
        .sql
        .iter()
        .filter(|s| s.read_only)
        .filter_map(|s| Source::new(s, &config.base_dir).ok())
        .collect();
    if sources.is_empty() {
        return Vec::new();
    }
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return vec!["sql: could not start a runtime to check credentials".to_owned()];
    };
    runtime.block_on(async {
        let mut warnings = Vec::new();
        for source in &sources {
            for warning in check_source(source).await {
                warnings.push(format!(
                    "sql source `{}` is read-only, but {warning}",
                    source.name
                ));
            }
        }
        warnings
    })
}

async fn check_source(source: &Source) -> Vec<String> {
    match source.privileges(CHECK_TIMEOUT).await {
        Err(reason) if reason.contains("unavailable") => {
            vec!["its database is unavailable, so its credentials could not be checked".to_owned()]
        }
        Err(reason) => vec![format!("its credentials could not be checked ({reason})")],
        Ok(privileges) => words(&privileges),
    }
}

fn words(privileges: &Privileges) -> Vec<String> {
    let mut warnings = Vec::new();
    match privileges {
        Privileges::Sqlite { file_writable } => {
            if *file_writable {
                warnings.push("its database file is writable by this process (it is opened read-only with `query_only`; make the file read-only for the server's user to add the file system as a layer)".to_owned());
            }
        }
        Privileges::Postgres {
            role,
            superuser,
            writable_tables,
            can_create,
        } => {
            if *superuser {
                warnings.push(format!(
                    "its role `{role}` is a superuser; connect with a role that has only SELECT"
                ));
            }
            if *writable_tables > 0 {
                warnings.push(format!(
                    "its role `{role}` can write to {writable_tables} table(s) (owner, or INSERT/UPDATE/DELETE/TRUNCATE privilege)"
                ));
            }
            if *can_create {
                warnings.push(format!(
                    "its role `{role}` can create schemas in the database"
                ));
            }
        }
        Privileges::MySql { grants } => {
            let mut found: Vec<&str> = Vec::new();
            for grant in grants {
                let grant = grant.to_ascii_uppercase();
                let privileges = grant.split(" ON ").next().unwrap_or_default();
                for write in MYSQL_WRITES {
                    if privileges.contains(write) && !found.contains(&write) {
                        found.push(write);
                    }
                }
            }
            if !found.is_empty() {
                warnings.push(format!("its user's grants include {}", found.join(", ")));
            }
        }
    }
    warnings
}
