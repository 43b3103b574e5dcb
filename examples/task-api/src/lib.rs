//! A small task-manager REST API, the upstream of `examples/task-manager`: tasks in SQLite,
//! bearer-token authentication, JSON in and out.
//!
//! - `GET /tasks?status=all|open|in_progress|done|cancelled&limit=N` → `{"tasks": [...], "total": n}`
//! - `POST /tasks` `{title, description?, assignee?, priority?, due_date?}` → `201 {task}`
//! - `PATCH /tasks/{id}` `{status}` → `{task}` (404 when there is no such task)
//!
//! Task ids are strings (`t1`, `t2`, …), as the REST APIs the task-manager guides front
//! (`update_task_status(task_id: str, …)`): a client passes back what it was given.
//! - `GET /tasks/search?q=TEXT` → `{"results": [...]}` (title and description, case-insensitive)
//! - `GET /health` → `{"status": "ok"}` (no token needed)
//!
//! Every other route needs `Authorization: Bearer <key>`.

use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path as UrlPath, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, patch};
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use sqlx::{ConnectOptions as _, Row as _};

const STATUSES: [&str; 4] = ["open", "in_progress", "done", "cancelled"];
const PRIORITIES: [&str; 4] = ["low", "medium", "high", "critical"];

/// The API's state: the database and the key clients must present.
#[derive(Clone)]
pub struct TaskApi {
    db: SqlitePool,
    key: Arc<str>,
}

impl TaskApi {
    /// Opens (creating when needed) the database at `path`; clients must send `key`.
    pub async fn open(path: &Path, key: &str) -> anyhow::Result<Self> {
        // `--db .data/tasks.sqlite` on a fresh clone: the folder does not exist yet.
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            #[allow(
                clippy::disallowed_methods,
                reason = "the example API creates its own database folder"
            )]
            std::fs::create_dir_all(dir)?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .disable_statement_logging();
        let db = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS tasks (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                title TEXT NOT NULL,
                description TEXT,
                assignee TEXT,
                priority TEXT NOT NULL DEFAULT 'medium',
                status TEXT NOT NULL DEFAULT 'open',
                due_date TEXT,
                created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
            )",
        )
        .execute(&db)
        .await?;
        Ok(Self {
            db,
            key: Arc::from(key),
        })
    }

    /// The routes, behind the bearer-token check.
    pub fn router(self) -> Router {
        let protected = Router::new()
            .route("/tasks", get(list).post(create))
            .route("/tasks/search", get(search))
            .route("/tasks/{id}", patch(update))
            .layer(middleware::from_fn_with_state(self.clone(), authenticate));
        Router::new()
            .route("/health", get(|| async { Json(json!({ "status": "ok" })) }))
            .merge(protected)
            .with_state(self)
    }
}

async fn authenticate(State(api): State<TaskApi>, request: Request, next: Next) -> Response {
    let expected = format!("Bearer {}", api.key);
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if presented != Some(expected.as_str()) {
        return error(StatusCode::UNAUTHORIZED, "a valid bearer token is required");
    }
    next.run(request).await
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

fn task(row: &sqlx::sqlite::SqliteRow) -> Value {
    json!({
        "id": task_id(row.get::<i64, _>("id")),
        "title": row.get::<String, _>("title"),
        "description": row.get::<Option<String>, _>("description"),
        "assignee": row.get::<Option<String>, _>("assignee"),
        "priority": row.get::<String, _>("priority"),
        "status": row.get::<String, _>("status"),
        "due_date": row.get::<Option<String>, _>("due_date"),
        "created_at": row.get::<String, _>("created_at"),
    })
}

/// A task's id as the API shows it.
fn task_id(row_id: i64) -> String {
    format!("t{row_id}")
}

/// The row of a task id the API gave (`t` and a positive number), if it is one.
fn row_id(task_id: &str) -> Option<i64> {
    let digits = task_id.strip_prefix('t')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|n| *n > 0)
}

