//! One database source: its pools and the only code that runs SQL. Reads run in a read-only
//! transaction on a pool whose sessions already default to read-only (SQLite: a read-only
//! connection with `query_only`), under the engine's statement timeout and ours; writes run
//! on a separate pool, only for destructive statements. A statement that outlives its time,
//! or whose caller goes away, is cancelled on the server and its connection is closed.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use portcullis_config::{SqlEngine, SqlSource};
use portcullis_server::ToolError;
use sqlx::mysql::{MySql, MySqlConnectOptions, MySqlConnection, MySqlPool, MySqlPoolOptions};
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, Postgres};
use sqlx::sqlite::{Sqlite, SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use sqlx::{ConnectOptions, Connection, Database, Executor, Row};

use super::params::Bound;
use super::rows::{Collected, mysql_row, pg_row, sqlite_row};

/// How long a call waits for a connection before the database counts as unavailable.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);
/// Our own deadline trails the engine's, so that the engine's clearer error usually wins.
const GRACE: Duration = Duration::from_millis(500);

/// Whether a statement may write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    Read,
    Write,
}

/// What a statement produced.
#[derive(Debug)]
pub(crate) enum Outcome {
    Rows(Collected),
    Affected(u64),
}

/// Why a statement did not run to completion.
#[derive(Debug)]
pub(crate) enum DbError {
    /// The database cannot be reached (or refused the connection). Detail is for logs only.
    Unavailable(String),
    /// The statement ran out of time and was cancelled.
    TimedOut,
    /// The engine refused the statement with a message that is safe to show.
    Refused(String),
    /// Anything else.
    Internal(sqlx::Error),
}

impl DbError {
    pub(crate) fn into_tool_error(self, source: &Source) -> ToolError {
        match self {
            Self::Unavailable(detail) => {
                tracing::warn!(source = %source.name, error = %detail, "database unavailable");
                ToolError::rejected(format!(
                    "database `{}` unavailable; it did not answer, try again later",
                    source.name
                ))
            }
            Self::TimedOut => ToolError::rejected(format!(
                "the statement on `{}` ran longer than {} s and was cancelled; narrow the query",
                source.name,
                source.timeout.as_secs()
            )),
            Self::Refused(message) => ToolError::rejected(format!(
                "database `{}` rejected the statement: {message}",
                source.name
            )),
            Self::Internal(error) => {
                ToolError::internal(format!("sql source `{}`", source.name), error)
            }
        }
    }
}

enum Connect {
    Sqlite { path: PathBuf, seed: Option<String> },
    Postgres(PgConnectOptions),
    MySql(MySqlConnectOptions),
}

enum Pools {
    Sqlite {
        ro: SqlitePool,
        rw: Option<SqlitePool>,
    },
    Postgres {
        ro: PgPool,
        rw: Option<PgPool>,
    },
    MySql {
        ro: MySqlPool,
        rw: Option<MySqlPool>,
    },
}

/// A configured database.
pub(crate) struct Source {
    pub(crate) name: String,
    pub(crate) engine: SqlEngine,
    pub(crate) read_only: bool,
    pub(crate) timeout: Duration,
    pub(crate) max_rows: usize,
    pub(crate) max_bytes: usize,
    pool_size: u32,
    connect: Connect,
    pools: tokio::sync::OnceCell<Pools>,
}

