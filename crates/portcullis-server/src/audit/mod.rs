//! The audit log: one record per request that reaches a pack or is refused on the way
//! (authentication, scopes, rate limits, validation), chained by hashes (`chain.rs`) in an
//! append-only JSONL file, rotated by size, optionally copied to PostgreSQL (`postgres.rs`).
//!
//! Records are handed to one writer thread over a bounded channel (callers wait when it is
//! full; nothing is dropped while the file can be written). The writer batches what is
//! queued, appends it with one write, fsyncs by policy, then rewrites the head file in place (the
//! last record written, sealed) so records cut off the end are noticed. When a write fails
//! the batch is cut back off the file, the chain stays where it was, the log reports itself
//! unhealthy (`/readyz`, a metric) and, by `fail_closed`, tools that change data (or every
//! request) are refused until a write succeeds again.

pub mod chain;
mod postgres;
mod writer;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use portcullis_config::{AuditSection, FailClosed, FsyncPolicy};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

pub use postgres::{VerifyError, verify as verify_postgres};
pub use writer::head_path;

/// The files of the log at `path`, oldest first: its rotations (`NAME.1`, `NAME.2`, …) and
/// the current file — the chain `audit verify` checks.
pub fn chain_files(path: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<std::path::PathBuf> =
        writer::rotated(path).into_iter().map(|(_, p)| p).collect();
    files.push(path.to_owned());
    files
}

/// What one record says. Built by the guard (and the HTTP layer for refusals before it).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Event {
    pub(crate) request_id: Option<String>,
    pub(crate) trace_id: Option<String>,
    pub(crate) principal: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) issuer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) client_id: Option<String>,
    pub(crate) client: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) client_ip: Option<String>,
    pub(crate) method: String,
    pub(crate) item: String,
    pub(crate) arg_keys: Vec<String>,
    pub(crate) args_fp: String,
    /// Tools that change data only: the arguments, secret parameters redacted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) arguments: Option<serde_json::Value>,
    pub(crate) decision: &'static str,
    pub(crate) outcome: &'static str,
    pub(crate) duration_ms: f64,
}

impl Event {
    /// A record of the server's own step, made for no request (a withheld item, an
    /// approval's request or decision): `who` took it, `details` say what it was.
    pub(crate) fn by_server(
        who: &str,
        method: String,
        item: &str,
        decision: &'static str,
        outcome: &'static str,
        details: serde_json::Value,
    ) -> Self {
        Self {
            request_id: None,
            trace_id: None,
            principal: who.to_owned(),
            issuer: None,
            client_id: None,
            client: None,
            client_ip: None,
            method,
            item: item.to_owned(),
            arg_keys: Vec::new(),
            args_fp: String::new(),
            arguments: Some(details),
            decision,
            outcome,
            duration_ms: 0.0,
        }
    }

    /// A copy for the console's tail: a call's arguments left out (not even copied), an
    /// approval record's few fields kept.
    fn for_tail(&self) -> Self {
        Self {
            request_id: self.request_id.clone(),
            trace_id: self.trace_id.clone(),
            principal: self.principal.clone(),
            issuer: self.issuer.clone(),
            client_id: self.client_id.clone(),
            client: self.client.clone(),
            client_ip: self.client_ip.clone(),
            method: self.method.clone(),
            item: self.item.clone(),
            arg_keys: self.arg_keys.clone(),
            args_fp: self.args_fp.clone(),
            arguments: if self.method.starts_with("approval/") {
                self.arguments.clone()
            } else {
                None
            },
            decision: self.decision,
            outcome: self.outcome,
            duration_ms: self.duration_ms,
        }
    }
}

/// The whole record as written: the event between its place in the chain.
#[derive(Serialize)]
struct Record<'a> {
    seq: u64,
    time: String,
    replica: &'a str,
    #[serde(flatten)]
    event: &'a Event,
    prev: &'a str,
}

struct Job {
    event: Event,
    /// Told once the record is on disk (by the fsync policy), or that it could not be.
    written: Option<oneshot::Sender<bool>>,
}

/// Health of the log, shared by the writer and whoever asks.
#[derive(Default)]
struct Health {
    failing: AtomicBool,
    reason: std::sync::Mutex<Option<String>>,
}

impl Health {
    fn set(&self, failure: Option<String>) {
        self.failing.store(failure.is_some(), Ordering::Release);
        *self
            .reason
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = failure;
    }
}

/// The audit log of this process.
pub struct AuditLog {
    queue: mpsc::Sender<Job>,
    /// The file's health: what `fail_closed` acts on.
    health: Arc<Health>,
    /// The PostgreSQL copy's health: reported, never a reason to refuse (the file has
    /// every record).
    table: Option<Arc<Health>>,
    fail_closed: FailClosed,
    /// Records of tools that change data wait until they are on disk.
    durable_writes: bool,
    /// Records handed to the log and not yet where they go (the file, and the table when
    /// there is one): what [`AuditLog::settle`] waits for at shutdown.
    outstanding: Arc<std::sync::atomic::AtomicUsize>,
    /// The last [`RECENT`] records handed to the log (without their arguments), for the
    /// console's audit tail.
    recent: std::sync::Mutex<std::collections::VecDeque<(std::time::SystemTime, Event)>>,
    /// Whether anyone reads `recent` (the console): otherwise no record is kept there.
    keeps_recent: AtomicBool,
}

