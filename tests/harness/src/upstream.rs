//! A controllable upstream: HTTP/1.1 and h2c (prior knowledge) on one port, behaviour chosen per
//! request by `x-upstream-*` request headers (Envoy forwards them), every request recorded.
//!
//! | header | effect |
//! | --- | --- |
//! | `x-upstream-status: N` | HTTP status (default 200) |
//! | `x-upstream-delay-ms: N` | sleep before answering |
//! | `x-upstream-action: hang` | never answer; the connection stays open until the peer gives up |
//! | `x-upstream-action: reset` | no response: h1 closes the connection, h2 resets the stream |
//! | `x-upstream-action: close` | send headers and a first chunk, then abort the connection/stream |
//! | `x-upstream-body-size: N` | N bytes of `application/octet-stream`, streamed in 16 KiB chunks |
//! | `x-upstream-set-header: name: value` | add a response header (repeatable) |
//! | `x-upstream-grpc-status: N` | gRPC status for `application/grpc` requests (default 0) |
//! | `x-upstream-grpc-message: text` | gRPC message (default: empty for 0, else a fixed text) |
//! | `x-upstream-grpc-in: trailers\|headers` | where grpc-status goes; `headers` = trailers-only |
//! | `x-upstream-call-id: id` | names the request for [`Upstream::call_ender`] |
//!
//! Default answer: 200 `application/json`, the echo `{"method","path","version","authority",
//! "headers":[[name,value],...],"body_size"}` of exactly what arrived.
//!
//! [`Upstream::set_behaviour`] applies such headers to every request, as an upstream that fails on
//! its own (the clients send nothing special).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// A free local port for a child process to bind (Prometheus, the registry): released at once, so the
/// caller retries if another process takes it first.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A local port nothing listens on, for a cluster whose connections are refused. The port stays bound
/// (never listening) for the rest of the test process: a port merely released could be taken by an
/// Envoy admin or upstream of a test running in parallel, which then answers the "dead" cluster.
pub fn closed_port() -> u16 {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = socket.local_addr().unwrap().port();
    std::mem::forget(socket);
    port
}

/// Chunk size for `x-upstream-body-size` bodies.
const CHUNK: usize = 16 * 1024;

/// One request as it arrived at the upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub method: String,
    /// Path with query string.
    pub path: String,
    /// `HTTP/1.1` or `HTTP/2.0`.
    pub version: String,
    /// Lower-case names, lossy UTF-8 values, duplicates kept.
    pub headers: Vec<(String, String)>,
}

