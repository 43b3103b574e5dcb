//! Where task records live: this process's memory, or Redis shared by every replica.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rmcp::model::TaskStatus;

use super::{Record, unix_ms};

pub(crate) type Unavailable = crate::cluster::Unavailable;

/// A task store.
pub(crate) enum Store {
    /// This process only (no `[cluster]`): bounded by `max` records in all.
    Local {
        records: Mutex<Local>,
        max: usize,
        /// Bytes of records in all ([`LOCAL_BUDGET`]).
        budget: usize,
    },
    /// Redis, through the cluster's connection.
    Redis(Arc<crate::cluster::Cluster>),
}

/// Whether a task was added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Created {
    Yes,
    /// Its owner has as many as it may.
    PrincipalFull,
    /// The process keeps as many as it may (this many records).
    ProcessFull(usize),
}

/// The records of one process, each with its size as JSON, and their total.
#[derive(Default)]
pub(crate) struct Local {
    map: HashMap<String, (Record, usize)>,
    bytes: usize,
}

fn size(record: &Record) -> usize {
    serde_json::to_vec(record).map_or(0, |b| b.len())
}

impl Local {
    fn sweep(&mut self) {
        let now = unix_ms();
        let mut freed = 0;
        self.map.retain(|_, (r, bytes)| {
            let keep = r.expires_ms > now;
            if !keep {
                freed += *bytes;
            }
            keep
        });
        self.bytes = self.bytes.saturating_sub(freed);
    }
}

/// Most bytes of records (arguments, answers, results) one process keeps without
/// `[cluster]`, whatever the principals.
pub(crate) const LOCAL_BUDGET: usize = 256 * 1024 * 1024;

impl Store {
    pub(crate) fn local(max: usize) -> Self {
        Self::local_within(max, LOCAL_BUDGET)
    }

    fn local_within(max: usize, budget: usize) -> Self {
        Self::Local {
            records: Mutex::default(),
            max,
            budget,
        }
    }

    pub(crate) fn redis(cluster: Arc<crate::cluster::Cluster>) -> Self {
        Self::Redis(cluster)
    }

    /// Adds `record` unless its owner has `cap` unexpired tasks already (`Ok(false)`).
    pub(crate) async fn create(&self, record: &Record, cap: usize) -> Result<Created, Unavailable> {
        match self {
            Self::Local {
                records,
                max,
                budget,
            } => {
                let mut records = records.lock().unwrap_or_else(PoisonError::into_inner);
                records.sweep();
                let owned = records
                    .map
                    .values()
                    .filter(|(r, _)| r.owner == record.owner)
                    .count();
                if owned >= cap {
                    // Full: the owner's oldest finished task makes room, if there is one.
                    let oldest = records
                        .map
                        .values()
                        .filter(|(r, _)| r.owner == record.owner && r.status.is_terminal())
                        .min_by_key(|(r, _)| r.expires_ms)
                        .map(|(r, _)| r.id.clone());
                    let Some(oldest) = oldest else {
                        return Ok(Created::PrincipalFull);
                    };
                    if let Some((_, bytes)) = records.map.remove(&oldest) {
                        records.bytes = records.bytes.saturating_sub(bytes);
                    }
                }
                let bytes = size(record);
                if records.map.len() >= *max || records.bytes + bytes > *budget {
                    return Ok(Created::ProcessFull(*max));
                }
                records.bytes += bytes;
                records
                    .map
                    .insert(record.id.clone(), (record.clone(), bytes));
                Ok(Created::Yes)
            }
            Self::Redis(cluster) => {
                let task = crate::cluster::NewTask {
                    id: &record.id,
                    owner: &record.owner,
                    json: serde_json::to_string(record).unwrap_or_default(),
                    now_ms: unix_ms(),
                    expires_ms: record.expires_ms,
                };
                Ok(if cluster.task_create(task, cap, super::LIVENESS).await? {
                    Created::Yes
                } else {
                    Created::PrincipalFull
                })
            }
        }
    }

    pub(crate) async fn remove(&self, record: &Record) -> Result<(), Unavailable> {
        match self {
            Self::Local { records, .. } => {
                let mut records = records.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some((_, bytes)) = records.map.remove(&record.id) {
                    records.bytes = records.bytes.saturating_sub(bytes);
                }
                Ok(())
            }
            Self::Redis(cluster) => cluster.task_remove(&record.id, &record.owner).await,
        }
    }

    pub(crate) async fn get(&self, id: &str) -> Result<Option<Record>, Unavailable> {
        match self {
            Self::Local { records, .. } => Ok(records
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .map
                .get(id)
                .map(|(r, _)| r.clone())),
            Self::Redis(cluster) => Ok(cluster
                .task_get(id)
                .await?
                .and_then(|json| serde_json::from_str(&json).ok())),
        }
    }

