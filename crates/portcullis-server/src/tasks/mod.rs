//! Tasks (SEP-2663, `io.modelcontextprotocol/tasks`): a tool call whose state and result
//! outlive the request that started it.
//!
//! A call becomes a task in the guard pipeline itself: the request passes every step
//! (scopes, limits, validation, the call slot, approval, the audit intent) as any call does,
//! and is answered with the task only when the tool starts (or when a tool that
//! [starts its task itself](crate::Tool::starts_task_itself) says so); whatever ends it
//! before that (a refusal, an invalid argument, an approval asked for) is the answer to the
//! request. From then on the call runs on, under its task's token instead of the request's,
//! with its timeout, its slot and its audit record; its answer, after the same error policy,
//! is the task's result.
//!
//! A task is its principal's: another principal's `tasks/get`, `tasks/update` or
//! `tasks/cancel` is answered "no such task", exactly as an unknown id. A principal keeps at
//! most `tasks.max_per_principal` tasks (running or finished, until they expire after
//! `tasks.ttl_secs`). Records live in the process, or with `[cluster]` in Redis (one JSON
//! value per task with the TTL, a sorted set per principal for the cap, checked and added in
//! one script), so any replica answers `tasks/get`, and a finished task survives the restart
//! of the replica that ran it. A replica running a task renews a liveness key every
//! [`BEAT`]; a task found working without one (its replica died) is ended `failed` with a
//! message saying so, never left working. `tasks/cancel` marks the record cancelled and
//! cancels the call's token: at once on the replica running it, within a beat on another
//! (each beat reads the record); the pack stops its work on that token (the command's
//! process group, the SQL statement, the HTTP request).

mod store;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rmcp::ErrorData;
use rmcp::model::{
    CallToolResponse, CreateTaskResult, DetailedTask, GetTaskResult, InputRequests, InputResponses,
    JsonObject, Task, TaskPayload, TaskStatus,
};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

pub(crate) use store::Store;

/// How often a replica running a task renews its liveness and reads the record (a cancel
/// from another replica takes effect within one beat).
pub(crate) const BEAT: Duration = Duration::from_secs(2);
/// A working task whose liveness is older than this lost its replica.
const LIVENESS: Duration = Duration::from_secs(10);
/// Most task records one process keeps without `[cluster]`, whatever the principals.
const MAX_LOCAL: usize = 10_000;

/// One task as stored. What a client sees of it is [`Record::detailed`]; the arguments and
/// the tool's own `requestState` (to run the next round after `tasks/update`) are never
/// shown.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Record {
    pub(crate) id: String,
    pub(crate) owner: String,
    pub(crate) tool: String,
    pub(crate) status: TaskStatus,
    pub(crate) message: Option<String>,
    pub(crate) created_at: String,
    pub(crate) updated_at: String,
    /// Unix milliseconds when the record expires, and how long it lives (its `ttlMs`).
    pub(crate) expires_ms: u64,
    #[serde(default)]
    pub(crate) ttl_ms: u64,
    /// The replica running it.
    pub(crate) replica: String,
    pub(crate) result: Option<JsonObject>,
    pub(crate) error: Option<JsonObject>,
    pub(crate) input_requests: Option<InputRequests>,
    /// Answers given so far to `input_requests`.
    #[serde(default)]
    pub(crate) answers: InputResponses,
    pub(crate) arguments: JsonObject,
    pub(crate) request_state: Option<String>,
    /// Ended `failed` by another replica that found no liveness: the running replica, if
    /// it was only cut off from the store, still stores its outcome over it.
    #[serde(default)]
    pub(crate) lost: bool,
}

impl Record {
    fn task(&self, settings: &Settings) -> Task {
        let mut task = Task::new(
            self.id.clone(),
            self.status,
            self.created_at.clone(),
            self.updated_at.clone(),
        )
        .with_ttl_ms(self.ttl_ms)
        .with_poll_interval_ms(settings.poll_interval_ms);
        if let Some(message) = &self.message {
            task = task.with_status_message(message.clone());
        }
        task
    }

    fn detailed(&self, settings: &Settings) -> DetailedTask {
        let payload = match self.status {
            TaskStatus::InputRequired => TaskPayload::InputRequired {
                input_requests: self
                    .input_requests
                    .clone()
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|(key, _)| !self.answers.contains_key(key))
                    .collect(),
            },
            TaskStatus::Completed => TaskPayload::Completed {
                result: self.result.clone().unwrap_or_default(),
            },
            TaskStatus::Failed => TaskPayload::Failed {
                error: self.error.clone().unwrap_or_default(),
            },
            TaskStatus::Cancelled => TaskPayload::Cancelled,
            _ => TaskPayload::Working,
        };
        DetailedTask::new(self.task(settings), payload)
    }

    fn touch(&mut self) {
        self.updated_at = now_rfc3339();
    }

    pub(crate) fn fail(&mut self, code: i32, message: impl Into<String>) {
        self.status = TaskStatus::Failed;
        self.error = Some(task_error(code, message));
        self.result = None;
        self.input_requests = None;
        self.touch();
    }
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