/// Records the console's audit tail keeps in memory.
pub const RECENT: usize = 1000;

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog").finish_non_exhaustive()
    }
}

/// Records queued at most; past it, callers wait for the writer.
const QUEUE: usize = 16 * 1024;

impl AuditLog {
    /// Opens (or continues) the log of `section`, with relative paths against `base_dir`.
    /// Needs a tokio runtime for the PostgreSQL sink.
    pub fn open(section: &AuditSection, base_dir: &std::path::Path) -> std::io::Result<Self> {
        let path = base_dir.join(&section.path);
        let hasher = chain::Hasher::new(
            section
                .hmac_key
                .as_ref()
                .map(portcullis_config::Secret::expose),
        );
        let replica = section.replica.clone().unwrap_or_else(crate::host_name);
        let health = Arc::new(Health::default());
        let table = section
            .postgres
            .as_ref()
            .map(|_| Arc::new(Health::default()));
        let outstanding = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let sink = match (&section.postgres, &table) {
            (Some(pg), Some(table)) => Some(postgres::Sink::start(
                pg,
                &replica,
                Arc::clone(table),
                Arc::clone(&outstanding),
            )?),
            _ => None,
        };
        let (queue, jobs) = mpsc::channel(QUEUE);
        let settings = writer::Settings {
            path,
            hasher,
            replica,
            rotate_bytes: section.rotate_bytes,
            fsync: section.fsync,
            fsync_interval: Duration::from_millis(section.fsync_interval_ms),
        };
        writer::start(
            settings,
            jobs,
            Arc::clone(&health),
            sink,
            Arc::clone(&outstanding),
        )?;
        Ok(Self {
            queue,
            health,
            table,
            fail_closed: section.fail_closed,
            durable_writes: section.fsync == FsyncPolicy::Always,
            outstanding,
            recent: std::sync::Mutex::new(std::collections::VecDeque::new()),
            keeps_recent: AtomicBool::new(false),
        })
    }

