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
        records: Mutex<HashMap<String, Record>>,
        max: usize,
    },
    /// Redis, through the cluster's connection.
    Redis(Arc<crate::cluster::Cluster>),
}

impl Store {
    pub(crate) fn local(max: usize) -> Self {
        Self::Local {
            records: Mutex::default(),
            max,
        }
    }

    pub(crate) fn redis(cluster: Arc<crate::cluster::Cluster>) -> Self {
        Self::Redis(cluster)
    }

    /// Adds `record` unless its owner has `cap` unexpired tasks already (`Ok(false)`).
    pub(crate) async fn create(&self, record: &Record, cap: usize) -> Result<bool, Unavailable> {
        match self {
            Self::Local { records, max } => {
                let now = unix_ms();
                let mut records = records.lock().unwrap_or_else(PoisonError::into_inner);
                records.retain(|_, r| r.expires_ms > now);
                let owned = records.values().filter(|r| r.owner == record.owner).count();
                if owned >= cap || records.len() >= *max {
                    return Ok(false);
                }
                records.insert(record.id.clone(), record.clone());
                Ok(true)
            }
            Self::Redis(cluster) => cluster.task_create(record, cap, super::LIVENESS).await,
        }
    }

    pub(crate) async fn remove(&self, record: &Record) -> Result<(), Unavailable> {
        match self {
            Self::Local { records, .. } => {
                records
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&record.id);
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
                .get(id)
                .cloned()),
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
            Self::Local { records, .. } => {
                let mut records = records.lock().unwrap_or_else(PoisonError::into_inner);
                Ok(records
                    .get_mut(id)
                    .and_then(|record| change(record).then(|| record.clone())))
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
                .get(id)
                .map(|r| r.status),
            Self::Redis(cluster) => {
                let json = cluster.task_beat(id, super::LIVENESS).await.ok()??;
                serde_json::from_str::<Record>(&json).ok().map(|r| r.status)
            }
        }
    }

    /// Whether a replica renewed the task's liveness within `within`.
    pub(crate) async fn alive(&self, id: &str, _within: Duration) -> bool {
        match self {
            // One process: a task is alive exactly while this process runs it (checked by
            // the caller).
            Self::Local { .. } => false,
            // Unknown (Redis down) counts as alive: never fail a task on a guess.
            Self::Redis(cluster) => cluster.task_alive(id).await.unwrap_or(true),
        }
    }
}