pub(crate) fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// `[tasks]` as the server uses it.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) enabled: bool,
    pub(crate) ttl: Duration,
    pub(crate) poll_interval_ms: u64,
    pub(crate) max_per_principal: usize,
    pub(crate) max_result_bytes: usize,
}

impl Settings {
    fn ttl_ms(&self) -> u64 {
        u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX)
    }
}

impl From<&portcullis_config::TasksSection> for Settings {
    fn from(section: &portcullis_config::TasksSection) -> Self {
        Self {
            enabled: section.enabled,
            ttl: Duration::from_secs(section.ttl_secs),
            poll_interval_ms: section.poll_interval_ms,
            max_per_principal: section.max_per_principal,
            max_result_bytes: section.max_result_bytes,
        }
    }
}

/// Every task of this process, and the store every replica shares.
pub struct Tasks {
    /// `[tasks]` in force: a reload replaces them, the records and running calls stay.
    settings: std::sync::RwLock<Settings>,
    store: std::sync::OnceLock<Store>,
    /// Tokens of the calls this process runs, by task id.
    running: Mutex<HashMap<String, CancellationToken>>,
}

impl std::fmt::Debug for Tasks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tasks")
            .field("settings", &self.settings())
            .finish_non_exhaustive()
    }
}

use crate::error::{no_task, task_error};

impl Tasks {
    pub(crate) fn new(settings: Settings) -> Arc<Self> {
        Arc::new(Self {
            settings: std::sync::RwLock::new(settings),
            store: std::sync::OnceLock::new(),
            running: Mutex::default(),
        })
    }

    /// Keeps task records in Redis, shared by every replica (set once, before serving).
    pub(crate) fn share(&self, cluster: &Arc<crate::cluster::Cluster>) {
        let _ = self.store.set(Store::redis(Arc::clone(cluster)));
    }

    fn store(&self) -> &Store {
        self.store.get_or_init(|| Store::local(MAX_LOCAL))
    }

    pub(crate) fn enabled(&self) -> bool {
        self.settings().enabled
    }

    fn settings(&self) -> Settings {
        self.settings
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The same tasks under the settings of a reloaded config (`new`'s): records and
    /// running calls are kept, new tasks follow the new settings.
    pub(crate) fn reconfigured(self: &Arc<Self>, new: &Self) -> Arc<Self> {
        *self
            .settings
            .write()
            .unwrap_or_else(PoisonError::into_inner) = new.settings();
        Arc::clone(self)
    }

    /// Reserves a task for `owner` calling `tool` (working, not yet shown to anyone):
    /// refused when the principal has `max_per_principal` already.
    pub(crate) async fn reserve(
        &self,
        owner: &str,
        tool: &str,
        arguments: &JsonObject,
        replica: &str,
    ) -> Result<Record, ErrorData> {
        let settings = self.settings();
        let now = now_rfc3339();
        let record = Record {
            id: uuid::Uuid::new_v4().to_string(),
            owner: owner.to_owned(),
            tool: tool.to_owned(),
            status: TaskStatus::Working,
            message: None,
            created_at: now.clone(),
            updated_at: now,
            expires_ms: unix_ms().saturating_add(settings.ttl_ms()),
            ttl_ms: settings.ttl_ms(),
            replica: replica.to_owned(),
            result: None,
            error: None,
            input_requests: None,
            answers: InputResponses::new(),
            arguments: arguments.clone(),
            request_state: None,
            lost: false,
        };
        match self
            .store()
            .create(&record, settings.max_per_principal)
            .await
        {
            Ok(store::Created::Yes) => Ok(record),
            Ok(store::Created::PrincipalFull) => {
                metrics::counter!("portcullis_rate_limited_total", "limit" => "tasks").increment(1);
                Err(crate::error::over_cap(
                    "tasks kept for this principal",
                    "tasks.max_per_principal",
                    settings.max_per_principal,
                ))
            }
            Ok(store::Created::ProcessFull(cap)) => {
                metrics::counter!("portcullis_rate_limited_total", "limit" => "tasks").increment(1);
                Err(crate::error::over_cap(
                    "tasks kept by this server",
                    "its own bound without [cluster]",
                    cap,
                ))
            }
            Err(error) => Err(crate::error::tasks_unavailable(&error)),
        }
    }

    /// Forgets a reserved task whose call was answered in its request.
    pub(crate) async fn release(&self, record: &Record) {
        if let Err(error) = self.store().remove(record).await {
            tracing::warn!(%error, "a reserved task could not be removed; it expires with its TTL");
        }
    }

    /// What the client is answered when its call became `record`'s task.
    pub(crate) fn created(&self, record: &Record) -> CallToolResponse {
        metrics::counter!("portcullis_tasks_total", "event" => "created").increment(1);
        CallToolResponse::Task(CreateTaskResult::new(record.task(&self.settings())))
    }

    /// Runs `call` (the rest of a call that became a task) to its end and stores its
    /// answer: renewing the task's liveness meanwhile, stopping it when the task is
    /// cancelled (here or on another replica) or expires.
    pub(crate) fn follow<F>(
        self: &Arc<Self>,
        id: String,
        expires_ms: u64,
        cancel: CancellationToken,
        call: F,
    ) where
        F: Future<Output = Result<CallToolResponse, ErrorData>> + Send + 'static,
    {
        self.running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id.clone(), cancel.clone());
        let tasks = Arc::clone(self);
        tokio::spawn(async move {
            let mut call = std::pin::pin!(call);
            let mut beat = tokio::time::interval(BEAT);
            // Stopped when its record expires (a resumed round too): never work whose outcome
            // nobody could see.
            let left = Duration::from_millis(expires_ms.saturating_sub(unix_ms()));
            let expiry = tokio::time::sleep(left);
            let mut expiry = std::pin::pin!(expiry);
            let answer = loop {
                tokio::select! {
                    answer = &mut call => break answer,
                    _ = beat.tick() => {
                        if tasks.store().beat(&id).await == Some(TaskStatus::Cancelled) {
                            cancel.cancel();
                        }
                    }
                    () = &mut expiry, if !cancel.is_cancelled() => cancel.cancel(),
                }
            };
            // Stored before it stops counting as running: never seen working and not running.
            tasks.finish(&id, expires_ms, answer).await;
            tasks
                .running
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&id);
        });
    }

