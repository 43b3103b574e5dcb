//! The PostgreSQL audit sink: every record the file got, inserted as its exact text into an
//! append-only table (`replica`, `seq`, `record`) by a role that may only INSERT. Each
//! replica's records form their own chain; `audit verify --postgres` checks them all.
//!
//! Table (created by the operator):
//! `CREATE TABLE portcullis_audit (replica text NOT NULL, seq bigint NOT NULL, record text
//! NOT NULL, PRIMARY KEY (replica, seq));` and `GRANT INSERT ON portcullis_audit TO …;`

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use portcullis_config::AuditPostgres;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tokio::sync::mpsc;

use super::Health;
use super::chain::{ChainError, Hasher, Verifier};

/// Records kept in memory while the database is unreachable; past it the oldest are
/// dropped (and counted), the file still has them.
const BACKLOG: usize = 100_000;

pub(super) struct Sink {
    queue: mpsc::Sender<Vec<(u64, String)>>,
    /// The log's count of records not yet everywhere: the sink takes off what it inserted
    /// or dropped.
    outstanding: Arc<std::sync::atomic::AtomicUsize>,
}

impl Sink {
    /// Starts the inserting task (lazily connecting). Needs a tokio runtime.
    pub(super) fn start(
        config: &AuditPostgres,
        replica: &str,
        health: Arc<Health>,
        outstanding: Arc<std::sync::atomic::AtomicUsize>,
    ) -> std::io::Result<Self> {
        let options: PgConnectOptions = config.url.expose().parse().map_err(|_| {
            std::io::Error::other("audit.postgres.url is not a valid PostgreSQL URL")
        })?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            std::io::Error::other("the PostgreSQL audit sink needs a tokio runtime")
        })?;
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(5))
            .connect_lazy_with(options);
        let insert = format!(
            "INSERT INTO {} (replica, seq, record) SELECT $1, * FROM UNNEST($2::bigint[], $3::text[]) ON CONFLICT DO NOTHING",
            config.table
        );
        let (queue, mut batches) = mpsc::channel::<Vec<(u64, String)>>(1024);
        let replica = replica.to_owned();
        let settled = Arc::clone(&outstanding);
        let settled = move |records: usize| {
            settled.fetch_sub(records, std::sync::atomic::Ordering::AcqRel);
        };
        runtime.spawn(async move {
            let mut pending: VecDeque<(u64, String)> = VecDeque::new();
            let mut backoff = Duration::from_millis(100);
            loop {
                if pending.is_empty() {
                    match batches.recv().await {
                        Some(batch) => pending.extend(batch),
                        None => return,
                    }
                }
                while let Ok(batch) = batches.try_recv() {
                    pending.extend(batch);
                }
                if pending.len() > BACKLOG {
                    let dropped = pending.len() - BACKLOG;
                    pending.drain(..dropped);
                    settled(dropped);
                    metrics::counter!("portcullis_audit_postgres_dropped_total")
                        .increment(dropped as u64);
                }
                let take = pending.len().min(1000);
                let (seqs, records): (Vec<i64>, Vec<String>) = pending
                    .iter()
                    .take(take)
                    .map(|(seq, line)| (i64::try_from(*seq).unwrap_or(i64::MAX), line.clone()))
                    .unzip();
                let result = sqlx::query(&insert)
                    .bind(&replica)
                    .bind(&seqs)
                    .bind(&records)
                    .execute(&pool)
                    .await;
                match result {
                    Ok(done) => {
                        if done.rows_affected() < take as u64 {
                            // The same replica name and sequence numbers again (a replica
                            // restarted with an empty audit directory): the table keeps the
                            // first ones.
                            let conflicts = take as u64 - done.rows_affected();
                            tracing::error!(conflicts, replica = %replica, "audit records already in the table for this replica and sequence numbers; give each replica its own name and keep its audit directory");
                            metrics::counter!("portcullis_audit_postgres_conflicts_total").increment(conflicts);
                        }
                        pending.drain(..take);
                        settled(take);
                        if health.failing.load(std::sync::atomic::Ordering::Acquire) {
                            tracing::warn!("the audit table can be written again");
                        }
                        health.set(None);
                        backoff = Duration::from_millis(100);
                    }
                    Err(error) => {
                        let kind = match &error {
                            sqlx::Error::Database(db) => db.code().map_or_else(|| "database error".to_owned(), |c| format!("database error {c}")),
                            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) => "unreachable".to_owned(),
                            _ => "error".to_owned(),
                        };
                        tracing::error!(error = %kind, pending = pending.len(), "cannot insert into the audit table");
                        metrics::counter!("portcullis_audit_failures_total").increment(1);
                        health.set(Some(format!("cannot insert into the audit table: {kind}")));
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(10));
                    }
                }
            }
        });
        Ok(Self { queue, outstanding })
    }

    /// Hands a written batch to the inserting task; never waits (a database that is down
    /// must not stall the file or the requests): past its queue the batch is dropped from
    /// the table's copy and counted, the file has it.
    pub(super) fn send(&self, lines: Vec<(u64, String)>) {
        let count = lines.len();
        if self.queue.try_send(lines).is_err() {
            self.outstanding
                .fetch_sub(count, std::sync::atomic::Ordering::AcqRel);
            metrics::counter!("portcullis_audit_postgres_dropped_total").increment(count as u64);
        }
    }
}

