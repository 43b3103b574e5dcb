//! The scaling table: how Portcullis's costs grow with what it serves. Each part starts its
//! own Portcullis on a config written for it under `target/bench/scale/` (absolute paths,
//! the demo's files and SQLite database), measures, and stops it:
//!
//! - idle RSS per pack (no pack, then each pack alone, then the demo profile);
//! - `tools/list` and `tools/call file_info` latency with 10, 100 and 1000 tools (SQL
//!   statement tools on the demo database) in the catalog;
//! - RSS with 0, 1 000 and 10 000 idle 2025-era sessions (`initialize` and `initialized`,
//!   then nothing);
//! - the time from a note's change on disk to its `notifications/resources/updated` on every
//!   subscriber's stream, with 1, 100 and 1 000 subscribed 2025 sessions;
//! - `resources/list` (first page, and every page) on a notes folder of 10 000 files;
//! - peak RSS under 40 hostile listen streams: 40 `subscriptions/listen` requests of 1000
//!   URIs of 2 KB at once from one principal, then 40 listens held open and never read
//!   while the notes they follow change.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::load::client;
use super::servers::{self, RunningServer};
use super::{procfs, write};

/// Sizes every part is measured at.
const TOOL_COUNTS: [usize; 3] = [10, 100, 1000];
const SESSION_COUNTS: [usize; 3] = [0, 1_000, 10_000];
const SUBSCRIBER_COUNTS: [usize; 3] = [1, 100, 1_000];
const NOTES: usize = 10_000;
/// Requests per latency sample (c=1, after 20 unmeasured).
const SAMPLES: usize = 300;
const PROTOCOL_2025: &str = "2025-06-18";