    /// Stores a call's answer as its task's outcome (unless the task ended meanwhile:
    /// cancelled, or failed for its replica). While the store cannot be reached the outcome
    /// is kept and stored again every [`BEAT`], with the task's liveness, until the record
    /// expires: work that ran is never reported lost because Redis was away for a while.
    async fn finish(&self, id: &str, expires_ms: u64, answer: Result<CallToolResponse, ErrorData>) {
        loop {
            match self.store_outcome(id, &answer).await {
                Ok(()) => return,
                Err(error) if unix_ms() < expires_ms => {
                    tracing::warn!(task = id, %error, "a task's outcome could not be stored yet; trying again");
                    tokio::time::sleep(BEAT).await;
                    let _ = self.store().beat(id).await;
                }
                Err(error) => {
                    tracing::error!(task = id, %error, "a task's outcome could not be stored before the task expired");
                    return;
                }
            }
        }
    }

    async fn store_outcome(
        &self,
        id: &str,
        answer: &Result<CallToolResponse, ErrorData>,
    ) -> Result<(), store::Unavailable> {
        let max = self.settings().max_result_bytes;
        let updated = self
            .store()
            .update(id, |record| {
                if record.status.is_terminal() && !record.lost {
                    return false;
                }
                record.lost = false;
                record.error = None;
                record.touch();
                match answer {
                    Ok(CallToolResponse::Complete(result)) => {
                        let bytes = serde_json::to_vec(result).map_or(usize::MAX, |b| b.len());
                        match serde_json::to_value(result) {
                            Ok(serde_json::Value::Object(result)) if bytes <= max => {
                                record.status = TaskStatus::Completed;
                                record.result = Some(result);
                            }
                            _ => record.fail(
                                crate::error::INTERNAL_ERROR_CODE,
                                format!(
                                    "the result was larger than the {max} bytes a task keeps (tasks.max_result_bytes); ask for less"
                                ),
                            ),
                        }
                    }
                    Ok(CallToolResponse::InputRequired(asked)) => {
                        record.status = TaskStatus::InputRequired;
                        record.input_requests = asked.input_requests.clone();
                        record.request_state.clone_from(&asked.request_state);
                        record.answers = InputResponses::new();
                    }
                    Ok(_) => record.fail(
                        crate::error::INTERNAL_ERROR_CODE,
                        "the tool answered with a task of its own",
                    ),
                    Err(error) => {
                        let mut object = task_error(error.code.0, error.message.to_string());
                        if let Some(data) = &error.data {
                            object.insert("data".to_owned(), data.clone());
                        }
                        record.status = TaskStatus::Failed;
                        record.error = Some(object);
                    }
                }
                true
            })
            .await;
        match updated {
            Ok(Some(record)) => {
                let event = match record.status {
                    TaskStatus::Completed => "completed",
                    TaskStatus::InputRequired => "input_required",
                    _ => "failed",
                };
                metrics::counter!("portcullis_tasks_total", "event" => event).increment(1);
            }
            Ok(None) => {}
            Err(error) => return Err(error),
        }
        Ok(())
    }

