//! `task-api [--listen ADDR] [--db FILE]`: the reference task API. The key clients must send
//! comes from `TASK_API_KEY` (default `dev-task-key`).

use std::path::PathBuf;

use anyhow::Context as _;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut listen = "127.0.0.1:8081".to_owned();
    let mut db = PathBuf::from("tasks.sqlite");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => listen = args.next().context("--listen needs an address")?,
            "--db" => db = args.next().context("--db needs a file")?.into(),
            other => anyhow::bail!(
                "unknown argument `{other}`; usage: task-api [--listen ADDR] [--db FILE]"
            ),
        }
    }
    let key = std::env::var("TASK_API_KEY").unwrap_or_else(|_| "dev-task-key".to_owned());
    let api = portcullis_task_api::TaskApi::open(&db, &key).await?;
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("listen on {listen}"))?;
    eprintln!(
        "task-api listening on http://{listen} (database {})",
        db.display()
    );
    axum::serve(listener, api.router()).await?;
    Ok(())
}