#[derive(Debug, Serialize)]
pub struct Scaling {
    pub idle_rss_by_pack: Vec<PackRss>,
    pub tools: Vec<ToolsPoint>,
    pub sessions: Vec<SessionsPoint>,
    pub fanout: Vec<FanoutPoint>,
    pub notes_list: Option<NotesList>,
    pub hostile_streams: Option<HostileStreams>,
    /// Parts that could not be measured, and why.
    pub failures: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct PackRss {
    pub config: &'static str,
    pub idle_rss_mb: f64,
    pub idle_anon_mb: f64,
}

#[derive(Debug, Serialize)]
pub struct ToolsPoint {
    pub tools: usize,
    pub list_p50_ms: f64,
    pub list_bytes: usize,
    pub call_p50_ms: f64,
}

#[derive(Debug, Serialize)]
pub struct SessionsPoint {
    /// `portcullis`, or `bare-rmcp` (rmcp's own cost per session, for comparison).
    pub server: &'static str,
    pub sessions: usize,
    pub rss_mb: f64,
    /// (RSS − RSS with no session) ÷ sessions.
    pub kib_per_session: Option<f64>,
    /// Seconds to open the sessions added since the previous point (32 at a time).
    pub open_secs: f64,
}

#[derive(Debug, Serialize)]
pub struct FanoutPoint {
    pub subscribers: usize,
    /// From the write to the first and to the last subscriber's notification (median of the
    /// rounds), including the watcher's debounce.
    pub first_ms: f64,
    pub last_ms: f64,
    pub rounds: usize,
}

#[derive(Debug, Serialize)]
pub struct HostileStreams {
    /// Listen requests sent in each wave.
    pub streams: usize,
    /// Of the second wave, how many the server kept open (the rest refused at the cap).
    pub held_open: usize,
    /// `VmRSS` before, and `VmHWM` (the peak) after both waves.
    pub idle_rss_mb: f64,
    pub rss_mb: f64,
}

#[derive(Debug, Serialize)]
pub struct NotesList {
    pub notes: usize,
    pub first_page_p50_ms: f64,
    pub first_page_items: usize,
    pub all_pages_p50_ms: f64,
    pub pages: usize,
}

/// Runs every part; a part that fails is reported, not fatal.
pub async fn measure(root: &Path, out_dir: &Path) -> Scaling {
    let dir = out_dir.join("scale");
    let mut scaling = Scaling {
        idle_rss_by_pack: Vec::new(),
        tools: Vec::new(),
        sessions: Vec::new(),
        fanout: Vec::new(),
        notes_list: None,
        hostile_streams: None,
        failures: Vec::new(),
    };
    if let Err(error) = std::fs::create_dir_all(&dir) {
        scaling
            .failures
            .push(format!("create {}: {error}", dir.display()));
        return scaling;
    }
    let demo = root.join("examples/demo");
    let notes_dir = dir.join("notes");
    if let Err(error) = notes(&notes_dir, NOTES) {
        scaling.failures.push(format!("notes folder: {error:#}"));
    }
    let packs = Packs {
        demo: &demo,
        notes: &notes_dir,
    };
    eprintln!("bench: scaling: idle RSS per pack");
    for (name, config) in packs.alone() {
        match idle_rss(&dir, name, &config).await {
            Ok(memory) => scaling.idle_rss_by_pack.push(PackRss {
                config: name,
                idle_rss_mb: memory.rss_mb(),
                idle_anon_mb: memory.anon_mb(),
            }),
            Err(error) => scaling
                .failures
                .push(format!("idle RSS of {name}: {error:#}")),
        }
    }
    match idle_rss_demo(&demo).await {
        Ok(memory) => scaling.idle_rss_by_pack.push(PackRss {
            config: "demo profile",
            idle_rss_mb: memory.rss_mb(),
            idle_anon_mb: memory.anon_mb(),
        }),
        Err(error) => scaling
            .failures
            .push(format!("idle RSS of the demo: {error:#}")),
    }
    for tools in TOOL_COUNTS {
        eprintln!("bench: scaling: {tools} tools");
        match tools_point(&dir, &packs, tools).await {
            Ok(point) => scaling.tools.push(point),
            Err(error) => scaling.failures.push(format!("{tools} tools: {error:#}")),
        }
    }
    eprintln!("bench: scaling: idle sessions");
    match sessions(&dir, &packs).await {
        Ok(points) => scaling.sessions = points,
        Err(error) => scaling.failures.push(format!("idle sessions: {error:#}")),
    }
    for subscribers in SUBSCRIBER_COUNTS {
        eprintln!("bench: scaling: fan-out to {subscribers} subscribers");
        match fanout(&dir, &packs, subscribers).await {
            Ok(point) => scaling.fanout.push(point),
            Err(error) => scaling
                .failures
                .push(format!("fan-out to {subscribers}: {error:#}")),
        }
    }
    eprintln!("bench: scaling: resources/list on {NOTES} notes");
    match notes_list(&dir, &packs).await {
        Ok(list) => scaling.notes_list = Some(list),
        Err(error) => scaling
            .failures
            .push(format!("resources/list on notes: {error:#}")),
    }
    eprintln!("bench: scaling: {HOSTILE} hostile listen streams");
    match hostile_streams(&dir, &packs).await {
        Ok(point) => scaling.hostile_streams = Some(point),
        Err(error) => scaling
            .failures
            .push(format!("hostile listen streams: {error:#}")),
    }
    scaling
}

/// Listen requests of each hostile wave.
const HOSTILE: usize = 40;

/// Step 1's reproduction under the default limits: 40 listens of 1000 URIs of 2 KB each
/// (2 MB bodies) at once from one principal; then 40 listens of 50 notes, held open and
/// never read, while those notes change 200 times. The peak RSS over both.
async fn hostile_streams(dir: &Path, packs: &Packs<'_>) -> anyhow::Result<HostileStreams> {
    let config = format!("{}{}", packs.base(""), packs.notes(20));
    let server = start(dir, "hostile", &config).await?;
    let url = format!("http://{}/mcp", server.addr);
    let idle_rss_mb = procfs::memory(server.pid())?.rss_mb();
    let listen = |uris: Vec<String>| {
        let params = json!({
            "_meta": portcullis_test::wire::stateless_meta(super::load::CLIENT),
            "notifications": { "resourceSubscriptions": uris },
        });
        let body = json!({ "jsonrpc": "2.0", "id": 7, "method": "subscriptions/listen", "params": params });
        let client = client();
        let url = url.clone();
        async move {
            let mut request = client?.post(&url).timeout(Duration::from_secs(3600));
            for (name, value) in
                portcullis_test::wire::stateless_headers("subscriptions/listen", &body["params"])
            {
                request = request.header(name, value);
            }
            // Only the response head is awaited: its body is never read.
            anyhow::Ok(request.body(body.to_string()).send().await.ok())
        }
    };
    let flood: Vec<String> = (0..1000)
        .map(|i| format!("note://{}{i}", "x".repeat(2000)))
        .collect();
    let first: Vec<_> = (0..HOSTILE)
        .map(|_| tokio::spawn(listen(flood.clone())))
        .collect();
    for wave in first {
        drop(wave.await??);
    }
    let followed: Vec<String> = (0..50).map(|i| format!("note://note-{i:05}")).collect();
    let waves: Vec<_> = (0..HOSTILE)
        .map(|_| tokio::spawn(listen(followed.clone())))
        .collect();
    let mut held = Vec::new();
    for wave in waves {
        if let Some(response) = wave.await??
            && response.status().is_success()
        {
            held.push(response);
        }
    }
    for round in 0..200 {
        let i = round % 50;
        write(
            &packs.notes.join(format!("note-{i:05}.md")),
            &format!(
                "# Note {i}\n\nHostile round {round}: {}\n",
                "y".repeat(4000)
            ),
        )?;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_mb = procfs::memory(server.pid())?.hwm_mb();
    let held_open = held.len();
    drop(held);
    // The notes back as they were, for the other parts of later runs.
    for i in 0..50 {
        write(
            &packs.notes.join(format!("note-{i:05}.md")),
            &format!("# Note {i}\n\nSome text of note {i}.\n"),
        )?;
    }
    Ok(HostileStreams {
        streams: HOSTILE,
        held_open,
        idle_rss_mb,
        rss_mb,
    })
}

/// The sections each configuration is made of.
struct Packs<'a> {
    demo: &'a Path,
    notes: &'a Path,
}

impl Packs<'_> {
    fn base(&self, limits: &str) -> String {
        format!(
            "[server]\nname = \"portcullis-bench-scale\"\n\n[http]\nlisten = \"127.0.0.1:0\"\n\n\
             [limits]\n{limits}\n"
        )
    }

