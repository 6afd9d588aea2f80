//! Load generation: the requests, the client connections, and the two ways of sending on them:
//! a closed loop for a fixed number of requests (cost table) and a paced load for a fixed time
//! (outage scenarios).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::client::conn::{http1 as h1, http2 as h2};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Request, StatusCode, Uri, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

use crate::stats::nanos;

/// Request target: a typical API path with a query string, which Envoy parses like any other.
pub const PATH: &str = "/api/v1/orders/4711?include=items";
const AUTHORITY: &str = "shop.example.internal";

/// Pause after opening the connections and before the CPU snapshot, so that Envoy has finished
/// accepting them (and, for h2, the SETTINGS exchange) and that work is not billed to requests.
const SETTLE: Duration = Duration::from_millis(30);

/// The circuit breaker's response header, recorded with every answer of the paced load.
pub const STATUS_HEADER: &str = "x-circuit-breaker";

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    H1,
    H2,
}

impl Proto {
    pub fn label(self) -> &'static str {
        match self {
            Proto::H1 => "HTTP/1.1",
            Proto::H2 => "HTTP/2 (h2c)",
        }
    }
}

/// The trace header a variant's requests carry.
#[derive(Clone, Copy)]
pub enum TraceHeader {
    /// W3C `traceparent`: what a trace-context-aware caller sends; nothing to convert.
    TraceParent,
    /// B3 single header: the filter extracts it and writes `traceparent`.
    B3,
}

impl TraceHeader {
    /// Header for request `i`. Every request gets its own trace, as real traffic does, so no
    /// layer can profit from seeing the same value again.
    pub fn header(self, i: u64) -> (&'static str, String, String) {
        let trace = format!("{:016x}{:016x}", mix(i), mix(i ^ 0x5bd1_e995));
        let span = format!("{:016x}", mix(!i) | 1);
        match self {
            TraceHeader::TraceParent => ("traceparent", format!("00-{trace}-{span}-01"), trace),
            TraceHeader::B3 => ("b3", format!("{trace}-{span}-1"), trace),
        }
    }
}

/// splitmix64: cheap, well-spread ids from a counter.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// What one listener's load looks like on one protocol.
pub struct Load {
    pub proto: Proto,
    /// The listener's address: 127.0.0.1, or a fleet sidecar's in its network namespace.
    pub ip: IpAddr,
    pub port: u16,
    trace: TraceHeader,
    uri: Uri,
    /// Headers of every request except the trace header. No `x-request-id`: Envoy generates one,
    /// as it does for real edge traffic, and that is part of its per-request work.
    pub headers: HeaderMap,
}

impl Load {
    pub fn new(proto: Proto, port: u16, trace: TraceHeader) -> Result<Load, String> {
        let uri = match proto {
            // h1 sends the origin form and a Host header; h2 takes :authority from the URI.
            Proto::H1 => PATH.to_string(),
            Proto::H2 => format!("http://{AUTHORITY}{PATH}"),
        };
        let uri = uri.parse().map_err(|e| format!("uri {uri}: {e}"))?;
        let mut headers = HeaderMap::new();
        if proto == Proto::H1 {
            headers.insert(header::HOST, HeaderValue::from_static(AUTHORITY));
        }
        for (name, value) in [
            (
                header::USER_AGENT,
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) \
                 Chrome/126.0.0.0 Safari/537.36",
            ),
            (header::ACCEPT, "application/json, text/plain, */*"),
            (header::ACCEPT_ENCODING, "gzip, deflate, br"),
            (header::ACCEPT_LANGUAGE, "en-US,en;q=0.9"),
        ] {
            headers.insert(name, HeaderValue::from_static(value));
        }
        Ok(Load {
            proto,
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port,
            trace,
            uri,
            headers,
        })
    }

    /// The same load sent to `ip` instead of 127.0.0.1.
    pub fn at(mut self, ip: IpAddr) -> Load {
        self.ip = ip;
        self
    }

    fn request(&self, i: u64) -> Request<Empty<Bytes>> {
        let mut req = Request::new(Empty::new());
        *req.uri_mut() = self.uri.clone();
        *req.version_mut() = match self.proto {
            Proto::H1 => Version::HTTP_11,
            Proto::H2 => Version::HTTP_2,
        };
        *req.headers_mut() = self.headers.clone();
        let (name, value, _) = self.trace.header(i);
        if let Ok(value) = HeaderValue::from_str(&value) {
            req.headers_mut().insert(name, value);
        }
        req
    }
}