impl Source {
    /// Parses the source's URL and reads its seed script. Nothing connects yet: pools are
    /// created on first use, inside the server's runtime, and connect lazily, so a database
    /// that is down does not stop the server from starting.
    pub(crate) fn new(config: &SqlSource, base_dir: &Path) -> Result<Self, String> {
        let engine = SqlEngine::of(&config.url)
            .ok_or_else(|| format!("sql source `{}`: unsupported URL scheme", config.name))?;
        let bad_url = |engine: &str| {
            format!(
                "sql source `{}`: `url` is not a valid {engine} URL",
                config.name
            )
        };
        let connect = match engine {
            SqlEngine::Sqlite => {
                let rest = config.url.split_once(':').map_or("", |(_, rest)| rest);
                let rest = rest.strip_prefix("//").unwrap_or(rest);
                let path = rest.split('?').next().unwrap_or_default();
                if path.is_empty() || path == ":memory:" {
                    return Err(format!(
                        "sql source `{}`: a SQLite URL needs a file path, e.g. `sqlite://data/app.db`",
                        config.name
                    ));
                }
                let seed = match &config.seed {
                    Some(seed) => {
                        let seed_path = base_dir.join(seed);
                        Some(std::fs::read_to_string(&seed_path).map_err(|e| {
                            format!(
                                "sql source `{}`: cannot read seed `{}`: {e}",
                                config.name,
                                seed_path.display()
                            )
                        })?)
                    }
                    None => None,
                };
                Connect::Sqlite {
                    path: base_dir.join(path),
                    seed,
                }
            }
            SqlEngine::Postgres => {
                let options =
                    PgConnectOptions::from_str(&config.url).map_err(|_| bad_url("PostgreSQL"))?;
                let options = if config.url.contains("application_name=") {
                    options
                } else {
                    options.application_name("portcullis")
                };
                Connect::Postgres(options.disable_statement_logging())
            }
            SqlEngine::MySql => {
                let url = config.url.replacen("mariadb:", "mysql:", 1);
                Connect::MySql(
                    MySqlConnectOptions::from_str(&url)
                        .map_err(|_| bad_url("MySQL"))?
                        .disable_statement_logging(),
                )
            }
        };
        Ok(Self {
            name: config.name.clone(),
            engine,
            read_only: config.read_only,
            timeout: Duration::from_secs(config.statement_timeout_secs),
            max_rows: config.max_rows,
            max_bytes: config.max_result_bytes,
            pool_size: config.pool_size,
            connect,
            pools: tokio::sync::OnceCell::new(),
        })
    }

    /// The SQLite file, for the credential check.
    pub(crate) fn sqlite_path(&self) -> Option<&Path> {
        match &self.connect {
            Connect::Sqlite { path, .. } => Some(path),
            _ => None,
        }
    }

    /// Options for one ad-hoc connection (the credential check).
    pub(crate) async fn connect_once(&self) -> Result<OneConnection, sqlx::Error> {
        Ok(match &self.connect {
            Connect::Sqlite { .. } => {
                return Err(sqlx::Error::Configuration(
                    "SQLite sources are checked through their file".into(),
                ));
            }
            Connect::Postgres(options) => {
                OneConnection::Postgres(PgConnection::connect_with(options).await?)
            }
            Connect::MySql(options) => {
                OneConnection::MySql(MySqlConnection::connect_with(options).await?)
            }
        })
    }

    async fn pools(&self) -> Result<&Pools, DbError> {
        self.pools.get_or_try_init(|| self.create_pools()).await
    }

