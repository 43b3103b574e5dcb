//! One database source: its pools and the only code that talks to a database. Reads run in
//! a read-only transaction on a pool whose sessions already default to read-only (SQLite: a
//! read-only connection with `query_only`), under the engine's statement timeout and ours;
//! writes run on a separate pool, only for destructive statements. A statement that outlives
//! its time, or whose caller goes away, is cancelled on the server and its connection is
//! closed.
//!
//! A call waits for one of the pool's connections until shortly before its own deadline; a
//! call that gets none is told the database is busy. "Unavailable" means only that the
//! database could not be reached, and readiness follows that, never load.
//!
//! One runner serves all three engines ([`Source::execute`]); what differs per engine (the
//! transaction's start, how a running statement is cancelled, binding, row decoding) is the
//! [`Engine`] trait.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use futures::future::BoxFuture;
use portcullis_config::{SqlEngine, SqlSource};
use portcullis_core::ToolError;
use sqlx::mysql::{MySql, MySqlConnectOptions, MySqlConnection, MySqlPoolOptions, MySqlRow};
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPoolOptions, PgRow, Postgres};
use sqlx::query::Query;
use sqlx::sqlite::{Sqlite, SqliteConnectOptions, SqlitePoolOptions, SqliteRow};
use sqlx::{ConnectOptions, Connection, Database, Executor, IntoArguments, Pool, Row};
use tokio::sync::Semaphore;

use super::cause::{Cause, Class};
use super::params::Bound;
use super::rows::{Collected, mysql_row, pg_row, sqlite_row};

/// How long connecting to the database may take before it counts as unavailable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Our own deadline trails the engine's, so that the engine's clearer error usually wins.
const GRACE: Duration = Duration::from_millis(500);
/// A call waiting for a connection gives up this long before its deadline, so that it can
/// still say the database is busy before the guard's timeout speaks.
const BUSY_MARGIN: Duration = Duration::from_millis(250);

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
    /// The database cannot be reached, or refused the connection: why, for the operator
    /// (the model is told only the class).
    Unavailable(Cause),
    /// Every connection was in use until the call's deadline.
    Busy,
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
            Self::Unavailable(cause) => {
                tracing::warn!(source = %source.name, cause = %cause.detail(&source.at()), "database unavailable");
                let class = cause.class;
                ToolError::rejected(if class.needs_the_operator() {
                    format!(
                        "database `{}` cannot be opened ({}); retrying will not help: the operator must check its configuration",
                        source.name,
                        class.words()
                    )
                } else {
                    format!(
                        "database `{}` is unavailable ({}); try again later",
                        source.name,
                        class.words()
                    )
                })
            }
            Self::Busy => ToolError::rejected(format!(
                "database `{}` is busy: all {} connections were in use until this call's deadline; try again in a moment",
                source.name, source.pool_size
            )),
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

/// A pool and the slots that bound how many calls use it at once. Calls queue on the slots
/// (until their deadline), so the pool itself only ever waits for a connection to open.
struct Slots<DB: Database> {
    pool: Pool<DB>,
    slots: Semaphore,
}

impl<DB: Database> Slots<DB> {
    fn new(pool: Pool<DB>, size: u32) -> Self {
        Self {
            pool,
            slots: Semaphore::new(size as usize),
        }
    }
}

/// A source's pools: read-only, and read-write for writable sources.
struct Both<DB: Database> {
    ro: Slots<DB>,
    rw: Option<Slots<DB>>,
}

enum Pools {
    Sqlite(Both<Sqlite>),
    Postgres(Both<Postgres>),
    MySql(Both<MySql>),
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
    /// Whether the last attempt to use a connection reached the database. Readiness reports
    /// it while every connection is busy, instead of queueing behind the calls.
    reachable: AtomicBool,
    /// The last direct diagnosis of a pool timeout and when it was made: calls failing
    /// meanwhile reuse it, so an overloaded database is not sent one more connection per
    /// failed call.
    diagnosed: std::sync::Mutex<Option<(Instant, Cause)>>,
}

/// What a login may write (for `portcullis check`).
pub(crate) enum Privileges {
    Postgres {
        role: String,
        superuser: bool,
        writable_tables: i64,
        can_create: bool,
    },
    MySql {
        grants: Vec<String>,
    },
    Sqlite {
        file_writable: bool,
    },
}

/// What differs between engines when running one statement.
pub(crate) trait Engine: Database + Sized {
    /// Whether a read runs as its one statement, without a transaction of ours around it:
    /// where the connection itself cannot write and one statement is its own transaction,
    /// `BEGIN … ROLLBACK` adds two round trips and nothing else.
    const READ_WITHOUT_TRANSACTION: bool = false;

