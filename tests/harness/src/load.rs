//! A steady load for soak tests: requests started at a fixed rate (open loop, so a slow or failing
//! upstream does not slow the load down) over keep-alive connections, HTTP/1.1 from a pool and h2c
//! multiplexed over a few shared connections, with what became of every request recorded.
//!
//! ```no_run
//! # async fn demo(port: u16) {
//! use e2e_harness::load::{Load, Proto, Spec};
//! let load = Load::start(200.0, move |seq| Spec::get(port, "/", if seq % 4 == 3 { Proto::H2 } else { Proto::H1 }));
//! tokio::time::sleep(std::time::Duration::from_secs(5)).await;
//! let report = load.stop().await;
//! assert!(report.outcomes.iter().all(|o| o.result.is_ok()));
//! # }
//! ```

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::{http1 as h1, http2 as h2};
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Request, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use crate::client::CLIENT_TIMEOUT;

/// HTTP/1.1 (a pooled keep-alive connection per request in flight) or h2c (shared connections).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Proto {
    H1,
    H2,
}

/// h2c connections per port; requests are spread over them.
const H2_CONNECTIONS: usize = 2;

/// One request of the load.
#[derive(Debug, Clone)]
pub struct Spec {
    pub port: u16,
    pub path: String,
    pub proto: Proto,
    pub headers: Vec<(String, String)>,
}

impl Spec {
    pub fn get(port: u16, path: impl Into<String>, proto: Proto) -> Spec {
        Spec {
            port,
            path: path.into(),
            proto,
            headers: Vec::new(),
        }
    }

    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Spec {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// A complete response: the status and the headers soak tests classify by.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// The body is the upstream's echo (a JSON object with `method`), so the upstream answered.
    pub upstream_echo: bool,
    pub body: Bytes,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A request without a complete response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The status line and headers arrived, then the connection or stream was cut.
    Truncated { status: u16, error: String },
    /// No response at all: connect, send or read of the headers failed.
    Transport(String),
    /// Nothing complete within [`CLIENT_TIMEOUT`].
    Timeout,
}

/// What became of one request.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub seq: u64,
    pub spec: Spec,
    /// Since the load started.
    pub started: Duration,
    pub finished: Duration,
    pub result: Result<Answer, Failure>,
}

/// Every request's outcome, in start order, and the connections the load opened.
#[derive(Debug)]
pub struct Report {
    pub outcomes: Vec<Outcome>,
    pub connections: HashMap<Proto, u64>,
    pub elapsed: Duration,
}

/// A running load; [`Load::stop`] stops starting requests and waits for those in flight.
pub struct Load {
    stop: Arc<AtomicBool>,
    started: Instant,
    sent: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<(Vec<Outcome>, HashMap<Proto, u64>)>,
}

impl Load {
    /// Starts `rate` requests per second; request `seq` (0, 1, ...) is `spec(seq)`.
    pub fn start(rate: f64, spec: impl Fn(u64) -> Spec + Send + Sync + 'static) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let task = tokio::spawn(run(rate, spec, stop.clone(), sent.clone(), started));
        Load {
            stop,
            started,
            sent,
            task,
        }
    }

    /// Requests started so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Time since the load started (the clock of [`Outcome::started`]).
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    pub async fn stop(self) -> Report {
        self.stop.store(true, Ordering::Relaxed);
        let elapsed = self.started.elapsed();
        let (mut outcomes, connections) = self.task.await.expect("load task");
        outcomes.sort_by_key(|o| o.seq);
        Report {
            outcomes,
            connections,
            elapsed,
        }
    }
}

async fn run(
    rate: f64,
    spec: impl Fn(u64) -> Spec + Send + Sync + 'static,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    started: Instant,
) -> (Vec<Outcome>, HashMap<Proto, u64>) {
    let conns = Arc::new(Connections::default());
    let mut tasks = JoinSet::new();
    let mut outcomes = Vec::new();
    let period = Duration::from_secs_f64(1.0 / rate);
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        // On schedule from the start: a late tick is made up at once, so the rate holds on average.
        let due = started + period.mul_f64(seq as f64);
        tokio::time::sleep_until(due.into()).await;
        let s = spec(seq);
        let conns = conns.clone();
        tasks.spawn(async move {
            let t0 = started.elapsed();
            let result = match tokio::time::timeout(CLIENT_TIMEOUT, conns.send(&s)).await {
                Ok(r) => r,
                Err(_) => Err(Failure::Timeout),
            };
            Outcome {
                seq,
                spec: s,
                started: t0,
                finished: started.elapsed(),
                result,
            }
        });
        seq += 1;
        sent.store(seq, Ordering::Relaxed);
        // Collect finished tasks as we go, so the set stays small.
        while let Some(done) = tasks.try_join_next() {
            outcomes.push(done.expect("request task"));
        }
    }
    while let Some(done) = tasks.join_next().await {
        outcomes.push(done.expect("request task"));
    }
    let opened = conns.opened.lock().unwrap().clone();
    (outcomes, opened)
}

