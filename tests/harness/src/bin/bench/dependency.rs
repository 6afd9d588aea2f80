//! The failing dependency of the outage scenarios: one small HTTP server per variant (its own port, so
//! its own count of requests that reached it), all following one mode that the scenario's timeline
//! switches. Every answer it sends carries [`DEPENDENCY_HEADER`], so the bench can tell them from
//! Envoy's and the filters' own replies.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpSocket};
use tokio::task::JoinHandle;

/// Response header on every answer of the dependency.
pub const DEPENDENCY_HEADER: &str = "x-dependency";
/// How long a hanging request waits before answering: well past the 250 ms route timeout.
const HANG: Duration = Duration::from_secs(2);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    Healthy,
    /// Every request answered 503.
    Errors,
    /// Every request answered only after [`HANG`].
    Hang,
    /// The listeners are closed: connections are refused.
    Refused,
    /// Each request fails (503) with the given probability in per mille, independently.
    Partial(u16),
}

impl Mode {
    fn encode(self) -> u8 {
        match self {
            Mode::Healthy => 0,
            Mode::Errors => 1,
            Mode::Hang => 2,
            Mode::Refused => 3,
            Mode::Partial(_) => 4,
        }
    }
}

struct Shared {
    mode: AtomicU8,
    partial_per_mille: AtomicU64,
    /// Counter behind the partial mode's random draws.
    draws: AtomicU64,
}

/// One variant's port and counters.
struct Port {
    port: u16,
    /// Requests that arrived while the mode was failing.
    reached_failing: AtomicU64,
    accept: Mutex<Option<JoinHandle<()>>>,
}

pub struct Dependency {
    shared: Arc<Shared>,
    ports: Vec<Arc<Port>>,
    mode: Mutex<Mode>,
}

impl Dependency {
    /// `n` servers on fresh loopback ports, healthy.
    pub async fn start(n: usize) -> Result<Dependency, String> {
        let shared = Arc::new(Shared {
            mode: AtomicU8::new(0),
            partial_per_mille: AtomicU64::new(0),
            draws: AtomicU64::new(0),
        });
        let mut ports = Vec::with_capacity(n);
        for _ in 0..n {
            let listener = listen(0)?;
            let port = listener
                .local_addr()
                .map_err(|e| format!("local_addr: {e}"))?
                .port();
            let p = Arc::new(Port {
                port,
                reached_failing: AtomicU64::new(0),
                accept: Mutex::new(None),
            });
            let task = tokio::spawn(accept_loop(listener, shared.clone(), p.clone()));
            *p.accept.lock().unwrap() = Some(task);
            ports.push(p);
        }
        Ok(Dependency {
            shared,
            ports,
            mode: Mutex::new(Mode::Healthy),
        })
    }

    pub fn port(&self, i: usize) -> u16 {
        self.ports[i].port
    }

    pub fn reached_failing(&self, i: usize) -> u64 {
        self.ports[i].reached_failing.load(Ordering::Relaxed)
    }

    /// Switches every server to `mode`. Into `Refused`: the listeners close and so does every open
    /// connection (the process died); out of it: the same ports listen again.
    pub fn set(&self, mode: Mode) -> Result<(), String> {
        let mut current = self.mode.lock().unwrap();
        if let Mode::Partial(pm) = mode {
            self.shared
                .partial_per_mille
                .store(u64::from(pm), Ordering::Relaxed);
        }
        self.shared.mode.store(mode.encode(), Ordering::Relaxed);
        if mode == Mode::Refused && *current != Mode::Refused {
            for p in &self.ports {
                if let Some(task) = p.accept.lock().unwrap().take() {
                    // Dropping the accept loop drops its connections' JoinSet: all sockets close.
                    task.abort();
                }
            }
        } else if mode != Mode::Refused && *current == Mode::Refused {
            for p in &self.ports {
                let listener = listen(p.port)?;
                let task = tokio::spawn(accept_loop(listener, self.shared.clone(), p.clone()));
                *p.accept.lock().unwrap() = Some(task);
            }
        }
        *current = mode;
        Ok(())
    }
}

impl Drop for Dependency {
    fn drop(&mut self) {
        for p in &self.ports {
            if let Some(task) = p.accept.lock().unwrap().take() {
                task.abort();
            }
        }
    }
}

/// A listener on 127.0.0.1:`port` (0: any), reusable right after the previous one on it closed.
fn listen(port: u16) -> Result<TcpListener, String> {
    let socket = TcpSocket::new_v4().map_err(|e| format!("socket: {e}"))?;
    socket
        .set_reuseaddr(true)
        .map_err(|e| format!("SO_REUSEADDR: {e}"))?;
    socket
        .bind(([127, 0, 0, 1], port).into())
        .map_err(|e| format!("bind 127.0.0.1:{port}: {e}"))?;
    socket
        .listen(1024)
        .map_err(|e| format!("listen 127.0.0.1:{port}: {e}"))
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, port: Arc<Port>) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let port = port.clone();
        // Finished connections are reaped as new ones come, so the set stays small.
        while conns.try_join_next().is_some() {}
        conns.spawn(async move {
            let service =
                hyper::service::service_fn(move |req| answer(req, shared.clone(), port.clone()));
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// splitmix64, for the partial mode's independent draws.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

async fn answer<B>(
    _req: Request<B>,
    shared: Arc<Shared>,
    port: Arc<Port>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let mode = shared.mode.load(Ordering::Relaxed);
    let fail = match mode {
        0 => false,
        2 => {
            port.reached_failing.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(HANG).await;
            false
        }
        4 => {
            port.reached_failing.fetch_add(1, Ordering::Relaxed);
            let draw = mix(shared.draws.fetch_add(1, Ordering::Relaxed)) % 1000;
            draw < shared.partial_per_mille.load(Ordering::Relaxed)
        }
        _ => {
            port.reached_failing.fetch_add(1, Ordering::Relaxed);
            true
        }
    };
    let (status, body) = if fail {
        (503, &b"{\"error\":\"dependency failed\"}"[..])
    } else {
        (
            200,
            &b"{\"order\":4711,\"items\":[{\"sku\":\"A-1\",\"qty\":2}]}"[..],
        )
    };
    let resp = Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header(DEPENDENCY_HEADER, "1")
        .body(Full::new(Bytes::from_static(body)))
        .unwrap();
    Ok(resp)
}
