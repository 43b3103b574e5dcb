//! Real upstream HTTP servers for the HTTP pack's tests, on `127.0.0.1:0`: the reference task
//! API, a search API with the Brave response shape, and a raw-content host that also answers
//! every error class. Each records the requests it received (method, path and query) so tests
//! can prove that refused calls sent nothing and see exactly what was sent.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::json;

/// A secret that upstream error bodies carry: it must never reach a client or a log.
pub const BODY_CANARY: &str = "upstream-secret-canary-7Q2";

/// The requests an upstream received.
#[derive(Clone, Default)]
pub struct Recorder(Arc<Mutex<Vec<String>>>);

impl Recorder {
    pub fn requests(&self) -> Vec<String> {
        self.0.lock().expect("lock").clone()
    }

    pub fn count(&self) -> usize {
        self.0.lock().expect("lock").len()
    }

    fn layer(self, router: Router) -> Router {
        router.layer(middleware::from_fn(move |request: Request, next: Next| {
            let recorder = self.clone();
            async move {
                let target = request
                    .uri()
                    .path_and_query()
                    .map_or_else(String::new, ToString::to_string);
                recorder
                    .0
                    .lock()
                    .expect("lock")
                    .push(format!("{} {target}", request.method()));
                next.run(request).await
            }
        }))
    }
}

/// A running upstream.
pub struct Upstream {
    pub addr: SocketAddr,
    pub recorder: Recorder,
    _dir: Option<tempfile::TempDir>,
}

impl Upstream {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// The reference task API (`examples/task-api`) with a fresh database, expecting `key`.
pub async fn task_api(key: &str) -> Upstream {
    let dir = tempfile::tempdir().expect("tempdir");
    let api = portcullis_task_api::TaskApi::open(&dir.path().join("tasks.sqlite"), key)
        .await
        .expect("task api");
    let recorder = Recorder::default();
    let app = recorder.clone().layer(api.router());
    let addr = portcullis_test::tls::serve_http(app).await.expect("serve");
    Upstream {
        addr,
        recorder,
        _dir: Some(dir),
    }
}

#[derive(Deserialize)]
struct SearchQuery {
    q: String,
    count: Option<usize>,
}

async fn search(headers: HeaderMap, Query(query): Query<SearchQuery>) -> Response {
    if headers
        .get("x-subscription-token")
        .and_then(|v| v.to_str().ok())
        != Some("test-brave-key")
    {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({ "error": format!("bad token {BODY_CANARY}") })),
        )
            .into_response();
    }
    if query.q == "nothing at all" {
        return Json(json!({ "type": "search", "web": { "results": [] } })).into_response();
    }
    let results: Vec<_> = (1..=query.count.unwrap_or(20))
        .map(|i| {
            json!({
                "title": format!("Result {i} for {}", query.q),
                "url": format!("https://example.com/{i}"),
                "description": format!("Description {i}"),
            })
        })
        .collect();
    Json(json!({ "type": "search", "query": { "original": query.q }, "web": { "type": "search", "results": results } }))
        .into_response()
}

/// A search API with the Brave shape (`GET /res/v1/web/search?q=…&count=…`, token in
/// `X-Subscription-Token`, results under `web.results`).
pub async fn search_api() -> Upstream {
    let recorder = Recorder::default();
    let app = recorder
        .clone()
        .layer(Router::new().route("/res/v1/web/search", get(search)));
    let addr = portcullis_test::tls::serve_http(app).await.expect("serve");
    Upstream {
        addr,
        recorder,
        _dir: None,
    }
}

#[derive(Deserialize)]
struct RedirectTo {
    to: String,
}

async fn raw_file(
    Path((owner, repo, git_ref, path)): Path<(String, String, String, String)>,
) -> Response {
    if path.ends_with("missing.py") {
        return (
            StatusCode::NOT_FOUND,
            format!("404: Not Found {BODY_CANARY}"),
        )
            .into_response();
    }
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("# {owner}/{repo}@{git_ref}:{path}\nprint('hello')\n"),
    )
        .into_response()
}

async fn status(Path(code): Path<u16>, State(echo): State<Arc<String>>) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::IM_A_TEAPOT);
    let mut response = (
        status,
        format!("internal stack trace at db.internal:5432 {BODY_CANARY} token={echo}"),
    )
        .into_response();
    if code == 429 {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, "7".parse().expect("value"));
    }
    response
}

async fn big() -> Response {
    // 64 MB, streamed in 1 MB chunks, without a Content-Length.
    let chunk = bytes_of(1024 * 1024);
    let stream =
        futures::stream::iter((0..64).map(move |_| Ok::<_, std::io::Error>(chunk.clone())));
    (
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(stream),
    )
        .into_response()
}

fn bytes_of(len: usize) -> axum::body::Bytes {
    axum::body::Bytes::from(vec![b' '; len])
}

async fn slow() -> &'static str {
    tokio::time::sleep(Duration::from_secs(30)).await;
    "too late"
}

/// A raw-content host (`/{owner}/{repo}/{ref}/{path…}`, like raw.githubusercontent.com) that
/// also answers `/status/{code}` (a body with a canary and, echoed, whatever `echo` is),
/// `/big` (64 MB), `/slow` (30 s), `/binary`, `/json`, `/redirect?to=URL` and `/loop`.
pub async fn raw_host(echo: &str) -> Upstream {
    let recorder = Recorder::default();
    let router = Router::new()
        .route("/status/{code}", get(status))
        .route("/big", get(big))
        .route("/slow", get(slow))
        .route(
            "/binary",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "image/png")],
                    vec![0x89u8, b'P', b'N', b'G', 0, 0, 0, 0, 1, 2, 3],
                )
            }),
        )
        .route(
            "/json",
            get(|| async { Json(json!({ "items": [{ "n": 1 }, { "n": 2 }], "total": 2 })) }),
        )
        .route(
            "/redirect",
            get(|Query(to): Query<RedirectTo>| async move {
                (StatusCode::FOUND, [(header::LOCATION, to.to)]).into_response()
            }),
        )
        .route(
            "/loop",
            get(|| async { (StatusCode::FOUND, [(header::LOCATION, "/loop")]).into_response() }),
        )
        .route("/{owner}/{repo}/{git_ref}/{*path}", get(raw_file))
        .with_state(Arc::new(echo.to_owned()));
    let app = recorder.clone().layer(router);
    let addr = portcullis_test::tls::serve_http(app).await.expect("serve");
    Upstream {
        addr,
        recorder,
        _dir: None,
    }
}

/// A listener that only counts the connections made to it: the SSRF corpus's targets.
pub struct Canary {
    pub addr: SocketAddr,
    connections: Arc<std::sync::atomic::AtomicUsize>,
}

impl Canary {
    pub async fn on(ip: &str) -> Self {
        let listener = tokio::net::TcpListener::bind((ip, 0))
            .await
            .expect("bind canary");
        let addr = listener.local_addr().expect("addr");
        let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = Arc::clone(&connections);
        tokio::spawn(async move {
            while let Ok((_stream, _)) = listener.accept().await {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        });
        Self { addr, connections }
    }

    pub fn connections(&self) -> usize {
        self.connections.load(std::sync::atomic::Ordering::SeqCst)
    }
}