/// One client connection; the driver task runs until the sender is dropped.
pub enum Conn {
    H1(h1::SendRequest<Empty<Bytes>>),
    H2(h2::SendRequest<Empty<Bytes>>),
}

impl Conn {
    async fn open(ip: IpAddr, port: u16, proto: Proto) -> Result<Conn, String> {
        let stream = TcpStream::connect((ip, port))
            .await
            .map_err(|e| format!("connect {ip}:{port}: {e}"))?;
        // Like any real client of small requests: without it Nagle delays every other write.
        stream
            .set_nodelay(true)
            .map_err(|e| format!("TCP_NODELAY: {e}"))?;
        let io = TokioIo::new(stream);
        match proto {
            Proto::H1 => {
                let (sender, conn) = h1::handshake(io)
                    .await
                    .map_err(|e| format!("h1 handshake: {e}"))?;
                tokio::spawn(conn);
                Ok(Conn::H1(sender))
            }
            Proto::H2 => {
                let (sender, conn) = h2::handshake(TokioExecutor::new(), io)
                    .await
                    .map_err(|e| format!("h2 handshake: {e}"))?;
                tokio::spawn(conn);
                Ok(Conn::H2(sender))
            }
        }
    }

    async fn send(
        &mut self,
        req: Request<Empty<Bytes>>,
    ) -> Result<hyper::Response<Incoming>, String> {
        match self {
            Conn::H1(s) => {
                s.ready()
                    .await
                    .map_err(|e| format!("HTTP/1.1 connection: {e}"))?;
                s.send_request(req)
                    .await
                    .map_err(|e| format!("HTTP/1.1 request: {e}"))
            }
            Conn::H2(s) => {
                s.ready()
                    .await
                    .map_err(|e| format!("HTTP/2 connection: {e}"))?;
                s.send_request(req)
                    .await
                    .map_err(|e| format!("HTTP/2 request: {e}"))
            }
        }
    }
}

/// `n` fresh keep-alive connections for `load`, once Envoy has settled them (see [`SETTLE`]).
pub async fn open_connections(load: &Load, n: usize) -> Result<Vec<Conn>, String> {
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        conns.push(Conn::open(load.ip, load.port, load.proto).await?);
    }
    tokio::time::sleep(SETTLE).await;
    Ok(conns)
}

/// How many of something went wrong, and the first one in words.
#[derive(Clone, Default)]
pub struct Failures {
    pub count: u64,
    first: Option<String>,
}

impl Failures {
    /// Counts one more; `describe` runs only for the first.
    fn add(&mut self, describe: impl FnOnce() -> String) {
        self.count += 1;
        if self.first.is_none() {
            self.first = Some(describe());
        }
    }

    fn merge(&mut self, other: Failures) {
        self.count += other.count;
        if self.first.is_none() {
            self.first = other.first;
        }
    }

    pub fn first(&self) -> &str {
        self.first.as_deref().unwrap_or("?")
    }
}

/// What the closed-loop load saw.
#[derive(Default)]
pub struct Tally {
    pub latencies_ns: Vec<u64>,
    pub non_200: Failures,
}

impl Tally {
    pub fn merge(&mut self, other: Tally) {
        self.latencies_ns.extend(other.latencies_ns);
        self.non_200.merge(other.non_200);
    }
}