    async fn create_pools(&self) -> Result<Pools, DbError> {
        let size = self.pool_size;
        let timeout_ms = self.timeout.as_millis();
        let timeout_secs = self.timeout.as_secs();
        Ok(match &self.connect {
            Connect::Sqlite { path, seed } => {
                if let Some(seed) = seed {
                    create_from_seed(path, seed).await?;
                }
                let base = SqliteConnectOptions::new()
                    .filename(path)
                    .busy_timeout(Duration::from_secs(5));
                let ro = SqlitePoolOptions::new()
                    .max_connections(size)
                    .acquire_timeout(ACQUIRE_TIMEOUT)
                    .connect_lazy_with(base.clone().read_only(true).pragma("query_only", "ON"));
                let rw = (!self.read_only).then(|| {
                    // A writable source may start from nothing: its file is created.
                    SqlitePoolOptions::new()
                        .max_connections(1)
                        .acquire_timeout(ACQUIRE_TIMEOUT)
                        .connect_lazy_with(base.clone().create_if_missing(true))
                });
                Pools::Sqlite { ro, rw }
            }
            Connect::Postgres(options) => {
                let pool = |read_only: bool| {
                    // Session defaults are a layer under the per-call `BEGIN READ ONLY`: even a
                    // statement that ended the transaction would start a read-only one.
                    let setup = if read_only {
                        format!(
                            "SET default_transaction_read_only = on; SET statement_timeout = {timeout_ms}"
                        )
                    } else {
                        format!("SET statement_timeout = {timeout_ms}")
                    };
                    PgPoolOptions::new()
                        .max_connections(size)
                        .acquire_timeout(ACQUIRE_TIMEOUT)
                        .after_connect(move |conn, _| {
                            let setup = setup.clone();
                            Box::pin(async move {
                                conn.execute(setup.as_str()).await?;
                                Ok(())
                            })
                        })
                        .connect_lazy_with(options.clone())
                };
                Pools::Postgres {
                    ro: pool(true),
                    rw: (!self.read_only).then(|| pool(false)),
                }
            }
            Connect::MySql(options) => {
                let pool = |read_only: bool| {
                    MySqlPoolOptions::new()
                        .max_connections(size)
                        .acquire_timeout(ACQUIRE_TIMEOUT)
                        .after_connect(move |conn, _| {
                            Box::pin(async move {
                                let version: String = sqlx::query_scalar("SELECT VERSION()")
                                    .fetch_one(&mut *conn)
                                    .await?;
                                // MariaDB and MySQL name (and scale) the statement timeout differently.
                                let setup = if version.contains("MariaDB") {
                                    format!("SET SESSION max_statement_time = {timeout_secs}")
                                } else {
                                    format!("SET SESSION max_execution_time = {timeout_ms}")
                                };
                                conn.execute(setup.as_str()).await?;
                                if read_only {
                                    // Applies to every later transaction of the session,
                                    // including one begun implicitly after a commit.
                                    conn.execute("SET SESSION TRANSACTION READ ONLY").await?;
                                }
                                Ok(())
                            })
                        })
                        .connect_lazy_with(options.clone())
                };
                Pools::MySql {
                    ro: pool(true),
                    rw: (!self.read_only).then(|| pool(false)),
                }
            }
        })
    }

    /// Whether the database answers (for `/readyz`).
    pub(crate) async fn ping(&self) -> Result<(), DbError> {
        let pools = self.pools().await?;
        let result = match pools {
            Pools::Sqlite { ro, .. } => match ro.acquire().await {
                Ok(mut conn) => conn.ping().await,
                Err(e) => Err(e),
            },
            Pools::Postgres { ro, .. } => match ro.acquire().await {
                Ok(mut conn) => conn.ping().await,
                Err(e) => Err(e),
            },
            Pools::MySql { ro, .. } => match ro.acquire().await {
                Ok(mut conn) => conn.ping().await,
                Err(e) => Err(e),
            },
        };
        result.map_err(|e| DbError::Unavailable(e.to_string()))
    }

    /// Runs `sql` with `values` bound. `Access::Read` collects rows under the caps in a
    /// read-only transaction; `Access::Write` (destructive statements on writable sources
    /// only) commits and returns the affected row count.
    pub(crate) async fn run(
        &self,
        sql: &str,
        values: &[Bound],
        access: Access,
    ) -> Result<Outcome, DbError> {
        let pools = self.pools().await?;
        match (pools, access) {
            (Pools::Postgres { ro, .. }, Access::Read) => self.pg(ro, sql, values, access).await,
            (Pools::Postgres { rw: Some(rw), .. }, Access::Write) => {
                self.pg(rw, sql, values, access).await
            }
            (Pools::MySql { ro, .. }, Access::Read) => self.mysql(ro, sql, values, access).await,
            (Pools::MySql { rw: Some(rw), .. }, Access::Write) => {
                self.mysql(rw, sql, values, access).await
            }
            (Pools::Sqlite { ro, .. }, Access::Read) => self.sqlite(ro, sql, values, access).await,
            (Pools::Sqlite { rw: Some(rw), .. }, Access::Write) => {
                self.sqlite(rw, sql, values, access).await
            }
            (_, Access::Write) => Err(DbError::Refused(format!(
                "source `{}` is read-only",
                self.name
            ))),
        }
    }