    fn files(&self) -> String {
        format!(
            "[[files]]\nname = \"workspace\"\npath = {:?}\n",
            self.demo.join("workspace").display().to_string()
        )
    }

    fn sql(&self, statements: usize) -> String {
        let mut toml = format!(
            "[[sql]]\nname = \"community\"\nurl = {:?}\nread_only = true\npool_size = 4\n",
            format!("sqlite://{}", self.demo.join(".data/demo.sqlite").display())
        );
        for i in 0..statements {
            toml.push_str(&format!(
                "[[sql.statements]]\nname = \"count_{i:04}\"\ndescription = \"Count the \
                 chatters with at least this many messages (statement {i}).\"\nsql = \"SELECT \
                 count(*) AS n FROM chatters WHERE message_count >= ?\"\n\
                 [[sql.statements.params]]\nname = \"min_messages\"\ntype = \"integer\"\nmin = 0\n\
                 default = 0\n"
            ));
        }
        toml
    }

    fn notes(&self, debounce_ms: u64) -> String {
        format!(
            "[[notes]]\nname = \"notes\"\npath = {:?}\nwatch = \"auto\"\ndebounce_ms = \
             {debounce_ms}\nmax_notes = {}\n",
            self.notes.display().to_string(),
            NOTES * 2
        )
    }

    fn prompts(&self) -> String {
        "[[prompts]]\nname = \"review\"\ndescription = \"Review a file.\"\ntemplate = \"Review \
         {{ path }}.\"\n[[prompts.arguments]]\nname = \"path\"\nrequired = true\n"
            .to_owned()
    }

    /// No pack, then each pack alone.
    fn alone(&self) -> Vec<(&'static str, String)> {
        let base = self.base("");
        vec![
            ("no pack", base.clone()),
            ("files", format!("{base}{}", self.files())),
            (
                "sql (SQLite, 1 statement)",
                format!("{base}{}", self.sql(1)),
            ),
            ("notes (10 000 files)", format!("{base}{}", self.notes(150))),
            ("prompts", format!("{base}{}", self.prompts())),
        ]
    }
}