/// Verifies every replica's chain in `table`: `Ok` with (replica, records) per chain, or
/// the first broken record.
pub async fn verify(
    url: &str,
    table: &str,
    key: Option<&str>,
) -> Result<Vec<(String, u64)>, VerifyError> {
    let options: PgConnectOptions = url.parse().map_err(|_| VerifyError::BadUrl)?;
    let table_ok = table.split('.').count() <= 2
        && table
            .split('.')
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
    if !table_ok {
        return Err(VerifyError::BadTable(table.to_owned()));
    }
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .map_err(|e| VerifyError::Connect(crate::redact_secrets(&e.to_string())))?;
    let rows: Vec<(String, i64, String)> = sqlx::query_as(&format!(
        "SELECT replica, seq, record FROM {table} ORDER BY replica, seq"
    ))
    .fetch_all(&pool)
    .await
    .map_err(|e| VerifyError::Read {
        table: table.to_owned(),
        cause: crate::redact_secrets(&e.to_string()),
    })?;
    let mut chains: Vec<(String, u64)> = Vec::new();
    let mut verifier: Option<Verifier> = None;
    for (replica, seq, record) in rows {
        if chains.last().is_none_or(|(r, _)| *r != replica) {
            chains.push((replica.clone(), 0));
            verifier = Some(Verifier::new(Hasher::new(key), false));
        }
        let verifier = verifier.as_mut().expect("set above");
        verifier
            .next(&record)
            .map_err(|broken| VerifyError::Broken {
                replica: replica.clone(),
                seq,
                broken,
            })?;
        if let Some(last) = chains.last_mut() {
            last.1 += 1;
        }
    }
    Ok(chains)
}

/// Why a PostgreSQL audit table could not be verified, or where its chain breaks.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The URL does not parse.
    #[error("not a valid PostgreSQL URL")]
    BadUrl,
    /// The table name is not `name` or `schema.name`.
    #[error("`{0}` is not a table name")]
    BadTable(String),
    /// The database refused or did not answer (secrets scrubbed).
    #[error("cannot connect: {0}")]
    Connect(String),
    /// The table could not be read (secrets scrubbed).
    #[error("cannot read {table}: {cause}")]
    Read {
        /// The table.
        table: String,
        /// The database's reason.
        cause: String,
    },
    /// A record does not fit its replica's chain.
    #[error("replica `{replica}`, row seq {seq}: {broken}")]
    Broken {
        /// The replica whose chain breaks.
        replica: String,
        /// The row's `seq`.
        seq: i64,
        /// Why.
        broken: ChainError,
    },
}

impl VerifyError {
    /// Whether the chain itself is broken (as opposed to the table being unreadable).
    pub fn is_broken(&self) -> bool {
        matches!(self, Self::Broken { .. })
    }
}