    /// Opens the transaction for `access` on `conn` (none for a read, when
    /// [`Engine::READ_WITHOUT_TRANSACTION`]) and says how to cancel a statement running on it.
    fn begin<'a>(
        source: &'a Source,
        conn: &'a mut Self::Connection,
        access: Access,
    ) -> BoxFuture<'a, Result<CancelTarget, DbError>>;

    /// Binds one value.
    fn bind<'q>(
        query: Query<'q, Self, <Self as Database>::Arguments<'q>>,
        value: &Bound,
    ) -> Query<'q, Self, <Self as Database>::Arguments<'q>>;

    /// Column names and values of a row.
    fn decode(row: &Self::Row) -> (Vec<String>, Vec<serde_json::Value>);

    /// Rows a write changed.
    fn affected(result: &Self::QueryResult) -> u64;
}

impl Engine for Postgres {
    fn begin<'a>(
        source: &'a Source,
        conn: &'a mut PgConnection,
        access: Access,
    ) -> BoxFuture<'a, Result<CancelTarget, DbError>> {
        Box::pin(async move {
            let Connect::Postgres(options) = &source.connect else {
                unreachable!("postgres pools come from postgres options")
            };
            let begin = match access {
                Access::Read => "BEGIN READ ONLY",
                Access::Write => "BEGIN READ WRITE",
            };
            let setup = format!(
                "{begin}; SET LOCAL statement_timeout = {}; SELECT pg_backend_pid()",
                source.timeout.as_millis()
            );
            let rows = conn.fetch_all(setup.as_str()).await.map_err(classify)?;
            let pid: i32 = rows
                .last()
                .and_then(|row| row.try_get(0).ok())
                .unwrap_or_default();
            Ok(CancelTarget::Postgres(options.clone(), pid))
        })
    }

    fn bind<'q>(
        query: Query<'q, Self, <Self as Database>::Arguments<'q>>,
        value: &Bound,
    ) -> Query<'q, Self, <Self as Database>::Arguments<'q>> {
        match value.clone() {
            Bound::Null => query.bind(None::<String>),
            Bound::Bool(v) => query.bind(v),
            Bound::Int(v) => query.bind(v),
            Bound::Float(v) => query.bind(v),
            Bound::Text(v) => query.bind(v),
            Bound::IntArray(v) => query.bind(v),
            Bound::FloatArray(v) => query.bind(v),
            Bound::TextArray(v) => query.bind(v),
            Bound::BoolArray(v) => query.bind(v),
        }
    }

    fn decode(row: &PgRow) -> (Vec<String>, Vec<serde_json::Value>) {
        pg_row(row)
    }

    fn affected(result: &sqlx::postgres::PgQueryResult) -> u64 {
        result.rows_affected()
    }
}

impl Engine for MySql {
    fn begin<'a>(
        source: &'a Source,
        conn: &'a mut MySqlConnection,
        access: Access,
    ) -> BoxFuture<'a, Result<CancelTarget, DbError>> {
        Box::pin(async move {
            let Connect::MySql(options) = &source.connect else {
                unreachable!("mysql pools come from mysql options")
            };
            let setup = match access {
                Access::Read => "START TRANSACTION READ ONLY; SELECT CONNECTION_ID()",
                Access::Write => "START TRANSACTION READ WRITE; SELECT CONNECTION_ID()",
            };
            let rows = conn.fetch_all(setup).await.map_err(classify)?;
            let id: u64 = rows
                .last()
                .and_then(|row| row.try_get(0).ok())
                .unwrap_or_default();
            Ok(CancelTarget::MySql(options.clone(), id))
        })
    }

    fn bind<'q>(
        query: Query<'q, Self, <Self as Database>::Arguments<'q>>,
        value: &Bound,
    ) -> Query<'q, Self, <Self as Database>::Arguments<'q>> {
        scalar_bind(query, value)
    }

    fn decode(row: &MySqlRow) -> (Vec<String>, Vec<serde_json::Value>) {
        mysql_row(row)
    }

    fn affected(result: &sqlx::mysql::MySqlQueryResult) -> u64 {
        result.rows_affected()
    }
}

impl Engine for Sqlite {
    /// A read runs on a connection of the read-only pool, opened `SQLITE_OPEN_READONLY`
    /// with `PRAGMA query_only = ON`: it cannot write, whatever the statement. SQLite runs
    /// every statement outside an explicit transaction in one of its own (a consistent
    /// snapshot from its first step to its reset), which is all a read transaction of one
    /// statement gives; the statement is reset (its snapshot released) when its rows stop
    /// being read, a row cap included.
    const READ_WITHOUT_TRANSACTION: bool = true;