async fn start(dir: &Path, name: &str, config: &str) -> anyhow::Result<RunningServer> {
    let slug: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let template = dir.join(format!("{slug}.toml"));
    write(&template, config)?;
    let server = RunningServer::start(&servers::portcullis_launch(template, String::new()))?;
    let url = format!("http://{}/mcp", server.addr);
    // Serving: one stateless request answered (`server/discover`, which every config
    // serves; a list is "method not found" where nothing of its kind is declared).
    let client = client()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match rpc(&client, &url, None, "server/discover", json!({})).await {
            Ok(_) => break,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(error) => return Err(error.context(server.log_tail())),
        }
    }
    Ok(server)
}

async fn idle_rss(dir: &Path, name: &str, config: &str) -> anyhow::Result<procfs::Memory> {
    let server = start(dir, name, config).await?;
    // Let start-up work (pools, watchers, scans) settle.
    tokio::time::sleep(Duration::from_millis(500)).await;
    procfs::memory(server.pid())
}

async fn idle_rss_demo(demo: &Path) -> anyhow::Result<procfs::Memory> {
    let launch = servers::portcullis_launch(demo.join("portcullis.toml"), String::new());
    let server = RunningServer::start(&launch)?;
    let url = format!("http://{}/mcp", server.addr);
    let client = client()?;
    rpc(&client, &url, None, "tools/list", json!({})).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    procfs::memory(server.pid())
}

/// One JSON-RPC request: stateless 2026-07-28 without `session`, else within the 2025
/// session. Returns the result and the body's size.
async fn rpc(
    client: &reqwest::Client,
    url: &str,
    session: Option<&str>,
    method: &str,
    mut params: Value,
) -> anyhow::Result<(Value, usize)> {
    let mut request = client.post(url);
    match session {
        Some(id) => {
            request = request
                .header("Content-Type", "application/json")
                .header("Accept", "application/json, text/event-stream")
                .header("Mcp-Session-Id", id)
                .header("MCP-Protocol-Version", PROTOCOL_2025);
        }
        None => {
            for (name, value) in portcullis_test::wire::stateless_headers(method, &params) {
                request = request.header(name, value);
            }
            params["_meta"] = portcullis_test::wire::stateless_meta(super::load::CLIENT);
        }
    }
    let body = json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params });
    let response = request.body(body.to_string()).send().await?;
    let status = response.status();
    let bytes = response.bytes().await?;
    if !status.is_success() {
        bail!(
            "{method}: HTTP {status}: {}",
            String::from_utf8_lossy(&bytes)
        );
    }
    // A 2025 session answers on an event stream: the response is the event with an id.
    let text = String::from_utf8_lossy(&bytes);
    let message: Value = serde_json::from_slice(&bytes)
        .ok()
        .or_else(|| {
            text.lines()
                .filter_map(|line| line.strip_prefix("data:"))
                .filter_map(|data| serde_json::from_str::<Value>(data.trim()).ok())
                .find(|m| m.get("id").is_some())
        })
        .with_context(|| format!("{method}: no JSON-RPC response in: {text}"))?;
    if let Some(error) = message.get("error") {
        bail!("{method}: JSON-RPC error {error}");
    }
    let result = message.get("result").cloned().context("no result")?;
    if result.get("isError").and_then(Value::as_bool) == Some(true) {
        bail!("{method}: isError: {result}");
    }
    Ok((result, bytes.len()))
}

/// Median of `SAMPLES` calls of `request`, after 20 unmeasured.
async fn p50<F, Fut>(mut request: F) -> anyhow::Result<f64>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    for _ in 0..20 {
        request().await?;
    }
    let mut samples = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        let started = Instant::now();
        request().await?;
        samples.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(median(&mut samples))
}

fn median(samples: &mut [f64]) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples.get(samples.len() / 2).copied().unwrap_or(f64::NAN)
}

