//! Task records in Redis (for the tasks module, above this one: records are JSON text
//! here): `task:ID` the record's JSON with its TTL,
//! `tasks:OWNER` a sorted set of the owner's task ids by expiry (the per-principal cap),
//! `task-alive:ID` the running replica's liveness.

use std::time::Duration;

use super::{Cluster, Unavailable};

/// One task record to add.
pub(crate) struct NewTask<'a> {
    pub(crate) id: &'a str,
    pub(crate) owner: &'a str,
    pub(crate) json: String,
    /// Unix milliseconds now and when the record expires.
    pub(crate) now_ms: u64,
    pub(crate) expires_ms: u64,
}

/// Adds a task unless its owner has `cap` unexpired ones, of which none is finished (else
/// its oldest finished one is forgotten to make room): one script, so two replicas creating
/// at once cannot both pass the cap. `ARGV[8]` is the prefix of task keys.
const CREATE: &str = r"
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[3])
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[4]) then
  local room = false
  for _, id in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
    local json = redis.call('GET', ARGV[8] .. id)
    local status = json and cjson.decode(json)['status']
    if not json or status == 'completed' or status == 'failed' or status == 'cancelled' then
      redis.call('DEL', ARGV[8] .. id)
      redis.call('ZREM', KEYS[2], id)
      room = true
      break
    end
  end
  if not room then return 0 end
end
redis.call('ZADD', KEYS[2], ARGV[5], ARGV[6])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('SET', KEYS[3], '1', 'PX', ARGV[7])
return 1
";

/// Replaces a record only if it is still what was read (compare-and-set), keeping its TTL.
const SWAP: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
  return 1
end
return 0
";

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl Cluster {
    pub(crate) async fn task_create(
        &self,
        task: NewTask<'_>,
        cap: usize,
        liveness: Duration,
    ) -> Result<bool, Unavailable> {
        let ttl = task.expires_ms.saturating_sub(task.now_ms).max(1);
        let keys = [
            self.key(&["task", task.id]),
            self.key(&["tasks", task.owner]),
            self.key(&["task-alive", task.id]),
        ];
        let task_prefix = self.key(&["task", ""]);
        let mut conn = self.conn.clone();
        let created: i64 = self
            .run("task_create", async move {
                redis::Script::new(CREATE)
                    .key(&keys[0])
                    .key(&keys[1])
                    .key(&keys[2])
                    .arg(task.json)
                    .arg(ttl)
                    .arg(task.now_ms)
                    .arg(cap)
                    .arg(task.expires_ms)
                    .arg(task.id)
                    .arg(millis(liveness))
                    .arg(task_prefix)
                    .invoke_async(&mut conn)
                    .await
            })
            .await?;
        Ok(created == 1)
    }

    pub(crate) async fn task_remove(&self, id: &str, owner: &str) -> Result<(), Unavailable> {
        let (task, owned, alive) = (
            self.key(&["task", id]),
            self.key(&["tasks", owner]),
            self.key(&["task-alive", id]),
        );
        let mut conn = self.conn.clone();
        let id = id.to_owned();
        self.run("task_remove", async move {
            redis::pipe()
                .atomic()
                .del(&task)
                .del(&alive)
                .zrem(&owned, &id)
                .query_async::<()>(&mut conn)
                .await
        })
        .await
    }

    pub(crate) async fn task_get(&self, id: &str) -> Result<Option<String>, Unavailable> {
        let key = self.key(&["task", id]);
        let mut conn = self.conn.clone();
        self.run("task_get", async move {
            redis::cmd("GET").arg(&key).query_async(&mut conn).await
        })
        .await
    }

    pub(crate) async fn task_swap(
        &self,
        id: &str,
        old: &str,
        new: &str,
    ) -> Result<bool, Unavailable> {
        let key = self.key(&["task", id]);
        let mut conn = self.conn.clone();
        let swapped: i64 = self
            .run("task_swap", async move {
                redis::Script::new(SWAP)
                    .key(&key)
                    .arg(old)
                    .arg(new)
                    .invoke_async(&mut conn)
                    .await
            })
            .await?;
        Ok(swapped == 1)
    }

    /// Renews a running task's liveness; its record now.
    pub(crate) async fn task_beat(
        &self,
        id: &str,
        liveness: Duration,
    ) -> Result<Option<String>, Unavailable> {
        let (task, alive) = (self.key(&["task", id]), self.key(&["task-alive", id]));
        let mut conn = self.conn.clone();
        let (_, record): ((), Option<String>) = self
            .run("task_beat", async move {
                redis::pipe()
                    .cmd("SET")
                    .arg(&alive)
                    .arg("1")
                    .arg("PX")
                    .arg(millis(liveness))
                    .ignore()
                    .cmd("GET")
                    .arg(&task)
                    .query_async(&mut conn)
                    .await
                    .map(|(record,): (Option<String>,)| ((), record))
            })
            .await?;
        Ok(record)
    }

    pub(crate) async fn task_alive(&self, id: &str) -> Result<bool, Unavailable> {
        let key = self.key(&["task-alive", id]);
        let mut conn = self.conn.clone();
        let exists: i64 = self
            .run("task_alive", async move {
                redis::cmd("EXISTS").arg(&key).query_async(&mut conn).await
            })
            .await?;
        Ok(exists == 1)
    }
}