    fn deadline(&self) -> Duration {
        self.timeout + GRACE
    }

    async fn pg(
        &self,
        pool: &PgPool,
        sql: &str,
        values: &[Bound],
        access: Access,
    ) -> Result<Outcome, DbError> {
        let Connect::Postgres(options) = &self.connect else {
            unreachable!("postgres pools come from postgres options")
        };
        let mut lease = Lease::new(pool.acquire().await.map_err(unavailable)?);
        let begin = match access {
            Access::Read => "BEGIN READ ONLY",
            Access::Write => "BEGIN READ WRITE",
        };
        let setup = format!(
            "{begin}; SET LOCAL statement_timeout = {}; SELECT pg_backend_pid()",
            self.timeout.as_millis()
        );
        let rows = lease
            .conn()
            .fetch_all(setup.as_str())
            .await
            .map_err(classify)?;
        let pid: i32 = rows
            .last()
            .and_then(|row| row.try_get(0).ok())
            .unwrap_or_default();
        lease.cancel = Some(CancelTarget::Postgres(options.clone(), pid));

        let mut query = sqlx::query::<Postgres>(sql);
        for value in values {
            query = match value.clone() {
                Bound::Null => query.bind(None::<String>),
                Bound::Bool(v) => query.bind(v),
                Bound::Int(v) => query.bind(v),
                Bound::Float(v) => query.bind(v),
                Bound::Text(v) => query.bind(v),
                Bound::IntArray(v) => query.bind(v),
                Bound::FloatArray(v) => query.bind(v),
                Bound::TextArray(v) => query.bind(v),
                Bound::BoolArray(v) => query.bind(v),
            };
        }
        let outcome = match access {
            Access::Read => {
                let mut collected = Collected::default();
                let work = async {
                    let mut stream = query.fetch(lease.conn());
                    while let Some(row) = stream.try_next().await? {
                        let (names, values) = pg_row(&row);
                        collected.set_columns(names);
                        if !collected.push(values, self.max_rows, self.max_bytes) {
                            break;
                        }
                    }
                    Ok::<_, sqlx::Error>(())
                };
                self.within_deadline(work)
                    .await
                    .map(|()| Outcome::Rows(collected))
            }
            Access::Write => self
                .within_deadline(async { Ok(query.execute(lease.conn()).await?.rows_affected()) })
                .await
                .map(Outcome::Affected),
        };
        let end = match (&outcome, access) {
            (Ok(_), Access::Write) => "COMMIT",
            _ => "ROLLBACK",
        };
        lease.end(end, outcome).await
    }