/// Sends requests on one connection, one at a time, until the shared counter reaches `n`: the
/// batch is exactly `n` requests however the connections share it.
pub async fn closed_loop(
    mut conn: Conn,
    load: Arc<Load>,
    next: Arc<AtomicU64>,
    n: u64,
) -> Result<Tally, String> {
    let mut tally = Tally::default();
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= n {
            return Ok(tally);
        }
        let req = load.request(i);
        let start = Instant::now();
        let resp = conn.send(req).await?;
        let status = resp.status();
        // The whole body, as a real client reads it; keep-alive needs it consumed anyway.
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("reading body after {status}: {e}"))?
            .to_bytes();
        tally.latencies_ns.push(nanos(start.elapsed()));
        if status != StatusCode::OK {
            tally.non_200.add(|| {
                let text = String::from_utf8_lossy(&body);
                let text: String = text.chars().take(200).collect();
                format!("{status}: {text}")
            });
        }
    }
}

/// One answered request of the paced load.
pub struct Sample {
    /// When the whole response was in, from the start of the load.
    pub done: Duration,
    pub latency: Duration,
    pub status: u16,
    /// The [`STATUS_HEADER`] response header.
    pub breaker_header: Option<String>,
    /// The fallback filter's `x-fallback` response header.
    pub fallback_header: Option<String>,
    /// Whether the answer came from the outage dependency ([`crate::dependency::DEPENDENCY_HEADER`]).
    pub from_dependency: bool,
    /// Whether it carries `x-envoy-overloaded` (Envoy's own circuit breaker overflowed, or a filter
    /// asked callers not to retry).
    pub overloaded: bool,
    /// The start of the body (64 bytes at most): tells Envoy's own replies apart.
    pub body_head: String,
}

impl Sample {
    /// When the request was sent, from the start of the load.
    pub fn sent(&self) -> Duration {
        self.done.saturating_sub(self.latency)
    }
}

/// What the paced load saw.
#[derive(Default)]
pub struct PacedTally {
    pub samples: Vec<Sample>,
    pub transport_errors: Failures,
}

impl PacedTally {
    pub fn merge(&mut self, other: PacedTally) {
        self.samples.extend(other.samples);
        self.transport_errors.merge(other.transport_errors);
    }
}

/// Paced load on one connection until `end`: a request at every `interval` from `first`, or as soon
/// as the previous answer is in when that is later (a caller held up by slow answers sends less, as a
/// real one would). A transport error is counted and the connection reopened.
pub async fn paced(
    conn: Conn,
    load: Arc<Load>,
    start: Instant,
    first: Instant,
    end: Instant,
    interval: Duration,
) -> PacedTally {
    let mut tally = PacedTally::default();
    let mut conn = Some(conn);
    let mut next = first;
    let mut i = 0u64;
    loop {
        if next >= end {
            return tally;
        }
        if next > Instant::now() {
            tokio::time::sleep_until(next.into()).await;
        }
        let sent = Instant::now();
        if sent >= end {
            return tally;
        }
        // On schedule: keep the slots. Behind: no burst to catch up.
        next = (next + interval).max(sent);
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match Conn::open(load.ip, load.port, load.proto).await {
                Ok(c) => conn.insert(c),
                Err(e) => {
                    tally.transport_errors.add(|| e);
                    continue;
                }
            },
        };
        i += 1;
        let answer = async {
            let resp = c.send(load.request(i)).await?;
            let status = resp.status().as_u16();
            let header = |name: &str| {
                resp.headers()
                    .get(name)
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            };
            let breaker_header = header(STATUS_HEADER);
            let fallback_header = header("x-fallback");
            let from_dependency = header(crate::dependency::DEPENDENCY_HEADER).is_some();
            let overloaded = header("x-envoy-overloaded").is_some();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("reading body after {status}: {e}"))?
                .to_bytes();
            let body_head = String::from_utf8_lossy(&body[..body.len().min(64)]).into_owned();
            // Times are set once the whole answer is in.
            Ok::<_, String>(Sample {
                done: Duration::ZERO,
                latency: Duration::ZERO,
                status,
                breaker_header,
                fallback_header,
                from_dependency,
                overloaded,
                body_head,
            })
        };
        match answer.await {
            Ok(sample) => {
                let now = Instant::now();
                tally.samples.push(Sample {
                    done: now - start,
                    latency: now - sent,
                    ..sample
                });
            }
            Err(e) => {
                tally.transport_errors.add(|| e);
                conn = None;
            }
        }
    }
}
