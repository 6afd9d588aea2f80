//! `demo-upstream [--port N]`: the test upstream on 127.0.0.1:N (default 8081), for running the
//! shipped Envoy configs by hand. Logs one line per request to stderr; runs until SIGTERM or SIGINT
//! (Ctrl-C), and exits 0 at once on either.
//!
//! Handling SIGTERM explicitly matters in a container (docker-compose.yaml): there it is PID 1, and the
//! kernel gives PID 1 no default action for SIGTERM, so `compose down`/`docker stop` would wait 10 s and
//! then SIGKILL it.

use e2e_harness::Upstream;

fn parse_port() -> Result<u16, String> {
    let mut args = std::env::args().skip(1);
    let mut port = 8081;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--port" => {
                let v = args.next().ok_or("--port needs a value")?;
                port = v.parse().map_err(|e| format!("--port {v}: {e}"))?;
            }
            "-h" | "--help" => {
                println!("usage: demo-upstream [--port N]   (default 8081, binds 127.0.0.1)");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(port)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let port = match parse_port() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("demo-upstream: {e}");
            std::process::exit(2);
        }
    };
    // The handlers go in before the upstream says it is listening: a SIGTERM sent as soon as the line
    // appears (a supervisor, `compose down`, the newcomer test) must find them, since PID 1 has no
    // default action for it.
    let signals = match ShutdownSignals::install() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("demo-upstream: cannot wait for SIGTERM: {e}");
            std::process::exit(1);
        }
    };
    let upstream = match Upstream::start_on(port).await {
        Ok(u) => u,
        Err(e) => {
            eprintln!("demo-upstream: cannot listen on 127.0.0.1:{port}: {e}");
            std::process::exit(1);
        }
    };
    eprintln!(
        "demo-upstream listening on 127.0.0.1:{} (HTTP/1.1 and h2c)",
        upstream.port()
    );
    let name = signals.first().await;
    eprintln!("demo-upstream: {name}, stopping");
}

/// SIGTERM and SIGINT, handled from the moment they are installed.
struct ShutdownSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(ShutdownSignals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// Waits for either and names the one that came.
    async fn first(mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}