    fn begin<'a>(
        source: &'a Source,
        conn: &'a mut sqlx::SqliteConnection,
        access: Access,
    ) -> BoxFuture<'a, Result<CancelTarget, DbError>> {
        Box::pin(async move {
            // SQLite runs in-process: interrupt it from its progress handler once the
            // deadline passes or the caller goes away.
            let stop = Arc::new(AtomicBool::new(false));
            let deadline = Instant::now() + source.timeout;
            {
                let stop = Arc::clone(&stop);
                let mut handle = conn.lock_handle().await.map_err(classify)?;
                handle.set_progress_handler(1000, move || {
                    !stop.load(Ordering::Relaxed) && Instant::now() < deadline
                });
            }
            if access == Access::Write {
                conn.execute("BEGIN IMMEDIATE").await.map_err(classify)?;
            }
            Ok(CancelTarget::Sqlite(stop))
        })
    }

    fn bind<'q>(
        query: Query<'q, Self, <Self as Database>::Arguments<'q>>,
        value: &Bound,
    ) -> Query<'q, Self, <Self as Database>::Arguments<'q>> {
        scalar_bind(query, value)
    }

    fn decode(row: &SqliteRow) -> (Vec<String>, Vec<serde_json::Value>) {
        sqlite_row(row)
    }

    fn affected(result: &sqlx::sqlite::SqliteQueryResult) -> u64 {
        result.rows_affected()
    }
}