type H1Sender = h1::SendRequest<Full<Bytes>>;
type H2Sender = h2::SendRequest<Full<Bytes>>;
/// A port's h2c connections (`None` until first used or after it closed) and the next to use.
type H2Slots = (Vec<Option<H2Sender>>, usize);

#[derive(Default)]
struct Connections {
    /// Idle HTTP/1.1 connections by port.
    idle_h1: Mutex<HashMap<u16, Vec<H1Sender>>>,
    /// Shared h2c connections by port, and the next one to use.
    h2: tokio::sync::Mutex<HashMap<u16, H2Slots>>,
    opened: Mutex<HashMap<Proto, u64>>,
}

impl Connections {
    async fn send(&self, spec: &Spec) -> Result<Answer, Failure> {
        match spec.proto {
            Proto::H1 => self.send_h1(spec).await,
            Proto::H2 => self.send_h2(spec).await,
        }
    }

    fn count(&self, proto: Proto) {
        *self.opened.lock().unwrap().entry(proto).or_insert(0) += 1;
    }

    async fn connect(&self, port: u16) -> Result<TokioIo<TcpStream>, Failure> {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| Failure::Transport(format!("connect 127.0.0.1:{port}: {e}")))?;
        let _ = stream.set_nodelay(true);
        Ok(TokioIo::new(stream))
    }

    async fn send_h1(&self, spec: &Spec) -> Result<Answer, Failure> {
        let mut sender = loop {
            let idle = self
                .idle_h1
                .lock()
                .unwrap()
                .get_mut(&spec.port)
                .and_then(Vec::pop);
            match idle {
                // A connection the server closed meanwhile is dropped, not used.
                Some(mut s) => {
                    if s.ready().await.is_ok() {
                        break s;
                    }
                }
                None => {
                    let io = self.connect(spec.port).await?;
                    let (s, conn) = h1::handshake(io)
                        .await
                        .map_err(|e| Failure::Transport(format!("h1 handshake: {e}")))?;
                    tokio::spawn(conn);
                    self.count(Proto::H1);
                    break s;
                }
            }
        };
        let answer = exchange(sender.send_request(request(spec, Version::HTTP_11)?)).await?;
        // Back to the pool only after a complete response on a connection still open.
        if !sender.is_closed() {
            self.idle_h1
                .lock()
                .unwrap()
                .entry(spec.port)
                .or_default()
                .push(sender);
        }
        Ok(answer)
    }

    async fn send_h2(&self, spec: &Spec) -> Result<Answer, Failure> {
        let mut sender = {
            let mut all = self.h2.lock().await;
            let (conns, next) = all
                .entry(spec.port)
                .or_insert_with(|| ((0..H2_CONNECTIONS).map(|_| None).collect(), 0));
            let i = *next % H2_CONNECTIONS;
            *next += 1;
            let slot = &mut conns[i];
            match slot.as_ref().filter(|s| !s.is_closed()) {
                Some(s) => s.clone(),
                None => {
                    let io = self.connect(spec.port).await?;
                    let (s, conn) = h2::handshake(TokioExecutor::new(), io)
                        .await
                        .map_err(|e| Failure::Transport(format!("h2 handshake: {e}")))?;
                    tokio::spawn(conn);
                    self.count(Proto::H2);
                    *slot = Some(s.clone());
                    s
                }
            }
        };
        sender
            .ready()
            .await
            .map_err(|e| Failure::Transport(format!("h2 connection: {e}")))?;
        exchange(sender.send_request(request(spec, Version::HTTP_2)?)).await
    }
}

fn request(spec: &Spec, version: Version) -> Result<Request<Full<Bytes>>, Failure> {
    let host = format!("localhost:{}", spec.port);
    let uri = if version == Version::HTTP_2 {
        format!("http://{host}{}", spec.path)
    } else {
        spec.path.clone()
    };
    let mut req = Request::builder()
        .method("GET")
        .uri(&uri)
        .version(version)
        .body(Full::new(Bytes::new()))
        .map_err(|e| Failure::Transport(format!("request {uri}: {e}")))?;
    let map = req.headers_mut();
    if version == Version::HTTP_11 {
        map.insert(hyper::header::HOST, HeaderValue::from_str(&host).unwrap());
    }
    for (n, v) in &spec.headers {
        map.append(
            HeaderName::from_bytes(n.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    Ok(req)
}

async fn exchange(
    response: impl std::future::Future<Output = hyper::Result<hyper::Response<hyper::body::Incoming>>>,
) -> Result<Answer, Failure> {
    let resp = response
        .await
        .map_err(|e| Failure::Transport(format!("{e:?}")))?;
    let (parts, body) = resp.into_parts();
    let status = parts.status.as_u16();
    let body = body
        .collect()
        .await
        .map_err(|e| Failure::Truncated {
            status,
            error: format!("{e:?}"),
        })?
        .to_bytes();
    let upstream_echo = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .is_some_and(|v| v.get("method").is_some());
    Ok(Answer {
        status,
        headers: crate::upstream::header_pairs(&parts.headers),
        upstream_echo,
        body,
    })
}