    /// Waits, at most `limit`, until every record handed to the log is in the file and, with
    /// `[audit.postgres]`, in the table (a graceful shutdown calls it once no request is
    /// left); says what did not make it.
    pub async fn settle(&self, limit: Duration) {
        use std::sync::atomic::Ordering;
        let deadline = tokio::time::Instant::now() + limit;
        while self.outstanding.load(Ordering::Acquire) > 0 {
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(
                    records = self.outstanding.load(Ordering::Acquire),
                    "audit records not yet written everywhere at shutdown (the file has every record that reached it)"
                );
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Appends `event`. For a tool that changes data with `fsync = "always"`, waits until
    /// it is on disk.
    pub(crate) async fn record(&self, event: Event, changes_data: bool) {
        self.remember(&event);
        let (written, done) = if changes_data && self.durable_writes {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        self.outstanding
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        if self.queue.send(Job { event, written }).await.is_err() {
            self.outstanding
                .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
            self.health.set(Some("the audit writer stopped".to_owned()));
            return;
        }
        if let Some(done) = done {
            let _ = done.await;
        }
    }

    /// Records that a pack withholds `item` (an upstream item whose definition changed since
    /// it was pinned, or a new one not pinned yet): the server's own decision, made for no
    /// request, so its principal is `portcullis`.
    pub(crate) async fn withheld(&self, item: &portcullis_core::Withheld) {
        let mut event = Event::by_server(
            "portcullis",
            format!("{}/withhold", item.kind.replace(' ', "_")),
            &item.name,
            "withheld",
            "withheld",
            serde_json::json!({ "reason": item.reason }),
        );
        event.client = Some(item.source.clone());
        self.record(event, false).await;
    }

    /// Appends the intent record of a call that changes data and waits until it is
    /// written (on disk with `fsync = "always"`); `false` when it could not be.
    pub(crate) async fn record_intent(&self, event: Event) -> bool {
        self.remember(&event);
        let (tx, rx) = oneshot::channel();
        self.outstanding
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        if self
            .queue
            .send(Job {
                event,
                written: Some(tx),
            })
            .await
            .is_err()
        {
            self.outstanding
                .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
            return false;
        }
        rx.await.unwrap_or(false)
    }

    /// Keeps the last [`RECENT`] records in memory from now on, for [`AuditLog::recent`]
    /// (the console's audit tail); off otherwise, so a record costs no copy.
    pub fn keep_recent(&self) {
        self.keeps_recent.store(true, Ordering::Release);
    }

    fn remember(&self, event: &Event) {
        if !self.keeps_recent.load(Ordering::Acquire) {
            return;
        }
        let mut recent = self
            .recent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if recent.len() >= RECENT {
            recent.pop_front();
        }
        // Without a call's arguments (up to 64 values of 4 KiB at every depth): the tail
        // shows who did what and how it ended, and stays a few MB at most.
        recent.push_back((std::time::SystemTime::now(), event.for_tail()));
    }

    /// The most recent records (newest first, at most `limit`, of the last [`RECENT`])
    /// whose principal, item and decision contain the filters given, as JSON.
    pub fn recent(
        &self,
        principal: Option<&str>,
        item: Option<&str>,
        decision: Option<&str>,
        limit: usize,
    ) -> Vec<serde_json::Value> {
        let recent = self
            .recent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let matches = |filter: Option<&str>, value: &str| {
            filter.is_none_or(|f| f.is_empty() || value.contains(f))
        };
        recent
            .iter()
            .rev()
            .filter(|(_, e)| {
                matches(principal, &e.principal)
                    && matches(item, &e.item)
                    && matches(decision, e.decision)
            })
            .take(limit)
            .map(|(time, event)| {
                let mut value = serde_json::to_value(event).unwrap_or_default();
                if let Some(object) = value.as_object_mut() {
                    object.insert(
                        "time".to_owned(),
                        serde_json::Value::String(
                            humantime::format_rfc3339_millis(*time).to_string(),
                        ),
                    );
                }
                value
            })
            .collect()
    }

    /// Why the log (the file, or its PostgreSQL copy) cannot be written now, if it cannot
    /// (`/readyz`).
    pub fn failure(&self) -> Option<String> {
        let reasons: Vec<String> = std::iter::once(&self.health)
            .chain(self.table.iter())
            .filter(|h| h.failing.load(Ordering::Acquire))
            .filter_map(|h| {
                h.reason
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .clone()
            })
            .collect();
        (!reasons.is_empty()).then(|| reasons.join("; "))
    }

    /// Whether a request must be refused because the log cannot be written.
    pub(crate) fn refuses(&self, changes_data: bool) -> bool {
        self.health.failing.load(Ordering::Acquire)
            && match self.fail_closed {
                FailClosed::All => true,
                FailClosed::Writes => changes_data,
                FailClosed::None => false,
            }
    }
}

/// Serializes `record` without its closing brace, ready for [`chain::Hasher::seal`].
fn open_body(seq: u64, replica: &str, event: &Event, prev: &str) -> String {
    let record = Record {
        seq,
        time: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
        replica,
        event,
        prev,
    };
    let mut text = serde_json::to_string(&record).unwrap_or_else(|_| "{}".to_owned());
    text.pop();
    text
}

/// Longest string value an audit record keeps of an argument.
const MAX_VALUE_CHARS: usize = 4096;

/// `arguments` for the audit log: properties the schema marks `writeOnly` (parameters
/// declared `secret`) replaced by `"<redacted>"`, strings longer than 4096 characters cut
/// (with their length), and the client's keys, at every depth, cut and counted like those
/// of a log line (at most 64 per object, each at most 128 bytes, then `"…(+N more)": null`).
pub(crate) fn redacted(
    schema: &serde_json::Map<String, serde_json::Value>,
    arguments: &rmcp::model::JsonObject,
) -> serde_json::Value {
    let properties = schema
        .get("properties")
        .and_then(serde_json::Value::as_object);
    let secret = |key: &str| {
        properties
            .and_then(|p| p.get(key))
            .and_then(|p| p.get("writeOnly"))
            .and_then(serde_json::Value::as_bool)
            == Some(true)
    };
    serde_json::Value::Object(bounded_object(arguments, |key, value| {
        if secret(key) {
            serde_json::Value::String("<redacted>".to_owned())
        } else {
            cut(value)
        }
    }))
}

/// `object` with its first 64 keys cut, their values mapped by `value`, and the count of
/// the rest.
fn bounded_object(
    object: &serde_json::Map<String, serde_json::Value>,
    value: impl Fn(&str, &serde_json::Value) -> serde_json::Value,
) -> serde_json::Map<String, serde_json::Value> {
    use crate::request::client_text;
    let mut kept: serde_json::Map<String, serde_json::Value> = object
        .iter()
        .take(client_text::MAX_KEYS)
        .map(|(key, v)| (client_text::cut(key).into_owned(), value(key, v)))
        .collect();
    if let Some(more) = client_text::more(object.len()) {
        kept.insert(more, serde_json::Value::Null);
    }
    kept
}

fn cut(value: &serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::String(text) if text.chars().count() > MAX_VALUE_CHARS => {
            let kept: String = text.chars().take(MAX_VALUE_CHARS).collect();
            serde_json::Value::String(format!("{kept}… ({} bytes in all)", text.len()))
        }
        serde_json::Value::Array(items) => items.iter().map(cut).collect(),
        serde_json::Value::Object(map) => {
            serde_json::Value::Object(bounded_object(map, |_, v| cut(v)))
        }
        other => other.clone(),
    }
}