async fn tools_point(dir: &Path, packs: &Packs<'_>, tools: usize) -> anyhow::Result<ToolsPoint> {
    // `file_info` plus statement tools up to `tools`.
    let files_tools = 4;
    let config = format!(
        "{}{}{}",
        packs.base(""),
        packs.files(),
        packs.sql(tools.saturating_sub(files_tools))
    );
    let server = start(dir, &format!("tools-{tools}"), &config).await?;
    let url = format!("http://{}/mcp", server.addr);
    let client = client()?;
    let (listed, list_bytes) = rpc(&client, &url, None, "tools/list", json!({})).await?;
    let count = listed
        .get("tools")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    if count != tools {
        bail!("tools/list returned {count} tools, expected {tools}");
    }
    let list_p50_ms = p50(|| async {
        rpc(&client, &url, None, "tools/list", json!({}))
            .await
            .map(drop)
    })
    .await?;
    let call_p50_ms = p50(|| async {
        rpc(
            &client,
            &url,
            None,
            "tools/call",
            json!({ "name": "file_info", "arguments": { "path": "README.md" } }),
        )
        .await
        .map(drop)
    })
    .await?;
    Ok(ToolsPoint {
        tools,
        list_p50_ms,
        list_bytes,
        call_p50_ms,
    })
}

/// A 2025 session: `initialize`, then `notifications/initialized`; its id.
async fn open_session(client: &reqwest::Client, url: &str) -> anyhow::Result<String> {
    let body = json!({
        "jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {
            "protocolVersion": PROTOCOL_2025,
            "capabilities": {},
            "clientInfo": { "name": "portcullis-bench", "version": "0" },
        },
    });
    let response = client
        .post(url)
        .header("Content-Type", "application/json")
        .header("Accept", "application/json, text/event-stream")
        .body(body.to_string())
        .send()
        .await?;
    let status = response.status();
    let id = response
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let text = response.text().await?;
    let Some(id) = id.filter(|_| status.is_success()) else {
        bail!("initialize: HTTP {status}, no session: {text}");
    };
    let initialized = json!({ "jsonrpc": "2.0", "method": "notifications/initialized" });
    let response = client
        .post(url)
        .header("Content-Type", "application/json")
        .header("Accept", "application/json, text/event-stream")
        .header("Mcp-Session-Id", &id)
        .header("MCP-Protocol-Version", PROTOCOL_2025)
        .body(initialized.to_string())
        .send()
        .await?;
    if !response.status().is_success() {
        bail!("notifications/initialized: HTTP {}", response.status());
    }
    Ok(id)
}

/// Opens `n` sessions, by 32 workers.
async fn open_sessions(url: &str, n: usize) -> anyhow::Result<Vec<String>> {
    const WORKERS: usize = 32;
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..WORKERS.min(n) {
        let url = url.to_owned();
        let count = n / WORKERS + usize::from(worker < n % WORKERS);
        workers.spawn(async move {
            let client = client()?;
            let mut ids = Vec::with_capacity(count);
            for _ in 0..count {
                ids.push(open_session(&client, &url).await?);
            }
            anyhow::Ok(ids)
        });
    }
    let mut ids = Vec::with_capacity(n);
    while let Some(opened) = workers.join_next().await {
        ids.extend(opened??);
    }
    Ok(ids)
}

fn session_limits(n: usize) -> String {
    format!(
        "max_sessions = {}\nmax_sessions_per_principal = {}\nsession_idle_secs = 3600\n\
         max_in_flight = {}\nmax_in_flight_per_principal = {}\n\
         max_get_streams_per_principal = {}\n",
        n + 100,
        n + 100,
        n + 256,
        n + 128,
        n + 100
    )
}

async fn sessions(dir: &Path, packs: &Packs<'_>) -> anyhow::Result<Vec<SessionsPoint>> {
    let most = SESSION_COUNTS.iter().copied().max().unwrap_or(0);
    let config = format!("{}{}", packs.base(&session_limits(most)), packs.files());
    let portcullis = start(dir, "sessions", &config).await?;
    let mut points = sessions_of("portcullis", &portcullis).await?;
    drop(portcullis);
    let bare = RunningServer::start(&servers::bare_launch())?;
    points.extend(sessions_of("bare-rmcp", &bare).await?);
    Ok(points)
}

