//! The struggling service behind the dependency sidecar. It has a fixed number of workers: a request
//! waits (first come, first served) for a free worker, which holds it for the service time. Healthy,
//! that is [`HEALTHY_TIME`]; slow, ten times that, so the same workers serve a tenth of the requests
//! per second and anything offered beyond that queues up, as in a real service whose database slowed
//! down. Failing, it answers 503 at once. It counts what reaches it, by phase, and the most requests
//! it held at once (waiting or being served): the pile-up the protections are meant to prevent.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::dependency::DEPENDENCY_HEADER;

/// Workers of the service: requests it serves at once.
pub const WORKERS: usize = 16;
/// Service time of a healthy request.
pub const HEALTHY_TIME: Duration = Duration::from_millis(10);
/// How much slower the slow phase is.
pub const SLOWDOWN: u32 = 10;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Phase {
    Healthy,
    /// Every request takes [`SLOWDOWN`] times [`HEALTHY_TIME`] of a worker.
    Slow,
    /// Every request answered 503 at once.
    Failing,
}

impl Phase {
    const ALL: [Phase; 3] = [Phase::Healthy, Phase::Slow, Phase::Failing];

    fn index(self) -> usize {
        self as usize
    }
}

/// What the service saw in one phase.
#[derive(Clone, Copy, Default, Debug)]
pub struct PhaseCount {
    /// Requests that arrived.
    pub reached: u64,
    /// Most requests held at once (waiting for a worker or being served).
    pub peak: u64,
}

struct Shared {
    phase: AtomicU8,
    workers: Semaphore,
    held: AtomicU64,
    reached: [AtomicU64; 3],
    peak: [AtomicU64; 3],
    /// Arrivals per timeline bucket, from [`Service::begin`].
    arrivals: Mutex<(Option<Instant>, Vec<u32>)>,
    bucket: Duration,
}

pub struct Service {
    shared: Arc<Shared>,
    pub addr: SocketAddr,
    accept: JoinHandle<()>,
}

impl Service {
    /// Serves on `ip` (an ephemeral port), healthy; arrivals are counted in `bucket`-wide slots.
    pub async fn start(ip: IpAddr, bucket: Duration) -> Result<Service, String> {
        let listener = TcpListener::bind((ip, 0))
            .await
            .map_err(|e| format!("service: bind {ip}: {e}"))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("service: local_addr: {e}"))?;
        let shared = Arc::new(Shared {
            phase: AtomicU8::new(0),
            workers: Semaphore::new(WORKERS),
            held: AtomicU64::new(0),
            reached: Default::default(),
            peak: Default::default(),
            arrivals: Mutex::new((None, Vec::new())),
            bucket,
        });
        let accept = tokio::spawn(accept_loop(listener, shared.clone()));
        Ok(Service {
            shared,
            addr,
            accept,
        })
    }

    /// Starts the timeline of arrivals at `start`.
    pub fn begin(&self, start: Instant) {
        *self.shared.arrivals.lock().unwrap() = (Some(start), Vec::new());
    }

    pub fn set(&self, phase: Phase) {
        self.shared.phase.store(phase as u8, Ordering::Relaxed);
    }

    pub fn count(&self, phase: Phase) -> PhaseCount {
        PhaseCount {
            reached: self.shared.reached[phase.index()].load(Ordering::Relaxed),
            peak: self.shared.peak[phase.index()].load(Ordering::Relaxed),
        }
    }

    /// Arrivals per bucket since [`Self::begin`].
    pub fn arrivals(&self) -> Vec<u32> {
        self.shared.arrivals.lock().unwrap().1.clone()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        // Finished connections are reaped as new ones come, so the set stays small.
        while conns.try_join_next().is_some() {}
        conns.spawn(async move {
            let service = hyper::service::service_fn(move |req| answer(req, shared.clone()));
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn phase(shared: &Shared) -> Phase {
    Phase::ALL
        .get(usize::from(shared.phase.load(Ordering::Relaxed)))
        .copied()
        .unwrap_or(Phase::Healthy)
}

/// Counts a request as held until dropped, which also happens when the sidecar gives up on it.
struct Held<'a>(&'a Shared);

impl<'a> Held<'a> {
    fn new(shared: &'a Shared, at: Phase) -> Held<'a> {
        let now = shared.held.fetch_add(1, Ordering::Relaxed) + 1;
        shared.peak[at.index()].fetch_max(now, Ordering::Relaxed);
        Held(shared)
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.held.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn answer<B>(
    _req: Request<B>,
    shared: Arc<Shared>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let arrived = phase(&shared);
    shared.reached[arrived.index()].fetch_add(1, Ordering::Relaxed);
    {
        let mut a = shared.arrivals.lock().unwrap();
        if let Some(start) = a.0 {
            let b = (start.elapsed().as_secs_f64() / shared.bucket.as_secs_f64()) as usize;
            if a.1.len() <= b {
                a.1.resize(b + 1, 0);
            }
            a.1[b] += 1;
        }
    }
    let ok = if arrived == Phase::Failing {
        false
    } else {
        let _held = Held::new(&shared, arrived);
        // The semaphore is never closed, so acquiring only waits.
        let _worker = shared.workers.acquire().await;
        // The phase when a worker takes the request decides how it goes.
        match phase(&shared) {
            Phase::Healthy => {
                tokio::time::sleep(HEALTHY_TIME).await;
                true
            }
            Phase::Slow => {
                tokio::time::sleep(HEALTHY_TIME * SLOWDOWN).await;
                true
            }
            Phase::Failing => false,
        }
    };
    let (status, body) = if ok {
        (
            200,
            &b"{\"order\":4711,\"items\":[{\"sku\":\"A-1\",\"qty\":2}]}"[..],
        )
    } else {
        (503, &b"{\"error\":\"service failing\"}"[..])
    };
    let resp = Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header(DEPENDENCY_HEADER, "1")
        .body(Full::new(Bytes::from_static(body)))
        .unwrap();
    Ok(resp)
}
