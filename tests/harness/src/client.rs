//! Minimal HTTP/1.1, h2c (prior knowledge) and gRPC unary clients against 127.0.0.1 (HTTP/1.1 also
//! against another address, for Envoys in their own network namespace).
//!
//! One fresh connection per call, so requests never share state across tests. Every call is bounded
//! by [`CLIENT_TIMEOUT`]. The plain functions panic on transport errors (tests fail loudly); the
//! `try_` variants return them, for tests that expect a reset.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use bytes::{Buf, Bytes};
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderName, HeaderValue};
use hyper::{HeaderMap, Method, Request, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::upstream::{grpc_frame, header_pairs};

/// Upper bound for one request, connect to last body byte.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// A complete response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// `HTTP/1.1` or `HTTP/2.0`.
    pub version: String,
    /// Lower-case names, lossy UTF-8 values, duplicates kept.
    pub headers: Vec<(String, String)>,
    /// Trailers, if any arrived (h2, or h1 chunked).
    pub trailers: Vec<(String, String)>,
    pub body: Bytes,
}

impl Response {
    /// First value of a response header.
    pub fn header(&self, name: &str) -> Option<&str> {
        find(&self.headers, name)
    }

    /// All values of a response header, in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        find_all(&self.headers, name)
    }

    pub fn trailer(&self, name: &str) -> Option<&str> {
        find(&self.trailers, name)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Status, headers and body on one line, for assertion messages.
    pub fn describe(&self) -> String {
        format!(
            "status {} headers {:?} body {:?}",
            self.status,
            self.headers,
            self.text()
        )
    }

    /// Body as JSON; panics with the body when it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response body is not JSON ({e}); status {}: {}",
                self.status,
                self.text()
            )
        })
    }

    /// Headers the upstream received, from its echo body (lower-case names, in order).
    pub fn echo_header_pairs(&self) -> Vec<(String, String)> {
        let json = self.json();
        let Some(list) = json.get("headers").and_then(|h| h.as_array()) else {
            panic!(
                "not an upstream echo body (status {}): {}",
                self.status,
                self.text()
            );
        };
        list.iter()
            .filter_map(|pair| {
                let name = pair.get(0)?.as_str()?;
                let value = pair.get(1)?.as_str()?;
                Some((name.to_string(), value.to_string()))
            })
            .collect()
    }

    /// First value of a header as the upstream received it (from the echo body).
    pub fn echo_header(&self, name: &str) -> Option<String> {
        self.echo_headers(name).into_iter().next()
    }

    /// All values of a header as the upstream received it (from the echo body).
    pub fn echo_headers(&self, name: &str) -> Vec<String> {
        self.echo_header_pairs()
            .into_iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
            .collect()
    }
}

/// A gRPC unary response.
#[derive(Debug, Clone)]
pub struct GrpcResponse {
    pub http_status: u16,
    pub headers: Vec<(String, String)>,
    pub trailers: Vec<(String, String)>,
    /// From the trailers, or from the headers for a trailers-only response.
    pub grpc_status: Option<u32>,
    pub grpc_message: Option<String>,
    /// Length-prefixed messages of the body, payloads only.
    pub messages: Vec<Bytes>,
}

impl GrpcResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        find(&self.headers, name)
    }

    pub fn trailer(&self, name: &str) -> Option<&str> {
        find(&self.trailers, name)
    }

    /// First message as JSON (the upstream answers with its echo JSON).
    pub fn message_json(&self) -> serde_json::Value {
        let Some(m) = self.messages.first() else {
            panic!("gRPC response has no message: {self:?}");
        };
        serde_json::from_slice(m)
            .unwrap_or_else(|e| panic!("gRPC message is not JSON ({e}): {m:?}"))
    }
}

fn find<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn find_all<'a>(pairs: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    pairs
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .collect()
}

/// One HTTP/1.1 request written by hand (for header bytes the clients refuse to send); returns the
/// whole response as text. Panics on transport errors or after [`CLIENT_TIMEOUT`].
pub async fn raw_http1(port: u16, request: &[u8]) -> String {
    let mut conn = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    conn.write_all(request).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(CLIENT_TIMEOUT, conn.read_to_end(&mut response))
        .await
        .expect("raw response within the client timeout")
        .unwrap();
    String::from_utf8_lossy(&response).into_owned()
}