    async fn mysql(
        &self,
        pool: &MySqlPool,
        sql: &str,
        values: &[Bound],
        access: Access,
    ) -> Result<Outcome, DbError> {
        let Connect::MySql(options) = &self.connect else {
            unreachable!("mysql pools come from mysql options")
        };
        let mut lease = Lease::new(pool.acquire().await.map_err(unavailable)?);
        let setup = match access {
            Access::Read => "START TRANSACTION READ ONLY; SELECT CONNECTION_ID()",
            Access::Write => "START TRANSACTION READ WRITE; SELECT CONNECTION_ID()",
        };
        let rows = lease.conn().fetch_all(setup).await.map_err(classify)?;
        let id: u64 = rows
            .last()
            .and_then(|row| row.try_get(0).ok())
            .unwrap_or_default();
        lease.cancel = Some(CancelTarget::MySql(options.clone(), id));

        let mut query = sqlx::query::<MySql>(sql);
        for value in values {
            query = match value.clone() {
                Bound::Null => query.bind(None::<String>),
                Bound::Bool(v) => query.bind(v),
                Bound::Int(v) => query.bind(v),
                Bound::Float(v) => query.bind(v),
                Bound::Text(v) => query.bind(v),
                other => query.bind(format!("{other:?}")),
            };
        }
        let outcome = match access {
            Access::Read => {
                let mut collected = Collected::default();
                let work = async {
                    let mut stream = query.fetch(lease.conn());
                    while let Some(row) = stream.try_next().await? {
                        let (names, values) = mysql_row(&row);
                        collected.set_columns(names);
                        if !collected.push(values, self.max_rows, self.max_bytes) {
                            break;
                        }
                    }
                    Ok::<_, sqlx::Error>(())
                };
                self.within_deadline(work)
                    .await
                    .map(|()| Outcome::Rows(collected))
            }
            Access::Write => self
                .within_deadline(async { Ok(query.execute(lease.conn()).await?.rows_affected()) })
                .await
                .map(Outcome::Affected),
        };
        let end = match (&outcome, access) {
            (Ok(_), Access::Write) => "COMMIT",
            _ => "ROLLBACK",
        };
        lease.end(end, outcome).await
    }

    async fn sqlite(
        &self,
        pool: &SqlitePool,
        sql: &str,
        values: &[Bound],
        access: Access,
    ) -> Result<Outcome, DbError> {
        let mut lease = Lease::new(pool.acquire().await.map_err(unavailable)?);
        // SQLite runs in-process: interrupt it from its progress handler once the deadline
        // passes or the caller goes away.
        let stop = Arc::new(AtomicBool::new(false));
        let deadline = Instant::now() + self.timeout;
        {
            let stop = Arc::clone(&stop);
            let mut handle = lease.conn().lock_handle().await.map_err(classify)?;
            handle.set_progress_handler(1000, move || {
                !stop.load(Ordering::Relaxed) && Instant::now() < deadline
            });
        }
        lease.cancel = Some(CancelTarget::Sqlite(stop));
        let begin = match access {
            Access::Read => "BEGIN",
            Access::Write => "BEGIN IMMEDIATE",
        };
        lease.conn().execute(begin).await.map_err(classify)?;

        let mut query = sqlx::query::<Sqlite>(sql);
        for value in values {
            query = match value.clone() {
                Bound::Null => query.bind(None::<String>),
                Bound::Bool(v) => query.bind(v),
                Bound::Int(v) => query.bind(v),
                Bound::Float(v) => query.bind(v),
                Bound::Text(v) => query.bind(v),
                other => query.bind(format!("{other:?}")),
            };
        }
        let outcome = match access {
            Access::Read => {
                let mut collected = Collected::default();
                let work = async {
                    let mut stream = query.fetch(lease.conn());
                    while let Some(row) = stream.try_next().await? {
                        let (names, values) = sqlite_row(&row);
                        collected.set_columns(names);
                        if !collected.push(values, self.max_rows, self.max_bytes) {
                            break;
                        }
                    }
                    Ok::<_, sqlx::Error>(())
                };
                self.within_deadline(work)
                    .await
                    .map(|()| Outcome::Rows(collected))
            }
            Access::Write => self
                .within_deadline(async { Ok(query.execute(lease.conn()).await?.rows_affected()) })
                .await
                .map(Outcome::Affected),
        };
        let end = match (&outcome, access) {
            (Ok(_), Access::Write) => "COMMIT",
            _ => "ROLLBACK",
        };
        lease.end(end, outcome).await
    }

    async fn within_deadline<T>(
        &self,
        work: impl Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, DbError> {
        match tokio::time::timeout(self.deadline(), work).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(classify(error)),
            Err(_) => Err(DbError::TimedOut),
        }
    }
}

