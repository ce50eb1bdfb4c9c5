//! Real HTTP for `examples/http.rs` and `compare`'s HTTP row (feature `tokio`): a hyper server
//! on 127.0.0.1 that answers each request after a fixed delay, a client GET that runs inside a
//! portable task, and the same requests sent by a plain tokio program for comparison.
//!
//! Each GET opens its own connection and asks the server to close it (`connection: close`), as
//! a one-off `reqwest::get` would: the server closes first, so the many short connections leave
//! their `TIME_WAIT` on the server's side, where they use no ephemeral port of the client's. The
//! connection is driven inside the task itself (not handed to `tokio::spawn`), so all of the
//! client's work runs on the backend being measured.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::server::conn::http1 as server_http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use polyexec::{Executor, TaskSet};
use serde::{Deserialize, Serialize};

/// A loopback HTTP/1 server on a runtime of its own (one thread), stopped when dropped.
pub(crate) struct Server {
    addr: SocketAddr,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Server {
    /// Listens on `127.0.0.1:0`; every response (`hello <path>`) comes `latency` after its request.
    pub(crate) fn start(latency: Duration) -> std::io::Result<Server> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("http-server")
            .enable_all()
            .build()?;
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
        let addr = listener.local_addr()?;
        runtime.spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve_connection(stream, latency));
            }
        });
        Ok(Server {
            addr,
            runtime: Some(runtime),
        })
    }

    /// Where it listens.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            // Its connections are ours alone; none is worth waiting for.
            runtime.shutdown_background();
        }
    }
}

async fn serve_connection(stream: tokio::net::TcpStream, latency: Duration) {
    let service = service_fn(
        move |request: hyper::Request<hyper::body::Incoming>| async move {
            tokio::time::sleep(latency).await;
            let body = format!("hello {}", request.uri().path());
            Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from(body))))
        },
    );
    let _ = server_http1::Builder::new()
        .keep_alive(false)
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

/// One request, as the task's input: all its data, since a portable task captures nothing.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Get {
    pub(crate) addr: SocketAddr,
    pub(crate) path: String,
}

/// What came back.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) body_bytes: usize,
}

/// An HTTP GET on tokio types (`tokio::net::TcpStream`, hyper's HTTP/1 client): the portable task.
/// An `async fn` item is a portable task like a non-capturing async closure.
pub(crate) async fn get(request: Get) -> Result<Reply, String> {
    let stream = tokio::net::TcpStream::connect(request.addr)
        .await
        .map_err(|e| format!("connect to {}: {e}", request.addr))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
    let exchange = async move {
        let http_request = hyper::Request::get(request.path.as_str())
            .header(hyper::header::HOST, request.addr.to_string())
            .header(hyper::header::CONNECTION, "close")
            .body(Empty::<Bytes>::new())
            .map_err(|e| format!("request: {e}"))?;
        let response = sender
            .send_request(http_request)
            .await
            .map_err(|e| format!("GET: {e}"))?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("body: {e}"))?
            .to_bytes();
        Ok::<_, String>(Reply {
            status,
            body_bytes: body.len(),
        })
    };
    // The connection ends once the response is read (both sides asked for `close`).
    let (reply, connection) = futures::join!(exchange, connection);
    connection.map_err(|e| format!("connection: {e}"))?;
    reply
}

/// How a batch of requests went.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Outcome {
    pub(crate) ok: u64,
    pub(crate) failed: u64,
    pub(crate) wall: Duration,
}

impl Outcome {
    /// Wall time ÷ the least it could be: `ceil(requests / limit)` latencies back to back.
    pub(crate) fn ratio_to_ideal(&self, requests: u64, limit: usize, latency: Duration) -> f64 {
        self.wall.as_secs_f64() / ideal(requests, limit, latency).as_secs_f64()
    }

    /// Requests answered per second of wall time.
    pub(crate) fn per_sec(&self) -> f64 {
        self.ok as f64 / self.wall.as_secs_f64().max(1e-9)
    }
}

/// The least wall time `requests` can take with `limit` in flight.
pub(crate) fn ideal(requests: u64, limit: usize, latency: Duration) -> Duration {
    latency * requests.div_ceil(limit.max(1) as u64).max(1) as u32
}

/// `requests` GETs as portable tasks on `exec`, at most `limit` in flight (a `TaskSet` window).
pub(crate) fn run_on<E: Executor>(
    exec: &E,
    addr: SocketAddr,
    requests: u64,
    limit: usize,
) -> Result<Outcome, String> {
    let start = Instant::now();
    let mut window: TaskSet<Result<Reply, String>> = TaskSet::new();
    let (mut ok, mut failed, mut sent) = (0u64, 0u64, 0u64);
    let mut first_error = None;
    loop {
        while window.len() < limit.max(1) && sent < requests {
            let path = format!("/item/{sent}");
            window.push(exec.spawn_async(Get { addr, path }, get));
            sent += 1;
        }
        let Some(result) = window.join_next() else {
            break;
        };
        match result.map_err(|e| e.to_string()).and_then(|reply| reply) {
            Ok(reply) if reply.status == 200 => ok += 1,
            Ok(reply) => {
                failed += 1;
                first_error.get_or_insert(format!("status {}", reply.status));
            }
            Err(error) => {
                failed += 1;
                first_error.get_or_insert(error);
            }
        }
    }
    let wall = start.elapsed();
    match first_error {
        Some(error) if ok == 0 => Err(error),
        _ => Ok(Outcome { ok, failed, wall }),
    }
}

/// The same requests from a plain tokio program: a multi-thread runtime (one thread per CPU),
/// the same `get`, `tokio::spawn` for each, the same window.
pub(crate) fn run_on_plain_tokio(
    addr: SocketAddr,
    requests: u64,
    limit: usize,
) -> Result<Outcome, String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    let outcome = runtime.block_on(window_on_tokio(requests, limit, move |i| {
        get(Get {
            addr,
            path: format!("/item/{i}"),
        })
    }));
    Ok(outcome)
}

async fn window_on_tokio<F, Fut>(requests: u64, limit: usize, request: F) -> Outcome
where
    F: Fn(u64) -> Fut,
    Fut: Future<Output = Result<Reply, String>> + Send + 'static,
{
    let start = Instant::now();
    let mut window = tokio::task::JoinSet::new();
    let (mut ok, mut failed, mut sent) = (0u64, 0u64, 0u64);
    loop {
        while window.len() < limit.max(1) && sent < requests {
            window.spawn(request(sent));
            sent += 1;
        }
        let Some(result) = window.join_next().await else {
            break;
        };
        match result {
            Ok(Ok(reply)) if reply.status == 200 => ok += 1,
            _ => failed += 1,
        }
    }
    Outcome {
        ok,
        failed,
        wall: start.elapsed(),
    }
}
