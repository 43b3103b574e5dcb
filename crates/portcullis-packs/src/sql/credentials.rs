//! `portcullis check`: does a read-only source's login allow writes? The pack enforces
//! read-only access in layers regardless; this tells the operator when the database itself
//! would not be one of them.

use std::path::Path;
use std::time::Duration;

use portcullis_config::Config;
use sqlx::Row;

use super::source::{OneConnection, Source};

const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

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
    if let Some(path) = source.sqlite_path() {
        return sqlite_file(path);
    }
    let conn = match tokio::time::timeout(CHECK_TIMEOUT, source.connect_once()).await {
        Ok(Ok(conn)) => conn,
        _ => {
            return vec![
                "its database is unavailable, so its credentials could not be checked".to_owned(),
            ];
        }
    };
    let checked = tokio::time::timeout(CHECK_TIMEOUT, async {
        match conn {
            OneConnection::Postgres(mut conn) => postgres(&mut conn).await,
            OneConnection::MySql(mut conn) => mysql(&mut conn).await,
        }
    })
    .await;
    match checked {
        Ok(Ok(warnings)) => warnings,
        _ => vec!["its credentials could not be checked (the privilege query failed)".to_owned()],
    }
}

fn sqlite_file(path: &Path) -> Vec<String> {
    if !path.exists() {
        return Vec::new();
    }
    // Opening for writing without creating or truncating changes nothing; it asks the OS
    // whether this process could write the file.
    match std::fs::OpenOptions::new().write(true).open(path) {
        Ok(_) => vec![
            "its database file is writable by this process (it is opened read-only with `query_only`; make the file read-only for the server's user to add the file system as a layer)".to_owned(),
        ],
        Err(_) => Vec::new(),
    }
}

async fn postgres(conn: &mut sqlx::PgConnection) -> Result<Vec<String>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT current_user::text, \
                (SELECT rolsuper FROM pg_roles WHERE rolname = current_user), \
                (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                  WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
                    AND n.nspname NOT LIKE 'pg\\_%' \
                    AND has_table_privilege(c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE')), \
                has_database_privilege(current_database(), 'CREATE')",
    )
    .fetch_one(&mut *conn)
    .await?;
    let role: String = row.try_get(0)?;
    let superuser: Option<bool> = row.try_get(1)?;
    let writable: i64 = row.try_get(2)?;
    let create: bool = row.try_get(3)?;
    let mut warnings = Vec::new();
    if superuser == Some(true) {
        warnings.push(format!(
            "its role `{role}` is a superuser; connect with a role that has only SELECT"
        ));
    }
    if writable > 0 {
        warnings.push(format!(
            "its role `{role}` can write to {writable} table(s) (owner, or INSERT/UPDATE/DELETE/TRUNCATE privilege)"
        ));
    }
    if create {
        warnings.push(format!(
            "its role `{role}` can create schemas in the database"
        ));
    }
    Ok(warnings)
}

async fn mysql(conn: &mut sqlx::MySqlConnection) -> Result<Vec<String>, sqlx::Error> {
    let rows = sqlx::query("SHOW GRANTS").fetch_all(&mut *conn).await?;
    const WRITES: [&str; 10] = [
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
    let mut found: Vec<&str> = Vec::new();
    for row in rows {
        let grant: String = row.try_get::<String, _>(0).or_else(|_| {
            row.try_get::<Vec<u8>, _>(0)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
        })?;
        let grant = grant.to_ascii_uppercase();
        let privileges = grant.split(" ON ").next().unwrap_or_default();
        for write in WRITES {
            if privileges.contains(write) && !found.contains(&write) {
                found.push(write);
            }
        }
    }
    Ok(if found.is_empty() {
        Vec::new()
    } else {
        vec![format!("its user's grants include {}", found.join(", "))]
    })
}