/// A connection held for one call. Dropped before [`Lease::end`] (the call timed out or its
/// caller went away), it cancels the running statement on the server and closes the
/// connection instead of returning it, half-used, to the pool.
struct Lease<DB: Database> {
    conn: Option<PoolConnection<DB>>,
    cancel: Option<CancelTarget>,
}

impl<DB: Database> Lease<DB> {
    fn new(conn: PoolConnection<DB>) -> Self {
        Self {
            conn: Some(conn),
            cancel: None,
        }
    }

    fn conn(&mut self) -> &mut DB::Connection {
        self.conn
            .as_mut()
            .expect("connection held until the lease ends")
    }

    /// Ends the transaction with `end` (fixed text) and releases the connection; a failed
    /// statement keeps its own error.
    async fn end(mut self, end: &str, outcome: Result<Outcome, DbError>) -> Result<Outcome, DbError>
    where
        for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    {
        if matches!(outcome, Err(DbError::TimedOut | DbError::Unavailable(_))) {
            // Dropping the lease cancels the statement and closes the connection.
            return outcome;
        }
        let ended = self.conn().execute(end).await;
        self.cancel = None;
        let mut conn = self
            .conn
            .take()
            .expect("connection held until the lease ends");
        match (outcome, ended) {
            (Err(error), _) => {
                if !matches!(error, DbError::Refused(_)) {
                    conn.close_on_drop();
                }
                Err(error)
            }
            (Ok(_), Err(error)) => {
                conn.close_on_drop();
                Err(classify(error))
            }
            (Ok(outcome), Ok(_)) => Ok(outcome),
        }
    }
}

impl<DB: Database> Drop for Lease<DB> {
    fn drop(&mut self) {
        if let Some(conn) = &mut self.conn {
            conn.close_on_drop();
            if let Some(target) = self.cancel.take() {
                target.fire();
            }
        }
    }
}

/// How to stop a statement that is still running on the server.
enum CancelTarget {
    Postgres(PgConnectOptions, i32),
    MySql(MySqlConnectOptions, u64),
    Sqlite(Arc<AtomicBool>),
}

impl CancelTarget {
    fn fire(self) {
        let task = match self {
            Self::Sqlite(stop) => {
                stop.store(true, Ordering::Relaxed);
                return;
            }
            Self::Postgres(options, pid) => Box::pin(async move {
                let mut conn = PgConnection::connect_with(&options).await?;
                sqlx::query("SELECT pg_cancel_backend($1)")
                    .bind(pid)
                    .execute(&mut conn)
                    .await?;
                conn.close().await
            })
                as std::pin::Pin<Box<dyn Future<Output = Result<(), sqlx::Error>> + Send>>,
            Self::MySql(options, id) => Box::pin(async move {
                let mut conn = MySqlConnection::connect_with(&options).await?;
                // The id is the server's own connection id, an integer: nothing of the caller's.
                conn.execute(format!("KILL QUERY {id}").as_str()).await?;
                conn.close().await
            }),
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                match tokio::time::timeout(ACQUIRE_TIMEOUT, task).await {
                    Ok(Ok(())) => tracing::debug!("running statement cancelled"),
                    Ok(Err(error)) => {
                        tracing::warn!(%error, "could not cancel a running statement")
                    }
                    Err(_) => tracing::warn!("could not cancel a running statement in time"),
                }
            });
        }
    }
}

/// A single connection for the credential check.
pub(crate) enum OneConnection {
    Postgres(PgConnection),
    MySql(MySqlConnection),
}

fn unavailable(error: sqlx::Error) -> DbError {
    DbError::Unavailable(error.to_string())
}