async fn sessions_of(
    name: &'static str,
    server: &RunningServer,
) -> anyhow::Result<Vec<SessionsPoint>> {
    let url = format!("http://{}/mcp", server.addr);
    let mut points = Vec::new();
    let mut open = 0;
    let mut base = None;
    for n in SESSION_COUNTS {
        let started = Instant::now();
        open_sessions(&url, n - open)
            .await
            .with_context(|| server.log_tail())?;
        let open_secs = started.elapsed().as_secs_f64();
        open = n;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let rss = procfs::memory(server.pid())?.rss_mb();
        let base_rss = *base.get_or_insert(rss);
        points.push(SessionsPoint {
            server: name,
            sessions: n,
            rss_mb: rss,
            kib_per_session: (n > 0).then(|| (rss - base_rss) * 1024.0 / n as f64),
            open_secs,
        });
    }
    Ok(points)
}

/// `n` markdown notes `note-00000.md` … in `dir` (kept between runs).
fn notes(dir: &Path, n: usize) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    for i in 0..n {
        let path = dir.join(format!("note-{i:05}.md"));
        if !path.exists() {
            write(&path, &format!("# Note {i}\n\nSome text of note {i}.\n"))?;
        }
    }
    Ok(())
}

async fn fanout(dir: &Path, packs: &Packs<'_>, subscribers: usize) -> anyhow::Result<FanoutPoint> {
    const ROUNDS: usize = 5;
    const DEBOUNCE_MS: u64 = 20;
    let config = format!(
        "{}{}",
        packs.base(&session_limits(subscribers)),
        packs.notes(DEBOUNCE_MS)
    );
    let server = start(dir, &format!("fanout-{subscribers}"), &config).await?;
    let url = format!("http://{}/mcp", server.addr);
    let uri = "note://note-00000";
    let ids = open_sessions(&url, subscribers)
        .await
        .with_context(|| server.log_tail())?;
    // Every subscriber: resources/subscribe, then its GET stream; each received
    // notification goes to `seen` with the subscriber's index.
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel::<(usize, Instant)>();
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut tasks = Vec::new();
    for (index, id) in ids.into_iter().enumerate() {
        let (url, seen_tx, ready_tx) = (url.clone(), seen_tx.clone(), ready_tx.clone());
        tasks.push(tokio::spawn(async move {
            let client = client()?;
            rpc(
                &client,
                &url,
                Some(&id),
                "resources/subscribe",
                json!({ "uri": uri }),
            )
            .await?;
            let response = client
                .get(&url)
                .header("Accept", "text/event-stream")
                .header("Mcp-Session-Id", &id)
                .header("MCP-Protocol-Version", PROTOCOL_2025)
                .timeout(Duration::from_secs(3600))
                .send()
                .await?;
            if !response.status().is_success() {
                bail!("GET stream: HTTP {}", response.status());
            }
            let _ = ready_tx.send(());
            let mut response = response;
            let mut buffer = Vec::new();
            while let Some(chunk) = response.chunk().await? {
                buffer.extend_from_slice(&chunk);
                // One notification per SSE event; count every one in this chunk.
                while let Some(end) = find(&buffer, b"\n\n") {
                    let event: Vec<u8> = buffer.drain(..end + 2).collect();
                    if find(&event, b"notifications/resources/updated").is_some() {
                        let _ = seen_tx.send((index, Instant::now()));
                    }
                }
            }
            anyhow::Ok(())
        }));
    }
    drop(ready_tx);
    for _ in 0..subscribers {
        tokio::time::timeout(Duration::from_secs(60), ready_rx.recv())
            .await
            .context("subscribers did not all open their streams within 60 s")?
            .context("a subscriber failed before its stream opened")?;
    }
    // The streams are open on the server once their response headers arrived; give the
    // watcher a moment past start-up.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let note = packs.notes.join("note-00000.md");
    let (mut firsts, mut lasts) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        while seen_rx.try_recv().is_ok() {}
        let started = Instant::now();
        write(
            &note,
            &format!(
                "# Note 0\n\nRound {round} at {:?}.\n",
                std::time::SystemTime::now()
            ),
        )?;
        let mut got = vec![false; subscribers];
        let (mut count, mut first, mut last) = (0, None, started);
        while count < subscribers {
            let (index, at) = tokio::time::timeout(Duration::from_secs(30), seen_rx.recv())
                .await
                .with_context(|| {
                    format!(
                        "{count} of {subscribers} notified within 30 s\n{}",
                        server.log_tail()
                    )
                })?
                .context("every subscriber stream ended")?;
            if !std::mem::replace(&mut got[index], true) {
                count += 1;
                first.get_or_insert(at);
                last = at;
            }
        }
        firsts.push((first.unwrap_or(last) - started).as_secs_f64() * 1000.0);
        lasts.push((last - started).as_secs_f64() * 1000.0);
        // Past the debounce window before the next write.
        tokio::time::sleep(Duration::from_millis(DEBOUNCE_MS * 10)).await;
    }
    for task in tasks {
        task.abort();
    }
    Ok(FanoutPoint {
        subscribers,
        first_ms: median(&mut firsts),
        last_ms: median(&mut lasts),
        rounds: ROUNDS,
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

async fn notes_list(dir: &Path, packs: &Packs<'_>) -> anyhow::Result<NotesList> {
    let config = format!("{}{}", packs.base(""), packs.notes(150));
    let server = start(dir, "notes-list", &config).await?;
    let url = format!("http://{}/mcp", server.addr);
    let client = Arc::new(client()?);
    let all_pages = || async {
        let (mut cursor, mut items, mut pages) = (None::<String>, 0, 0);
        loop {
            let params = match &cursor {
                Some(c) => json!({ "cursor": c }),
                None => json!({}),
            };
            let (result, _) = rpc(&client, &url, None, "resources/list", params).await?;
            pages += 1;
            items += result
                .get("resources")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            match result.get("nextCursor").and_then(Value::as_str) {
                Some(next) => cursor = Some(next.to_owned()),
                None => break,
            }
        }
        anyhow::Ok((items, pages))
    };
    let (items, pages) = all_pages().await?;
    if items < NOTES {
        bail!("resources/list listed {items} resources, expected at least {NOTES}");
    }
    let (first, _) = rpc(&client, &url, None, "resources/list", json!({})).await?;
    let first_page_items = first
        .get("resources")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let first_page_p50_ms = p50(|| async {
        rpc(&client, &url, None, "resources/list", json!({}))
            .await
            .map(drop)
    })
    .await?;
    let mut samples = Vec::new();
    for _ in 0..20 {
        let started = Instant::now();
        all_pages().await?;
        samples.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(NotesList {
        notes: NOTES,
        first_page_p50_ms,
        first_page_items,
        all_pages_p50_ms: median(&mut samples),
        pages,
    })
}

/// The stripped size of each binary built, per feature set.
#[derive(Debug, Serialize)]
pub struct BinarySize {
    pub binary: String,
    pub features: &'static str,
    /// Built with every pack (the default features).
    pub every_pack: bool,
    pub stripped_mb: f64,
    pub as_built_mb: f64,
}

/// Portcullis's dist binary (the shipped build), as built and stripped (`strip` on a copy).
///
/// And the files-only build (`--no-default-features --features files`, in
/// `target/files-only` so it never replaces the shipped binary) when `files_only` is given.
pub fn binary_sizes(release: &Path, files_only: Option<&Path>, out_dir: &Path) -> Vec<BinarySize> {
    let mut sizes = Vec::new();
    let builds = [
        (
            release.join("portcullis"),
            "target/dist/portcullis",
            "every pack (files, notes, prompts, resources, sql: SQLite, PostgreSQL, MySQL; api, \
             command, skills, upstreams), auth, audit, metrics, traces, cluster",
            true,
        ),
        (
            files_only.map_or_else(PathBuf::new, |dir| dir.join("portcullis")),
            "target/files-only/dist/portcullis",
            "the files pack only (and resources), auth, audit, metrics, traces, cluster",
            false,
        ),
    ];
    for (binary, name, features, every_pack) in builds {
        if binary.as_os_str().is_empty() {
            continue;
        }
        let copy = out_dir.join(format!("portcullis-{}.stripped", sizes.len()));
        let stripped = super::command("strip")
            .arg("-o")
            .arg(&copy)
            .arg(&binary)
            .status()
            .is_ok_and(|s| s.success());
        let size = |path: &Path| std::fs::metadata(path).map(|m| m.len() as f64 / 1e6).ok();
        if let (true, Some(stripped_mb), Some(as_built_mb)) = (stripped, size(&copy), size(&binary))
        {
            sizes.push(BinarySize {
                binary: name.to_owned(),
                features,
                every_pack,
                stripped_mb,
                as_built_mb,
            });
        }
    }
    sizes
}