/// HTTP/1.1 request to 127.0.0.1:`port`; panics on transport errors or timeout.
pub async fn http1(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Response {
    try_http1(port, method, path, headers, body)
        .await
        .unwrap_or_else(|e| panic!("HTTP/1.1 {method} {path} on port {port}: {e}"))
}

/// h2c (prior knowledge) request to 127.0.0.1:`port`; panics on transport errors or timeout.
pub async fn http2(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Response {
    try_http2(port, method, path, headers, body)
        .await
        .unwrap_or_else(|e| panic!("HTTP/2 {method} {path} on port {port}: {e}"))
}

pub async fn try_http1(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Result<Response, String> {
    send(
        LOCALHOST,
        port,
        Version::HTTP_11,
        method,
        path,
        headers,
        body.into(),
    )
    .await
}

/// [`try_http1`] to `ip`:`port` (an Envoy listening in another network namespace).
pub async fn try_http1_at(
    ip: IpAddr,
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Result<Response, String> {
    send(
        ip,
        port,
        Version::HTTP_11,
        method,
        path,
        headers,
        body.into(),
    )
    .await
}

pub async fn try_http2(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Result<Response, String> {
    send(
        LOCALHOST,
        port,
        Version::HTTP_2,
        method,
        path,
        headers,
        body.into(),
    )
    .await
}

/// gRPC unary call over h2c: POST `path` (`/pkg.Svc/Method`) with one length-prefixed message.
/// Panics on transport errors; a gRPC error status is a normal result.
pub async fn grpc_unary(
    port: u16,
    path: &str,
    headers: &[(&str, &str)],
    message: impl AsRef<[u8]>,
) -> GrpcResponse {
    try_grpc_unary(port, path, headers, message)
        .await
        .unwrap_or_else(|e| panic!("gRPC {path} on port {port}: {e}"))
}

pub async fn try_grpc_unary(
    port: u16,
    path: &str,
    headers: &[(&str, &str)],
    message: impl AsRef<[u8]>,
) -> Result<GrpcResponse, String> {
    let mut all: Vec<(&str, &str)> = vec![("content-type", "application/grpc"), ("te", "trailers")];
    all.extend(
        headers.iter().filter(|(n, _)| {
            !n.eq_ignore_ascii_case("content-type") && !n.eq_ignore_ascii_case("te")
        }),
    );
    // A caller-supplied content-type (e.g. application/grpc+proto) wins.
    if let Some(ct) = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-type"))
    {
        if let Some(first) = all.first_mut() {
            *first = *ct;
        }
    }
    let resp = send(
        LOCALHOST,
        port,
        Version::HTTP_2,
        "POST",
        path,
        &all,
        grpc_frame(message.as_ref()),
    )
    .await?;
    let from = |name: &str| find(&resp.trailers, name).or_else(|| find(&resp.headers, name));
    let grpc_status = from("grpc-status").and_then(|s| s.trim().parse().ok());
    let grpc_message = from("grpc-message").map(str::to_string);
    Ok(GrpcResponse {
        http_status: resp.status,
        grpc_status,
        grpc_message,
        messages: split_grpc_frames(resp.body.clone()),
        headers: resp.headers,
        trailers: resp.trailers,
    })
}

fn split_grpc_frames(mut body: Bytes) -> Vec<Bytes> {
    let mut out = Vec::new();
    while body.len() >= 5 {
        body.advance(1);
        let len = body.get_u32() as usize;
        if body.len() < len {
            break;
        }
        out.push(body.split_to(len));
    }
    out
}

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

async fn send(
    ip: IpAddr,
    port: u16,
    version: Version,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Result<Response, String> {
    let req = build_request(port, version, method, path, headers, body)?;
    match tokio::time::timeout(CLIENT_TIMEOUT, exchange(ip, port, version, req)).await {
        Ok(r) => r,
        Err(_) => Err(format!("no complete response within {CLIENT_TIMEOUT:?}")),
    }
}

fn build_request(
    port: u16,
    version: Version,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Result<Request<Full<Bytes>>, String> {
    let method = Method::from_bytes(method.as_bytes()).map_err(|e| format!("method: {e}"))?;
    let host = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("host") || n.eq_ignore_ascii_case(":authority"))
        .map(|(_, v)| v.to_string())
        .unwrap_or_else(|| format!("localhost:{port}"));
    // h1 sends the origin form plus a Host header; h2 takes :authority from an absolute URI.
    let uri = if version == Version::HTTP_2 {
        format!("http://{host}{path}")
    } else {
        path.to_string()
    };
    let mut req = Request::builder()
        .method(method)
        .uri(&uri)
        .version(version)
        .body(Full::new(body))
        .map_err(|e| format!("request {uri}: {e}"))?;
    let map: &mut HeaderMap = req.headers_mut();
    if version == Version::HTTP_11 {
        map.insert(
            hyper::header::HOST,
            HeaderValue::from_str(&host).map_err(|e| e.to_string())?,
        );
    }
    for (n, v) in headers {
        if n.eq_ignore_ascii_case("host") || n.eq_ignore_ascii_case(":authority") {
            continue;
        }
        let name = HeaderName::from_bytes(n.as_bytes()).map_err(|e| format!("header {n}: {e}"))?;
        let value = HeaderValue::from_str(v).map_err(|e| format!("header {n}: {e}"))?;
        map.append(name, value);
    }
    Ok(req)
}

async fn exchange(
    ip: IpAddr,
    port: u16,
    version: Version,
    req: Request<Full<Bytes>>,
) -> Result<Response, String> {
    let stream = TcpStream::connect((ip, port))
        .await
        .map_err(|e| format!("connect {ip}:{port}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let io = TokioIo::new(stream);
    let resp = if version == Version::HTTP_2 {
        let (mut sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .map_err(|e| format!("h2 handshake: {e}"))?;
        tokio::spawn(conn);
        sender
            .send_request(req)
            .await
            .map_err(|e| format!("h2 request: {e:?}"))?
    } else {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| format!("h1 handshake: {e}"))?;
        tokio::spawn(conn);
        sender
            .send_request(req)
            .await
            .map_err(|e| format!("h1 request: {e:?}"))?
    };
    let (parts, body) = resp.into_parts();
    let collected = body
        .collect()
        .await
        .map_err(|e| format!("reading body after status {}: {e:?}", parts.status.as_u16()))?;
    let trailers = collected.trailers().map(header_pairs).unwrap_or_default();
    Ok(Response {
        status: parts.status.as_u16(),
        version: format!("{:?}", parts.version),
        headers: header_pairs(&parts.headers),
        trailers,
        body: collected.to_bytes(),
    })
}