    /// Changes the record `id` with `change` atomically (`change` returns whether it
    /// changed anything); the record as changed, or `None` when there is none or `change`
    /// left it alone.
    pub(crate) async fn update(
        &self,
        id: &str,
        mut change: impl FnMut(&mut Record) -> bool,
    ) -> Result<Option<Record>, Unavailable> {
        match self {
            Self::Local {
                records, budget, ..
            } => {
                let mut records = records.lock().unwrap_or_else(PoisonError::into_inner);
                let records = &mut *records;
                let Some((record, bytes)) = records.map.get_mut(id) else {
                    return Ok(None);
                };
                let mut changed = record.clone();
                if !change(&mut changed) {
                    return Ok(None);
                }
                // The process's records stay within their budget: a result that would not
                // fit ends its task failed instead.
                let mut grown = size(&changed);
                if grown > *bytes && records.bytes - *bytes + grown > *budget {
                    changed.fail(
                        crate::error::INTERNAL_ERROR_CODE,
                        "the server keeps no more task results right now; call the tool again later",
                    );
                    grown = size(&changed);
                }
                records.bytes = records.bytes - *bytes + grown;
                *bytes = grown;
                *record = changed.clone();
                Ok(Some(changed))
            }
            Self::Redis(cluster) => {
                // Compare-and-set: another replica's change in between is read again.
                for _ in 0..8 {
                    let Some(old) = cluster.task_get(id).await? else {
                        return Ok(None);
                    };
                    let Ok(mut record) = serde_json::from_str::<Record>(&old) else {
                        return Ok(None);
                    };
                    if !change(&mut record) {
                        return Ok(None);
                    }
                    let new = serde_json::to_string(&record).unwrap_or_default();
                    if cluster.task_swap(id, &old, &new).await? {
                        return Ok(Some(record));
                    }
                }
                tracing::warn!(task = id, "a task changed too often to update it");
                Ok(None)
            }
        }
    }

    /// Renews the liveness of a task this process runs; its status now (a cancel from
    /// another replica), if it can be read.
    pub(crate) async fn beat(&self, id: &str) -> Option<TaskStatus> {
        match self {
            Self::Local { records, .. } => records
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .map
                .get(id)
                .map(|(r, _)| r.status),
            Self::Redis(cluster) => {
                let json = cluster.task_beat(id, super::LIVENESS).await.ok()??;
                serde_json::from_str::<Record>(&json).ok().map(|r| r.status)
            }
        }
    }

    /// Whether a replica renewed the task's liveness within `within`.
    pub(crate) async fn alive(&self, id: &str, _within: Duration) -> bool {
        match self {
            // One process: a working record is run by this process (or about to be: the
            // moment between `tasks/update` and its round's start); it ends with it.
            Self::Local { .. } => true,
            // Unknown (Redis down) counts as alive: never fail a task on a guess.
            Self::Redis(cluster) => cluster.task_alive(id).await.unwrap_or(true),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, owner: &str) -> Record {
        Record {
            id: id.to_owned(),
            owner: owner.to_owned(),
            tool: "t".to_owned(),
            status: TaskStatus::Working,
            message: None,
            created_at: String::new(),
            updated_at: String::new(),
            expires_ms: unix_ms() + 60_000,
            ttl_ms: 60_000,
            replica: "r".to_owned(),
            result: None,
            error: None,
            input_requests: None,
            answers: Default::default(),
            arguments: Default::default(),
            request_state: None,
            lost: false,
        }
    }

    #[tokio::test]
    async fn a_principal_is_capped_and_so_is_the_process() {
        let store = Store::local(3);
        assert_eq!(
            store.create(&record("1", "a"), 2).await.unwrap(),
            Created::Yes
        );
        assert_eq!(
            store.create(&record("2", "a"), 2).await.unwrap(),
            Created::Yes
        );
        assert_eq!(
            store.create(&record("3", "a"), 2).await.unwrap(),
            Created::PrincipalFull,
            "two unfinished tasks fill a's two places"
        );
        // A finished one makes room: it is forgotten for the new one.
        store
            .update("1", |r| {
                r.status = TaskStatus::Completed;
                true
            })
            .await
            .unwrap();
        assert_eq!(
            store.create(&record("3", "a"), 2).await.unwrap(),
            Created::Yes
        );
        assert!(
            store.get("1").await.unwrap().is_none(),
            "the finished one went"
        );
        store.remove(&record("3", "a")).await.unwrap();
        store.create(&record("1", "a"), 2).await.unwrap();
        assert_eq!(
            store.create(&record("4", "b"), 2).await.unwrap(),
            Created::Yes
        );
        assert_eq!(
            store.create(&record("5", "c"), 2).await.unwrap(),
            Created::ProcessFull(3)
        );
        // An expired record frees its place.
        let mut old = record("6", "c");
        old.expires_ms = 0;
        store.remove(&record("4", "b")).await.unwrap();
        assert_eq!(store.create(&old, 2).await.unwrap(), Created::Yes);
        assert_eq!(
            store.create(&record("7", "c"), 2).await.unwrap(),
            Created::Yes
        );
    }

    #[tokio::test]
    async fn records_past_the_process_budget_are_refused_or_end_failed() {
        const BUDGET: usize = 64 * 1024;
        let store = Store::local_within(10, BUDGET);
        // A record whose arguments fill the budget is refused outright.
        let mut huge = record("0", "a");
        huge.arguments
            .insert("x".to_owned(), "y".repeat(BUDGET).into());
        assert_eq!(
            store.create(&huge, 5).await.unwrap(),
            Created::ProcessFull(10)
        );
        store.create(&record("1", "a"), 5).await.unwrap();
        store.create(&record("2", "a"), 5).await.unwrap();
        let big = |n: usize| {
            let mut result = rmcp::model::JsonObject::new();
            result.insert("text".to_owned(), "z".repeat(n).into());
            result
        };
        let kept = store
            .update("1", |r| {
                r.status = TaskStatus::Completed;
                r.result = Some(big(BUDGET - 4096));
                true
            })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(kept.status, TaskStatus::Completed);
        let refused = store
            .update("2", |r| {
                r.status = TaskStatus::Completed;
                r.result = Some(big(8192));
                true
            })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(refused.status, TaskStatus::Failed);
        assert!(refused.result.is_none());
        // Freeing the first makes room again.
        store.remove(&record("1", "a")).await.unwrap();
        store.create(&record("3", "a"), 5).await.unwrap();
        let kept = store
            .update("3", |r| {
                r.status = TaskStatus::Completed;
                r.result = Some(big(8192));
                true
            })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(kept.status, TaskStatus::Completed);
    }
}