#[derive(Deserialize)]
struct ListQuery {
    status: Option<String>,
    limit: Option<i64>,
}

async fn list(State(api): State<TaskApi>, Query(q): Query<ListQuery>) -> Response {
    let status = q.status.unwrap_or_else(|| "all".to_owned());
    if status != "all" && !STATUSES.contains(&status.as_str()) {
        return error(StatusCode::BAD_REQUEST, "unknown status");
    }
    let limit = q.limit.unwrap_or(20).clamp(1, 100);
    let rows =
        sqlx::query("SELECT * FROM tasks WHERE (?1 = 'all' OR status = ?1) ORDER BY id LIMIT ?2")
            .bind(&status)
            .bind(limit)
            .fetch_all(&api.db)
            .await;
    match rows {
        Ok(rows) => {
            let tasks: Vec<Value> = rows.iter().map(task).collect();
            Json(json!({ "total": tasks.len(), "tasks": tasks })).into_response()
        }
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "database error"),
    }
}

#[derive(Deserialize)]
struct NewTask {
    title: String,
    description: Option<String>,
    assignee: Option<String>,
    priority: Option<String>,
    due_date: Option<String>,
}

async fn create(State(api): State<TaskApi>, Json(new): Json<NewTask>) -> Response {
    let priority = new.priority.unwrap_or_else(|| "medium".to_owned());
    if new.title.trim().is_empty() || new.title.chars().count() > 200 {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "title must be 1 to 200 characters",
        );
    }
    if !PRIORITIES.contains(&priority.as_str()) {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "unknown priority");
    }
    let row = sqlx::query(
        "INSERT INTO tasks (title, description, assignee, priority, due_date) VALUES (?, ?, ?, ?, ?) RETURNING *",
    )
    .bind(&new.title)
    .bind(&new.description)
    .bind(&new.assignee)
    .bind(&priority)
    .bind(&new.due_date)
    .fetch_one(&api.db)
    .await;
    match row {
        Ok(row) => (StatusCode::CREATED, Json(task(&row))).into_response(),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "database error"),
    }
}

#[derive(Deserialize)]
struct StatusChange {
    status: String,
}

async fn update(
    State(api): State<TaskApi>,
    UrlPath(id): UrlPath<String>,
    Json(change): Json<StatusChange>,
) -> Response {
    if !STATUSES.contains(&change.status.as_str()) {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "unknown status");
    }
    // An id this API never gave is a task that does not exist.
    let Some(id) = row_id(&id) else {
        return error(StatusCode::NOT_FOUND, "no such task");
    };
    let row = sqlx::query("UPDATE tasks SET status = ? WHERE id = ? RETURNING *")
        .bind(&change.status)
        .bind(id)
        .fetch_optional(&api.db)
        .await;
    match row {
        Ok(Some(row)) => Json(task(&row)).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, "no such task"),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "database error"),
    }
}

#[derive(Deserialize)]
struct SearchQuery {
    q: String,
}

async fn search(State(api): State<TaskApi>, Query(q): Query<SearchQuery>) -> Response {
    let pattern = format!("%{}%", q.q.to_lowercase());
    let rows = sqlx::query(
        "SELECT * FROM tasks WHERE lower(title) LIKE ?1 OR lower(coalesce(description, '')) LIKE ?1 ORDER BY id LIMIT 100",
    )
    .bind(pattern)
    .fetch_all(&api.db)
    .await;
    match rows {
        Ok(rows) => {
            Json(json!({ "results": rows.iter().map(task).collect::<Vec<_>>() })).into_response()
        }
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "database error"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_the_ones_the_api_gives() {
        assert_eq!(task_id(12), "t12");
        for (id, row) in [
            ("t12", Some(12)),
            ("t0", None),
            ("12", None),
            ("t", None),
            ("t-1", None),
            ("t1x", None),
            ("3f2a9c1e-7b4d-4c1a-9e8f-0a1b2c3d4e5f", None),
        ] {
            assert_eq!(row_id(id), row, "{id}");
        }
    }
}