/// Sorts a driver error into what the client may see.
fn classify(error: sqlx::Error) -> DbError {
    match error {
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            let message = db.message().to_owned();
            if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
                if code == "57014" {
                    return DbError::TimedOut;
                }
                let _ = pg;
                let safe = ["42", "22", "23", "25", "0A", "21", "40", "54", "2B"]
                    .iter()
                    .any(|class| code.starts_with(class));
                return if safe {
                    DbError::Refused(message)
                } else {
                    DbError::Internal(sqlx::Error::Database(db))
                };
            }
            if let Some(my) = db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
                let number = my.number();
                if matches!(number, 3024 | 1969 | 1317) {
                    return DbError::TimedOut;
                }
                let safe = ["42", "22", "23", "25", "21"]
                    .iter()
                    .any(|class| code.starts_with(class))
                    || matches!(
                        number,
                        1792 | 1290
                            | 1064
                            | 1146
                            | 1054
                            | 1305
                            | 1142
                            | 1227
                            | 1044
                            | 1095
                            | 1370
                            | 3140
                            | 1235
                    );
                return if safe {
                    DbError::Refused(message)
                } else {
                    DbError::Internal(sqlx::Error::Database(db))
                };
            }
            // SQLite: the primary result code is the low byte of the extended one.
            let primary = code.parse::<i64>().map(|c| c & 0xff).unwrap_or(-1);
            match primary {
                9 => DbError::TimedOut,
                1 | 8 | 18 | 19 | 20 | 23 | 25 => DbError::Refused(message),
                _ => DbError::Internal(sqlx::Error::Database(db)),
            }
        }
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => DbError::Unavailable(error.to_string()),
        other => DbError::Internal(other),
    }
}

/// Creates the SQLite file at `path` from `seed` when it does not exist: the script runs
/// against a temporary file next to `path`, which is moved into place only if nothing is
/// there yet, so concurrent starts and failed seeds never leave a
/// half-built database behind.
async fn create_from_seed(path: &Path, seed: &str) -> Result<(), DbError> {
    if path.exists() {
        return Ok(());
    }
    let failed = |what: &str, e: &dyn std::fmt::Display| {
        DbError::Unavailable(format!("seeding the database: {what}: {e}"))
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| failed("create directory", &e))?;
    let temp = tempfile::Builder::new()
        .prefix(".seed-")
        .suffix(".sqlite")
        .tempfile_in(dir)
        .map_err(|e| failed("temporary file", &e))?;
    // SQLite treats the empty temporary file as a new database.
    let mut conn = SqliteConnectOptions::new()
        .filename(temp.path())
        .connect()
        .await
        .map_err(|e| failed("open", &e))?;
    let seeded = async {
        conn.execute("BEGIN").await?;
        conn.execute(seed).await?;
        conn.execute("COMMIT").await
    }
    .await;
    let _ = conn.close().await;
    seeded.map_err(|e| failed("run seed script", &e))?;
    match temp.persist_noclobber(path) {
        Ok(_) => {
            tracing::info!(path = %path.display(), "created SQLite database from seed");
            Ok(())
        }
        // Another process created it first: theirs is as good as ours.
        Err(_) if path.exists() => Ok(()),
        Err(e) => Err(failed("move into place", &e.error)),
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn seed_creates_a_complete_database_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/seeded.sqlite");
        super::create_from_seed(&path, "CREATE TABLE a (x); INSERT INTO a VALUES (1), (2);")
            .await
            .expect("seed");
        let bytes = std::fs::read(&path).expect("created");
        assert!(bytes.starts_with(b"SQLite format 3"), "not a database");
        // An existing database is never replaced, and a failing seed leaves nothing behind.
        super::create_from_seed(&path, "this is not SQL")
            .await
            .expect("existing file is kept");
        assert_eq!(std::fs::read(&path).expect("still there"), bytes);
        let other = dir.path().join("broken.sqlite");
        assert!(
            super::create_from_seed(&other, "CREATE TABLE b (x); nonsense;")
                .await
                .is_err()
        );
        assert!(!other.exists(), "a failed seed leaves no database");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .expect("dir")
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(
            leftovers.len(),
            1,
            "temporary files are cleaned up: {leftovers:?}"
        );
    }
}