    /// `principal`'s task `id`; a working task whose replica died is ended failed here.
    async fn owned(&self, id: &str, principal: &str) -> Result<Record, ErrorData> {
        let record = self
            .store()
            .get(id)
            .await
            .map_err(|e| crate::error::tasks_unavailable(&e))?
            .filter(|r| r.owner == principal && r.expires_ms > unix_ms())
            .ok_or_else(|| no_task(id))?;
        if record.status == TaskStatus::Working && !self.alive(&record).await {
            let ended = self
                .store()
                .update(id, |record| {
                    if record.status != TaskStatus::Working {
                        return false;
                    }
                    record.lost = true;
                    record.fail(
                        crate::error::INTERNAL_ERROR_CODE,
                        format!(
                            "the server replica running this task (`{}`) stopped before it finished; what it had started may have gone on there, so check before calling the tool again",
                            record.replica
                        ),
                    );
                    true
                })
                .await
                .map_err(|e| crate::error::tasks_unavailable(&e))?;
            if ended.is_some() {
                metrics::counter!("portcullis_tasks_total", "event" => "lost").increment(1);
            }
            return self
                .store()
                .get(id)
                .await
                .map_err(|e| crate::error::tasks_unavailable(&e))?
                .ok_or_else(|| no_task(id));
        }
        Ok(record)
    }

    /// Whether the replica running a working task is still there.
    async fn alive(&self, record: &Record) -> bool {
        if self
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(&record.id)
        {
            return true;
        }
        self.store().alive(&record.id, LIVENESS).await
    }

    /// `tasks/get`.
    pub(crate) async fn get(&self, id: &str, principal: &str) -> Result<GetTaskResult, ErrorData> {
        let record = self.owned(id, principal).await?;
        Ok(GetTaskResult::new(record.detailed(&self.settings())))
    }

    /// `tasks/cancel`: a finished task stays as it is; otherwise it is marked cancelled and
    /// its call stopped.
    pub(crate) async fn cancel(&self, id: &str, principal: &str) -> Result<(), ErrorData> {
        self.owned(id, principal).await?;
        let cancelled = self
            .store()
            .update(id, |record| {
                if record.status.is_terminal() {
                    return false;
                }
                record.status = TaskStatus::Cancelled;
                record.message = Some("cancelled by its client".to_owned());
                record.input_requests = None;
                record.touch();
                true
            })
            .await
            .map_err(|e| crate::error::tasks_unavailable(&e))?;
        if cancelled.is_some() {
            metrics::counter!("portcullis_tasks_total", "event" => "cancelled").increment(1);
            if let Some(token) = self
                .running
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(id)
            {
                token.cancel();
            }
        }
        Ok(())
    }

    /// `tasks/update`: records the answers to the task's pending input requests (unknown
    /// keys are ignored). When every request is answered, returns the record to run the
    /// next round with (its answers and the tool's state), now working again.
    pub(crate) async fn answer(
        &self,
        id: &str,
        principal: &str,
        answers: InputResponses,
        replica: &str,
    ) -> Result<Option<Record>, ErrorData> {
        let record = self.owned(id, principal).await?;
        if record.status != TaskStatus::InputRequired {
            // Nothing waits for answers (working, or finished): nothing to do.
            return Ok(None);
        }
        // Alive before it is working again: no replica may take it for lost in between.
        let _ = self.store().beat(id).await;
        let updated = self
            .store()
            .update(id, |record| {
                if record.status != TaskStatus::InputRequired {
                    return false;
                }
                let asked = record.input_requests.clone().unwrap_or_default();
                for (key, value) in &answers {
                    if asked.contains_key(key) {
                        record.answers.insert(key.clone(), value.clone());
                    }
                }
                if asked.keys().all(|key| record.answers.contains_key(key)) {
                    record.status = TaskStatus::Working;
                    record.replica = replica.to_owned();
                    record.input_requests = None;
                }
                record.touch();
                true
            })
            .await
            .map_err(|e| crate::error::tasks_unavailable(&e))?;
        Ok(updated.filter(|r| r.status == TaskStatus::Working))
    }

    /// Marks a task this process runs again (after `tasks/update`) as alive.
    pub(crate) async fn resumed(&self, id: &str) {
        let _ = self.store().beat(id).await;
    }
}