/// Binding for engines without native arrays (their arrays arrive as JSON text).
fn scalar_bind<'q, DB>(
    query: Query<'q, DB, <DB as Database>::Arguments<'q>>,
    value: &Bound,
) -> Query<'q, DB, <DB as Database>::Arguments<'q>>
where
    DB: Database,
    Option<String>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    bool: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    f64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    match value.clone() {
        Bound::Null => query.bind(None::<String>),
        Bound::Bool(v) => query.bind(v),
        Bound::Int(v) => query.bind(v),
        Bound::Float(v) => query.bind(v),
        Bound::Text(v) => query.bind(v),
        other => query.bind(format!("{other:?}")),
    }
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
                        Some(
                            portcullis_core::operator_file::read_to_string(&seed_path).map_err(
                                |e| {
                                    format!(
                                        "sql source `{}`: cannot read seed `{}`: {e}",
                                        config.name,
                                        seed_path.display()
                                    )
                                },
                            )?,
                        )
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
            reachable: AtomicBool::new(true),
            diagnosed: std::sync::Mutex::new(None),
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
                    .busy_timeout(Duration::from_secs(5))
                    .disable_statement_logging();
                // No ping before each use: a SQLite connection is a file handle in this
                // process, nothing a network can break (the ping is a round trip to the
                // connection's worker thread per call).
                let ro = SqlitePoolOptions::new()
                    .max_connections(size)
                    .acquire_timeout(CONNECT_TIMEOUT)
                    .test_before_acquire(false)
                    .connect_lazy_with(base.clone().read_only(true).pragma("query_only", "ON"));
                let rw = (!self.read_only).then(|| {
                    // A writable source may start from nothing: its file is created. SQLite
                    // has one writer at a time, so one connection.
                    let pool = SqlitePoolOptions::new()
                        .max_connections(1)
                        .acquire_timeout(CONNECT_TIMEOUT)
                        .test_before_acquire(false)
                        .connect_lazy_with(base.clone().create_if_missing(true));
                    Slots::new(pool, 1)
                });
                Pools::Sqlite(Both {
                    ro: Slots::new(ro, size),
                    rw,
                })
            }
            Connect::Postgres(options) => {
                let pool = |read_only: bool| {
                    // Session defaults are a layer under the per-call `BEGIN READ ONLY`: even a
                    // statement that ended the transaction would start a read-only one. Strings
                    // are read as the ad-hoc query's check reads them (a role or database with
                    // `standard_conforming_strings = off` would take `\'` as an escape: review
                    // of issue 27).
                    let setup = if read_only {
                        format!(
                            "SET default_transaction_read_only = on; SET statement_timeout = {timeout_ms}; SET standard_conforming_strings = on"
                        )
                    } else {
                        format!(
                            "SET statement_timeout = {timeout_ms}; SET standard_conforming_strings = on"
                        )
                    };
                    let pool = PgPoolOptions::new()
                        .max_connections(size)
                        .acquire_timeout(CONNECT_TIMEOUT)
                        .after_connect(move |conn, _| {
                            let setup = setup.clone();
                            Box::pin(async move {
                                conn.execute(setup.as_str()).await?;
                                Ok(())
                            })
                        })
                        .connect_lazy_with(options.clone());
                    Slots::new(pool, size)
                };
                Pools::Postgres(Both {
                    ro: pool(true),
                    rw: (!self.read_only).then(|| pool(false)),
                })
            }
            Connect::MySql(options) => {
                let pool = |read_only: bool| {
                    let pool = MySqlPoolOptions::new()
                        .max_connections(size)
                        .acquire_timeout(CONNECT_TIMEOUT)
                        .after_connect(move |conn, _| {
                            Box::pin(async move {
                                let (version, mode): (String, String) =
                                    sqlx::query_as("SELECT VERSION(), @@SESSION.sql_mode")
                                        .fetch_one(&mut *conn)
                                        .await?;
                                // The ad-hoc query's check reads MySQL text the way the server
                                // does by default; modes that read quotes and backslashes
                                // otherwise come off this session (the second attack run of
                                // issue 27: with NO_BACKSLASH_ESCAPES `'x\' , get_lock(…)`
                                // ran a call the check had seen inside a string).
                                let kept = checked_sql_mode(&mode);
                                if kept != mode {
                                    sqlx::query("SET SESSION sql_mode = ?")
                                        .bind(kept)
                                        .execute(&mut *conn)
                                        .await?;
                                }
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
                        .connect_lazy_with(options.clone());
                    Slots::new(pool, size)
                };
                Pools::MySql(Both {
                    ro: pool(true),
                    rw: (!self.read_only).then(|| pool(false)),
                })
            }
        })
    }

    /// Whether the database answers (for `/readyz`). When every connection is in use the
    /// answer is the last one calls got: a busy database is not a database that is down.
    pub(crate) async fn ping(&self) -> Result<(), DbError> {
        match self.pools().await? {
            Pools::Sqlite(both) => self.ping_on(&both.ro).await,
            Pools::Postgres(both) => self.ping_on(&both.ro).await,
            Pools::MySql(both) => self.ping_on(&both.ro).await,
        }
    }

    async fn ping_on<DB: Database>(&self, slots: &Slots<DB>) -> Result<(), DbError> {
        let Ok(_slot) = slots.slots.try_acquire() else {
            return if self.reachable.load(Ordering::Relaxed) {
                Ok(())
            } else {
                Err(DbError::Unavailable(Cause::new(
                    Class::Other,
                    "busy, and the last connection attempt failed",
                )))
            };
        };
        let result = match slots.pool.acquire().await {
            Ok(mut conn) => conn.ping().await,
            Err(e) => Err(e),
        };
        self.reachable.store(result.is_ok(), Ordering::Relaxed);
        match result {
            Ok(()) => Ok(()),
            Err(error) => Err(self.unavailable(&error).await),
        }
    }

    /// Runs `sql` with `values` bound, waiting for a connection until shortly before
    /// `deadline`. `Access::Read` collects rows under the caps in a read-only transaction;
    /// `Access::Write` (destructive statements on writable sources only) commits and returns
    /// the affected row count.
    pub(crate) async fn run(
        &self,
        sql: &str,
        values: &[Bound],
        access: Access,
        deadline: tokio::time::Instant,
    ) -> Result<Outcome, DbError> {
        self.run_capped(sql, values, access, deadline, self.max_rows)
            .await
    }

    /// [`Self::run`] collecting at most `max_rows` (at most the source's own cap).
    pub(crate) async fn run_capped(
        &self,
        sql: &str,
        values: &[Bound],
        access: Access,
        deadline: tokio::time::Instant,
        max_rows: usize,
    ) -> Result<Outcome, DbError> {
        let max_rows = max_rows.min(self.max_rows);
        let read_only = || DbError::Refused(format!("source `{}` is read-only", self.name));
        match (self.pools().await?, access) {
            (Pools::Postgres(both), Access::Read) => {
                self.execute(&both.ro, sql, values, access, deadline, max_rows)
                    .await
            }
            (Pools::MySql(both), Access::Read) => {
                self.execute(&both.ro, sql, values, access, deadline, max_rows)
                    .await
            }
            (Pools::Sqlite(both), Access::Read) => {
                self.execute(&both.ro, sql, values, access, deadline, max_rows)
                    .await
            }
            (Pools::Postgres(both), Access::Write) => {
                let rw = both.rw.as_ref().ok_or_else(read_only)?;
                self.execute(rw, sql, values, access, deadline, max_rows)
                    .await
            }
            (Pools::MySql(both), Access::Write) => {
                let rw = both.rw.as_ref().ok_or_else(read_only)?;
                self.execute(rw, sql, values, access, deadline, max_rows)
                    .await
            }
            (Pools::Sqlite(both), Access::Write) => {
                let rw = both.rw.as_ref().ok_or_else(read_only)?;
                self.execute(rw, sql, values, access, deadline, max_rows)
                    .await
            }
        }
    }

    /// The one runner: a slot until shortly before the deadline (else busy), a connection,
    /// the engine's transaction, the statement under our deadline, then commit or rollback.
    async fn execute<E>(
        &self,
        slots: &Slots<E>,
        sql: &str,
        values: &[Bound],
        access: Access,
        deadline: tokio::time::Instant,
        max_rows: usize,
    ) -> Result<Outcome, DbError>
    where
        E: Engine,
        for<'c> &'c mut E::Connection: Executor<'c, Database = E>,
        for<'q> <E as Database>::Arguments<'q>: IntoArguments<'q, E>,
    {
        let wait_until = deadline
            .checked_sub(BUSY_MARGIN)
            .unwrap_or_else(tokio::time::Instant::now);
        let _slot = match tokio::time::timeout_at(wait_until, slots.slots.acquire()).await {
            Ok(Ok(slot)) => slot,
            Ok(Err(_closed)) => {
                return Err(DbError::Unavailable(Cause::new(
                    Class::Other,
                    "pool closed",
                )));
            }
            Err(_) => return Err(DbError::Busy),
        };
        let conn = match slots.pool.acquire().await {
            Ok(conn) => conn,
            Err(error) => {
                self.reachable.store(false, Ordering::Relaxed);
                return Err(self.unavailable(&error).await);
            }
        };
        self.reachable.store(true, Ordering::Relaxed);
        let in_use = slots
            .pool
            .size()
            .saturating_sub(u32::try_from(slots.pool.num_idle()).unwrap_or(0));
        metrics::gauge!("portcullis_sql_pool_connections", "source" => self.name.clone(), "state" => "in_use")
            .set(f64::from(in_use));
        metrics::gauge!("portcullis_sql_pool_connections", "source" => self.name.clone(), "state" => "open")
            .set(f64::from(slots.pool.size()));
        let mut lease = Lease::new(conn);
        lease.cancel = Some(E::begin(self, lease.conn(), access).await?);

        let mut query = sqlx::query::<E>(sql);
        for value in values {
            query = E::bind(query, value);
        }
        let outcome = match access {
            Access::Read => {
                let mut collected = Collected::default();
                let work = async {
                    let mut stream = query.fetch(lease.conn());
                    while let Some(row) = stream.try_next().await? {
                        let (names, values) = E::decode(&row);
                        collected.set_columns(names);
                        if !collected.push(values, max_rows, self.max_bytes) {
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
                .within_deadline(async { Ok(E::affected(&query.execute(lease.conn()).await?)) })
                .await
                .map(Outcome::Affected),
        };
        let end = match (&outcome, access) {
            (_, Access::Read) if E::READ_WITHOUT_TRANSACTION => None,
            (Ok(_), Access::Write) => Some("COMMIT"),
            _ => Some("ROLLBACK"),
        };
        lease.end(end, outcome).await
    }

    fn deadline(&self) -> Duration {
        self.timeout + GRACE
    }

    /// Where the source points, for the operator: the SQLite file, or
    /// `user@host:port/database` (never the password).
    pub(crate) fn at(&self) -> String {
        match &self.connect {
            Connect::Sqlite { path, .. } => path.display().to_string(),
            Connect::Postgres(o) => format!(
                "{}@{}:{}/{}",
                o.get_username(),
                o.get_host(),
                o.get_port(),
                o.get_database().unwrap_or_default()
            ),
            Connect::MySql(o) => format!(
                "{}@{}:{}/{}",
                o.get_username(),
                o.get_host(),
                o.get_port(),
                o.get_database().unwrap_or_default()
            ),
        }
    }

    /// What the operator reads about `error` (readiness's cause, logs).
    pub(crate) fn explain(&self, error: &DbError) -> String {
        match error {
            DbError::Unavailable(cause) => cause.detail(&self.at()),
            DbError::Refused(message) => portcullis_core::redact_secrets(message),
            DbError::Busy => "every connection is in use".to_owned(),
            DbError::TimedOut => "timed out".to_owned(),
            DbError::Internal(error) => portcullis_core::redact_secrets(&error.to_string()),
        }
    }

    /// The cause of a failed connection. A pool only says it timed out when nothing listens
    /// (it retries a refused connection until its deadline): one direct attempt, bounded,
    /// names the real cause.
    async fn unavailable(&self, error: &sqlx::Error) -> DbError {
        let cause = Cause::of(error);
        if cause.class != Class::TimedOut {
            return DbError::Unavailable(cause);
        }
        let recent = self
            .diagnosed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .filter(|(at, _)| at.elapsed() < DIAGNOSIS_KEPT)
            .map(|(_, found)| found.clone());
        let found = match recent {
            Some(found) => found,
            None => {
                let found = self.diagnose(DIAGNOSE_TIMEOUT).await.err().unwrap_or(cause);
                *self
                    .diagnosed
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) =
                    Some((Instant::now(), found.clone()));
                found
            }
        };
        DbError::Unavailable(found)
    }

    /// Opens one connection of its own (never a pool's) and says why it cannot, if it
    /// cannot: `check --connect` and the causes of failed calls. A SQLite file that is
    /// missing is fine when a `seed` or a writable source will create it.
    pub(crate) async fn diagnose(&self, limit: Duration) -> Result<(), Cause> {
        self.with_connection(limit, |_| Box::pin(async { Ok(()) }))
            .await
            .map(|_| ())
    }

    /// Prepares each of `statements` (name, SQL) on a connection of its own, without running
    /// any: the ones the database refuses, with its words (a table that does not exist, a
    /// misspelled column). A SQLite source whose file does not exist yet is checked against
    /// its `seed` run in memory.
    pub(crate) async fn prepare_all(
        &self,
        statements: &[(String, String)],
        limit: Duration,
    ) -> Result<Vec<(String, String)>, Cause> {
        let statements = statements.to_vec();
        self.with_connection(limit, move |conn| {
            Box::pin(async move {
                let mut refused = Vec::new();
                for (name, sql) in statements {
                    if let Err(error) = conn.prepare(&sql).await {
                        refused.push((name, prepare_error(&error)));
                    }
                }
                Ok(refused)
            })
        })
        .await
    }

    /// A direct SQLite connection to what the source serves: its file, read-only; or, when
    /// the file is not there yet, what will make it: the seed run in memory, or an empty
    /// database for a writable source (it creates the file on its first write).
    async fn sqlite_connection(
        &self,
        path: &Path,
        seed: Option<&str>,
    ) -> Result<AnyConnection, Cause> {
        let options = SqliteConnectOptions::new().disable_statement_logging();
        if path.exists() {
            return Ok(AnyConnection::Sqlite(
                options
                    .filename(path)
                    .read_only(true)
                    .connect()
                    .await
                    .map_err(|e| Cause::of(&e))?,
            ));
        }
        if seed.is_none() && self.read_only {
            return Err(Cause::new(
                Class::NotFound,
                format!("there is no file at {}", path.display()),
            ));
        }
        let mut conn = options
            .in_memory(true)
            .connect()
            .await
            .map_err(|e| Cause::of(&e))?;
        if let Some(seed) = seed {
            conn.execute(seed)
                .await
                .map_err(|e| Cause::new(Class::Unusable, format!("its seed script fails: {e}")))?;
        }
        Ok(AnyConnection::Sqlite(conn))
    }

    /// Runs `work` on one direct connection, opened within `limit`.
    async fn with_connection<T>(
        &self,
        limit: Duration,
        work: impl for<'c> FnOnce(&'c mut AnyConnection) -> BoxFuture<'c, Result<T, Cause>>,
    ) -> Result<T, Cause> {
        let late = || {
            Cause::new(
                Class::TimedOut,
                format!("no connection within {} s", limit.as_secs_f64()),
            )
        };
        let mut conn = match &self.connect {
            Connect::Sqlite { path, seed } => {
                // A file on a mount that hangs must not hang the diagnosis: bounded too.
                tokio::time::timeout(limit, self.sqlite_connection(path, seed.as_deref()))
                    .await
                    .map_err(|_| late())??
            }
            Connect::Postgres(options) => AnyConnection::Postgres(
                tokio::time::timeout(limit, PgConnection::connect_with(options))
                    .await
                    .map_err(|_| late())?
                    .map_err(|e| Cause::of(&e))?,
            ),
            Connect::MySql(options) => AnyConnection::MySql(
                tokio::time::timeout(limit, MySqlConnection::connect_with(options))
                    .await
                    .map_err(|_| late())?
                    .map_err(|e| Cause::of(&e))?,
            ),
        };
        // A SQLite file opens lazily: this reads its header (not a database: code 26).
        if let AnyConnection::Sqlite(sqlite) = &mut conn {
            sqlite
                .execute("PRAGMA schema_version")
                .await
                .map_err(|e| Cause::of(&e))?;
        }
        let result = tokio::time::timeout(limit, work(&mut conn))
            .await
            .map_err(|_| late())?;
        conn.close().await;
        result
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

    /// What this source's login could write, read from the database's own catalog with one
    /// short-lived connection (never a pool's), or from the SQLite file's permissions.
    pub(crate) async fn privileges(&self, limit: Duration) -> Result<Privileges, String> {
        let within =
            |what: &'static str| move |_| format!("{what} took longer than {} s", limit.as_secs());
        match &self.connect {
            Connect::Sqlite { path, .. } => {
                // Opening for writing without creating or truncating changes nothing; it asks
                // the OS whether this process could write the file.
                let file_writable =
                    path.exists() && std::fs::OpenOptions::new().write(true).open(path).is_ok();
                Ok(Privileges::Sqlite { file_writable })
            }
            Connect::Postgres(options) => {
                let mut conn = tokio::time::timeout(limit, PgConnection::connect_with(options))
                    .await
                    .map_err(within("connecting"))?
                    .map_err(|_| "the database is unavailable".to_owned())?;
                let row = tokio::time::timeout(
                    limit,
                    sqlx::query(
                        "SELECT current_user::text, \
                                (SELECT rolsuper FROM pg_roles WHERE rolname = current_user), \
                                (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                                  WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
                                    AND n.nspname NOT LIKE 'pg\\_%' \
                                    AND has_table_privilege(c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE')), \
                                has_database_privilege(current_database(), 'CREATE')",
                    )
                    .fetch_one(&mut conn),
                )
                .await
                .map_err(within("the privilege query"))?
                .map_err(|_| "the privilege query failed".to_owned())?;
                let _ = conn.close().await;
                let get = |i: usize| format!("the privilege query returned no column {i}");
                Ok(Privileges::Postgres {
                    role: row.try_get(0).map_err(|_| get(0))?,
                    superuser: row.try_get::<Option<bool>, _>(1).map_err(|_| get(1))? == Some(true),
                    writable_tables: row.try_get(2).map_err(|_| get(2))?,
                    can_create: row.try_get(3).map_err(|_| get(3))?,
                })
            }
            Connect::MySql(options) => {
                let mut conn = tokio::time::timeout(limit, MySqlConnection::connect_with(options))
                    .await
                    .map_err(within("connecting"))?
                    .map_err(|_| "the database is unavailable".to_owned())?;
                let rows =
                    tokio::time::timeout(limit, sqlx::query("SHOW GRANTS").fetch_all(&mut conn))
                        .await
                        .map_err(within("the privilege query"))?
                        .map_err(|_| "the privilege query failed".to_owned())?;
                let _ = conn.close().await;
                let grants = rows
                    .iter()
                    .filter_map(|row| {
                        row.try_get::<String, _>(0).ok().or_else(|| {
                            row.try_get::<Vec<u8>, _>(0)
                                .ok()
                                .map(|b| String::from_utf8_lossy(&b).into_owned())
                        })
                    })
                    .collect();
                Ok(Privileges::MySql { grants })
            }
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

    /// Ends the transaction with `end` (fixed text; none when the statement was its own
    /// transaction) and releases the connection; a failed statement keeps its own error.
    async fn end(
        mut self,
        end: Option<&str>,
        outcome: Result<Outcome, DbError>,
    ) -> Result<Outcome, DbError>
    where
        for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    {
        if matches!(outcome, Err(DbError::TimedOut | DbError::Unavailable(_))) {
            // Dropping the lease cancels the statement and closes the connection.
            return outcome;
        }
        let ended = match end {
            Some(end) => self.conn().execute(end).await.map(drop),
            None => Ok(()),
        };
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

/// `mode` (a MySQL or MariaDB `sql_mode`) without the modes that change how quotes and
/// backslashes are read: `NO_BACKSLASH_ESCAPES`, `ANSI_QUOTES` and the combinations that
/// include it (`ANSI`, `ORACLE`, `MSSQL`, `DB2`, `POSTGRESQL`, `MAXDB`).
fn checked_sql_mode(mode: &str) -> String {
    const OFF: [&str; 8] = [
        "NO_BACKSLASH_ESCAPES",
        "ANSI_QUOTES",
        "ANSI",
        "ORACLE",
        "MSSQL",
        "DB2",
        "POSTGRESQL",
        "MAXDB",
    ];
    mode.split(',')
        .map(str::trim)
        .filter(|m| !m.is_empty() && !OFF.iter().any(|off| off.eq_ignore_ascii_case(m)))
        .collect::<Vec<_>>()
        .join(",")
}

/// How to stop a statement that is still running on the server.
pub(crate) enum CancelTarget {
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
        // Each cancellation opens a connection of its own: a burst of timeouts must not
        // open a burst of connections (the database's `max_connections` would refuse the
        // pools next, and load would look like an outage).
        static CANCELLING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(4);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let Ok(_permit) = CANCELLING.acquire().await else {
                    return;
                };
                match tokio::time::timeout(CONNECT_TIMEOUT, task).await {
                    Ok(Ok(())) => tracing::debug!("running statement cancelled"),
                    Ok(Err(error)) => {
                        tracing::warn!(error = %portcullis_core::redact_secrets(&error.to_string()), "could not cancel a running statement")
                    }
                    Err(_) => tracing::warn!("could not cancel a running statement in time"),
                }
            });
        }
    }
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
        | sqlx::Error::WorkerCrashed => DbError::Unavailable(Cause::during_statement(&error)),
        other => DbError::Internal(other),
    }
}

/// How long a failed call spends finding out why the database did not answer.
const DIAGNOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long that finding answers for every call that fails the same way.
const DIAGNOSIS_KEPT: Duration = Duration::from_secs(5);

/// A direct connection of any engine (`check --connect`, diagnosis).
pub(crate) enum AnyConnection {
    Sqlite(sqlx::SqliteConnection),
    Postgres(PgConnection),
    MySql(MySqlConnection),
}

impl AnyConnection {
    /// Prepares `sql` without running it.
    async fn prepare(&mut self, sql: &str) -> Result<(), sqlx::Error> {
        match self {
            Self::Sqlite(conn) => conn.prepare(sql).await.map(|_| ()),
            Self::Postgres(conn) => conn.prepare(sql).await.map(|_| ()),
            Self::MySql(conn) => conn.prepare(sql).await.map(|_| ()),
        }
    }

    async fn close(self) {
        let _ = match self {
            Self::Sqlite(conn) => conn.close().await,
            Self::Postgres(conn) => conn.close().await,
            Self::MySql(conn) => conn.close().await,
        };
    }
}

/// The database's own words for a statement it would not prepare (its message only: the
/// statement's text is the operator's own config).
fn prepare_error(error: &sqlx::Error) -> String {
    match error {
        sqlx::Error::Database(db) => db.message().to_owned(),
        other => portcullis_core::redact_secrets(&other.to_string()),
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
        DbError::Unavailable(Cause::new(
            Class::Unusable,
            format!("seeding the database: {what}: {e}"),
        ))
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
        .disable_statement_logging()
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
    use super::{Access, DbError, Outcome, Source};
    use tokio::time::{Duration, Instant};

    fn rows(outcome: Result<Outcome, DbError>) -> Vec<Vec<serde_json::Value>> {
        match outcome {
            Ok(Outcome::Rows(collected)) => collected.rows,
            other => panic!("expected rows, got {other:?}"),
        }
    }

    /// A SQLite read runs as its one statement, without `BEGIN … ROLLBACK` around it: the
    /// same guarantees as the transaction gave. It cannot write (the connection is
    /// read-only), a read stopped at its row cap is over (the next read sees a later write),
    /// and the deadline still interrupts it.
    #[tokio::test]
    async fn a_sqlite_read_without_a_transaction_keeps_the_transactions_guarantees() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config: portcullis_config::SqlSource = toml::from_str(
            "name = \"db\"\nurl = \"sqlite://t.sqlite\"\nread_only = false\n\
             statement_timeout_secs = 1\nmax_rows = 3\npool_size = 1\n\
             seed = \"seed.sql\"\n",
        )
        .expect("config");
        #[allow(
            clippy::disallowed_methods,
            reason = "the test writes its seed script in its own temporary folder"
        )]
        std::fs::write(
            dir.path().join("seed.sql"),
            "CREATE TABLE t (x INTEGER); WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL \
             SELECT i + 1 FROM n WHERE i < 100) INSERT INTO t SELECT i FROM n;",
        )
        .expect("seed");
        let source = Source::new(&config, dir.path()).expect("source");
        let soon = || Instant::now() + Duration::from_secs(10);
        let count = || source.run("SELECT count(*) FROM t", &[], Access::Read, soon());

        // Cannot write: the statement is refused by the read-only connection.
        let write = source
            .run("INSERT INTO t VALUES (0)", &[], Access::Read, soon())
            .await;
        assert!(write.is_err(), "a read wrote: {write:?}");
        assert_eq!(rows(count().await), vec![vec![serde_json::json!(100)]]);

        // Stopped at the row cap (3 of 100) on the only read connection; a write after it
        // commits, and the same connection's next read sees it.
        assert_eq!(
            rows(
                source
                    .run("SELECT x FROM t ORDER BY x", &[], Access::Read, soon())
                    .await
            )
            .len(),
            3
        );
        let inserted = source
            .run("INSERT INTO t VALUES (101)", &[], Access::Write, soon())
            .await;
        assert!(matches!(inserted, Ok(Outcome::Affected(1))), "{inserted:?}");
        assert_eq!(rows(count().await), vec![vec![serde_json::json!(101)]]);

        // The deadline still stops a statement that would run forever.
        let started = std::time::Instant::now();
        let endless = source
            .run(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) \
                 SELECT count(*) FROM n",
                &[],
                Access::Read,
                soon(),
            )
            .await;
        assert!(matches!(endless, Err(DbError::TimedOut)), "{endless:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
        // And the connection serves the next read.
        assert_eq!(rows(count().await), vec![vec![serde_json::json!(101)]]);
    }

    #[test]
    fn mysql_sessions_read_quotes_and_backslashes_as_the_check_does() {
        assert_eq!(
            super::checked_sql_mode(
                "STRICT_TRANS_TABLES,NO_BACKSLASH_ESCAPES,ANSI_QUOTES,PIPES_AS_CONCAT"
            ),
            "STRICT_TRANS_TABLES,PIPES_AS_CONCAT"
        );
        assert_eq!(
            super::checked_sql_mode("REAL_AS_FLOAT,PIPES_AS_CONCAT,ANSI_QUOTES,IGNORE_SPACE,ANSI"),
            "REAL_AS_FLOAT,PIPES_AS_CONCAT,IGNORE_SPACE"
        );
        assert_eq!(super::checked_sql_mode(""), "");
        let plain = "STRICT_TRANS_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION";
        assert_eq!(super::checked_sql_mode(plain), plain);
    }

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