impl Recorded {
    /// First value of a header (names are case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// All values of a header, in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

#[derive(Default)]
struct State {
    requests: Mutex<Vec<Recorded>>,
    log_requests: bool,
    /// `x-upstream-*` headers applied to every request (see [`Upstream::set_behaviour`]).
    behaviour: Mutex<Vec<(HeaderName, HeaderValue)>>,
    /// Requests being handled now, and the most at once (see [`Upstream::max_concurrent`]).
    active: AtomicUsize,
    max_active: AtomicUsize,
    /// Requests in progress by `x-upstream-call-id`, and the ids whose caller gave up
    /// ([`Upstream::call_ender`]).
    calls: Mutex<HashMap<String, Arc<AtomicBool>>>,
    given_up: Mutex<HashSet<String>>,
}

/// Counts a request as in progress from its arrival until its handler ends or is dropped (hyper drops
/// it when an h2 peer resets the stream), or until its caller gave up, whichever comes first.
struct Active {
    state: Arc<State>,
    id: Option<String>,
    /// Already taken off the count (or never counted).
    ended: Arc<AtomicBool>,
}

impl Active {
    fn start(state: &Arc<State>, id: Option<String>) -> Active {
        let ended = Arc::new(AtomicBool::new(false));
        if let Some(id) = &id {
            // Given up before it arrived: it never counts.
            if lock(&state.given_up).contains(id) {
                ended.store(true, Ordering::SeqCst);
                return Active {
                    state: state.clone(),
                    id: None,
                    ended,
                };
            }
            lock(&state.calls).insert(id.clone(), ended.clone());
        }
        let now = state.active.fetch_add(1, Ordering::SeqCst) + 1;
        state.max_active.fetch_max(now, Ordering::SeqCst);
        Active {
            state: state.clone(),
            id,
            ended,
        }
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        if let Some(id) = &self.id {
            lock(&self.state.calls).remove(id);
        }
        if !self.ended.swap(true, Ordering::SeqCst) {
            self.state.active.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl State {
    fn requests(&self) -> MutexGuard<'_, Vec<Recorded>> {
        // A panic while holding the lock cannot leave the Vec half-written; keep serving.
        self.requests.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn behaviour(&self) -> MutexGuard<'_, Vec<(HeaderName, HeaderValue)>> {
        self.behaviour.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The running upstream; stops serving (all connections dropped) when dropped.
pub struct Upstream {
    port: u16,
    state: Arc<State>,
    // Dropping the sender wakes every task's `changed()`, which ends it.
    _shutdown: watch::Sender<()>,
}

impl Upstream {
    /// Serves on 127.0.0.1 with an ephemeral port.
    pub async fn start() -> Upstream {
        Self::bind(SocketAddr::from(([127, 0, 0, 1], 0)), false)
            .await
            .expect("bind upstream on 127.0.0.1:0")
    }

    /// Serves on 127.0.0.1:`port` and logs one line per request to stderr (for `demo-upstream`).
    pub async fn start_on(port: u16) -> std::io::Result<Upstream> {
        Self::bind(SocketAddr::from(([127, 0, 0, 1], port)), true).await
    }

    /// Serves on `addr`; `log_requests` prints one line per request to stderr.
    pub async fn bind(addr: SocketAddr, log_requests: bool) -> std::io::Result<Upstream> {
        let listener = TcpListener::bind(addr).await?;
        let port = listener.local_addr()?.port();
        let state = Arc::new(State {
            requests: Mutex::new(Vec::new()),
            log_requests,
            behaviour: Mutex::new(Vec::new()),
            active: AtomicUsize::new(0),
            max_active: AtomicUsize::new(0),
            calls: Mutex::new(HashMap::new()),
            given_up: Mutex::new(HashSet::new()),
        });
        let (tx, rx) = watch::channel(());
        tokio::spawn(accept_loop(listener, state.clone(), rx));
        Ok(Upstream {
            port,
            state,
            _shutdown: tx,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.requests().clone()
    }

    /// The most recent request, if any.
    pub fn last(&self) -> Option<Recorded> {
        self.state.requests().last().cloned()
    }

    pub fn count(&self) -> usize {
        self.state.requests().len()
    }

    /// Requests whose path starts with `prefix`.
    pub fn count_path(&self, prefix: &str) -> usize {
        self.state
            .requests()
            .iter()
            .filter(|r| r.path.starts_with(prefix))
            .count()
    }

    pub fn clear(&self) {
        self.state.requests().clear();
    }

    /// The most requests this upstream handled at once (from arrival until the response headers, or
    /// until the peer gave up on an h2 stream), since it started.
    pub fn max_concurrent(&self) -> usize {
        self.state.max_active.load(Ordering::SeqCst)
    }

    /// Requests being handled now.
    pub fn active(&self) -> usize {
        self.state.active.load(Ordering::SeqCst)
    }

    /// A function a client calls with a request's `x-upstream-call-id` when it gives up on the
    /// request: from then on the request no longer counts in [`Upstream::max_concurrent`] (and one
    /// that arrives later never does). A proxy frees its own resources for a call only after its
    /// client gave up, but tells the upstream later still (a reset on its way): this lets a test count
    /// exactly what a proxy's concurrency limit promises.
    pub fn call_ender(&self) -> impl Fn(&str) + Send + Sync + 'static {
        let state = self.state.clone();
        move |id: &str| {
            lock(&state.given_up).insert(id.to_string());
            let ended = lock(&state.calls).get(id).cloned();
            if let Some(ended) = ended {
                if !ended.swap(true, Ordering::SeqCst) {
                    state.active.fetch_sub(1, Ordering::SeqCst);
                }
            }
        }
    }

    /// From now on every request behaves as if it carried `headers` (`x-upstream-status`,
    /// `x-upstream-delay-ms`, `x-upstream-action`...), which replace its own headers of the same
    /// names; an empty slice makes the upstream healthy again. For load tests that flip the upstream
    /// between healthy and failing without the clients knowing. What is recorded stays what arrived.
    pub fn set_behaviour(&self, headers: &[(&str, &str)]) {
        let parsed = headers
            .iter()
            .map(|(n, v)| {
                (
                    HeaderName::from_bytes(n.as_bytes()).expect("header name"),
                    HeaderValue::from_str(v).expect("header value"),
                )
            })
            .collect();
        *self.state.behaviour() = parsed;
    }

    /// Waits until at least `n` requests arrived; false on timeout. For requests that a filter
    /// sends on its own (side calls), which the test cannot await directly.
    pub async fn wait_count(&self, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.count() >= n {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<State>, mut shutdown: watch::Receiver<()>) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => return,
        };
        let Ok((stream, _)) = accepted else {
            // EMFILE and friends: back off instead of spinning.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        let mut shutdown = shutdown.clone();
        tokio::spawn(async move {
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let service = hyper::service::service_fn(move |req| handle(req, state.clone()));
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = conn => {}
                _ = shutdown.changed() => {}
            }
        });
    }
}

/// Service error used to abort a connection (h1) or reset a stream (h2) instead of answering.
#[derive(Debug)]
pub(crate) struct Abort;

impl fmt::Display for Abort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("upstream aborted on request")
    }
}

impl std::error::Error for Abort {}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

fn header_num<T: std::str::FromStr>(headers: &HeaderMap, name: &str) -> Option<T> {
    header_str(headers, name).and_then(|v| v.parse().ok())
}

/// Lower-case name / lossy value pairs; hyper's HeaderMap groups repeated names together.
pub(crate) fn header_pairs(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

async fn handle(req: Request<Incoming>, state: Arc<State>) -> Result<Response<UpBody>, Abort> {
    let id = header_str(req.headers(), "x-upstream-call-id").map(str::to_string);
    let _active = Active::start(&state, id);
    let version = format!("{:?}", req.version());
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let authority = req
        .uri()
        .authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| header_str(req.headers(), "host").map(str::to_string));
    let recorded = Recorded {
        method: req.method().as_str().to_string(),
        path,
        version,
        headers: header_pairs(req.headers()),
    };
    if state.log_requests {
        eprintln!(
            "{} {} {} ({} headers)",
            recorded.method,
            recorded.path,
            recorded.version,
            recorded.headers.len()
        );
    }
    // Recorded before any delay or hang, so tests can count requests that never get an answer.
    state.requests().push(recorded.clone());

    let mut h = req.headers().clone();
    for (name, value) in state.behaviour().iter() {
        h.insert(name.clone(), value.clone());
    }
    if let Some(ms) = header_num::<u64>(&h, "x-upstream-delay-ms") {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    match header_str(&h, "x-upstream-action") {
        // Pending forever; hyper drops this future when the connection goes away.
        Some("hang") => std::future::pending::<()>().await,
        Some("reset") => return Err(Abort),
        _ => {}
    }

    // Read the whole request body so the echo can report its size and h1 keep-alive stays sane.
    let body_size = match req.into_body().collect().await {
        Ok(c) => c.to_bytes().len(),
        Err(_) => return Err(Abort),
    };
    let status = header_num::<u16>(&h, "x-upstream-status")
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::OK);
    let echo = serde_json::json!({
        "method": recorded.method,
        "path": recorded.path,
        "version": recorded.version,
        "authority": authority,
        "headers": recorded.headers.iter().map(|(n, v)| [n, v]).collect::<Vec<_>>(),
        "body_size": body_size,
    });
    let echo = Bytes::from(echo.to_string());

    let content_type = header_str(&h, "content-type").unwrap_or("");
    let is_grpc = content_type.starts_with("application/grpc")
        && !content_type.starts_with("application/grpc-web");

    let mut resp = if header_str(&h, "x-upstream-action") == Some("close") {
        let mut r = Response::new(UpBody::Broken {
            first: Some(Bytes::from_static(b"partial")),
            // Without a pause hyper would abort before flushing the headers (h1 writes them
            // together with the first chunk), and Envoy would see a reset before headers.
            pause: Box::pin(tokio::time::sleep(Duration::from_millis(100))),
        });
        r.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        r
    } else if is_grpc {
        grpc_response(&h, echo)
    } else if let Some(n) = header_num::<u64>(&h, "x-upstream-body-size") {
        let mut r = Response::new(UpBody::Pattern {
            remaining: n,
            offset: 0,
        });
        r.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        r
    } else {
        let mut r = Response::new(UpBody::Full(Some(echo)));
        r.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        r
    };
    if !is_grpc || h.contains_key("x-upstream-status") {
        *resp.status_mut() = status;
    }
    for v in h.get_all("x-upstream-set-header") {
        let Ok(v) = v.to_str() else { continue };
        let Some((name, value)) = v.split_once(':') else {
            continue;
        };
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.trim().as_bytes()),
            HeaderValue::from_str(value.trim()),
        ) {
            resp.headers_mut().append(n, v);
        }
    }
    Ok(resp)
}

fn grpc_response(h: &HeaderMap, echo: Bytes) -> Response<UpBody> {
    let code = header_num::<u32>(h, "x-upstream-grpc-status").unwrap_or(0);
    let message = header_str(h, "x-upstream-grpc-message")
        .map(str::to_string)
        .unwrap_or_else(|| {
            if code == 0 {
                String::new()
            } else {
                format!("upstream grpc status {code}")
            }
        });
    let mut status_headers = HeaderMap::new();
    status_headers.insert("grpc-status", HeaderValue::from(code));
    if !message.is_empty() {
        if let Ok(v) = HeaderValue::from_str(&message) {
            status_headers.insert("grpc-message", v);
        }
    }
    let trailers_only = header_str(h, "x-upstream-grpc-in") == Some("headers");
    let mut resp = if trailers_only {
        let mut r = Response::new(UpBody::Full(None));
        r.headers_mut().extend(status_headers);
        r
    } else {
        Response::new(UpBody::Grpc {
            data: Some(grpc_frame(&echo)),
            trailers: Some(status_headers),
        })
    };
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    resp
}

/// gRPC length-prefixed message: flag byte 0 (uncompressed), 4-byte big-endian length, payload.
pub fn grpc_frame(message: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(message.len() + 5);
    out.push(0);
    out.extend_from_slice(
        &u32::try_from(message.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    out.extend_from_slice(message);
    Bytes::from(out)
}

/// Response bodies the upstream can send.
pub(crate) enum UpBody {
    /// One chunk (or none: an empty body that ends with the headers, e.g. gRPC trailers-only).
    Full(Option<Bytes>),
    /// `remaining` bytes of a recognisable pattern (`a`..`z` by offset), CHUNK bytes per frame.
    Pattern { remaining: u64, offset: u64 },
    /// One data frame, then trailers.
    Grpc {
        data: Option<Bytes>,
        trailers: Option<HeaderMap>,
    },
    /// One data frame, a pause, then an error: hyper aborts the connection (h1) or resets the
    /// stream (h2).
    Broken {
        first: Option<Bytes>,
        pause: Pin<Box<tokio::time::Sleep>>,
    },
}

impl Body for UpBody {
    type Data = Bytes;
    type Error = Abort;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Abort>>> {
        let frame = match self.get_mut() {
            UpBody::Full(data) => data.take().map(|d| Ok(Frame::data(d))),
            UpBody::Pattern { remaining, offset } => {
                if *remaining == 0 {
                    None
                } else {
                    let n = (*remaining).min(CHUNK as u64);
                    let chunk: Vec<u8> = (*offset..*offset + n)
                        .map(|i| b'a' + (i % 26) as u8)
                        .collect();
                    *remaining -= n;
                    *offset += n;
                    Some(Ok(Frame::data(Bytes::from(chunk))))
                }
            }
            UpBody::Grpc { data, trailers } => match data.take() {
                Some(d) => Some(Ok(Frame::data(d))),
                None => trailers.take().map(|t| Ok(Frame::trailers(t))),
            },
            UpBody::Broken { first, pause } => match first.take() {
                Some(d) => Some(Ok(Frame::data(d))),
                None => match pause.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(()) => Some(Err(Abort)),
                },
            },
        };
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpBody::Full(d) => d.is_none(),
            UpBody::Pattern { remaining, .. } => *remaining == 0,
            UpBody::Grpc { data, trailers } => data.is_none() && trailers.is_none(),
            UpBody::Broken { .. } => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            // Exact so h1 sends content-length; streamed bodies stay chunked on purpose.
            UpBody::Full(d) => SizeHint::with_exact(d.as_ref().map_or(0, |d| d.len() as u64)),
            _ => SizeHint::default(),
        }
    }
}
