//! Feature `tokio`: one portable task that uses tokio's timer, a `tokio::net::TcpStream` and an
//! HTTP client on hyper runs unchanged on every backend, from a plain test thread and from
//! inside a tokio runtime; awaiting from a tokio task; blocking waits on a current-thread
//! runtime refuse with advice.

use std::convert::Infallible;
use std::io::Read;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use polyexec::{AnyExecutor, Backend, Executor};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

// This test binary is also the subprocess backend's worker executable.
polyexec::test_hook!();

mod common;

/// Loopback servers for the tasks: a TCP echo and an HTTP server answering `hello <path>`,
/// on a runtime of the test's own (one thread), stopped when dropped.
struct Servers {
    echo: u16,
    http: u16,
    _runtime: tokio::runtime::Runtime,
}

impl Servers {
    fn start() -> Servers {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("server runtime");
        let (echo, http) = runtime.block_on(async {
            let echo = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let ports = (
                echo.local_addr().unwrap().port(),
                http.local_addr().unwrap().port(),
            );
            tokio::spawn(async move {
                while let Ok((mut stream, _)) = echo.accept().await {
                    tokio::spawn(async move {
                        let mut buf = [0u8; 64];
                        while let Ok(n @ 1..) = stream.read(&mut buf).await {
                            if stream.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    });
                }
            });
            tokio::spawn(async move {
                while let Ok((stream, _)) = http.accept().await {
                    tokio::spawn(async move {
                        let service = service_fn(
                            |request: hyper::Request<hyper::body::Incoming>| async move {
                                let body = format!("hello {}", request.uri().path());
                                Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from(
                                    body,
                                ))))
                            },
                        );
                        let _ = http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
            ports
        });
        Servers {
            echo,
            http,
            _runtime: runtime,
        }
    }
}

/// The portable task: a tokio timer, a TCP round trip, an HTTP GET; returns what it saw.
async fn tokio_io((echo, http): (u16, u16)) -> Result<(u64, String, String), String> {
    let started = tokio::time::Instant::now();
    tokio::time::sleep(Duration::from_millis(2)).await;
    let slept = started.elapsed().as_millis() as u64;

    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", echo))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    stream
        .write_all(b"ping")
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut echoed = [0u8; 4];
    stream
        .read_exact(&mut echoed)
        .await
        .map_err(|e| format!("read: {e}"))?;

    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let uri: hyper::Uri = format!("http://127.0.0.1:{http}/get").parse().unwrap();
    let response = client.get(uri).await.map_err(|e| format!("GET: {e}"))?;
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    Ok((
        slept,
        String::from_utf8_lossy(&echoed).into_owned(),
        String::from_utf8_lossy(&body).into_owned(),
    ))
}

fn build(backend: Backend) -> AnyExecutor {
    backend.build_with_workers(Some(2)).expect("build")
}

fn check(
    backend: Backend,
    result: Result<Result<(u64, String, String), String>, polyexec::TaskError>,
) {
    let (slept, echoed, body) = result
        .unwrap_or_else(|err| panic!("{backend}: {err}"))
        .unwrap_or_else(|err| panic!("{backend}: {err}"));
    assert!(
        slept >= 2,
        "{backend}: a tokio timer fired early ({slept} ms)"
    );
    assert_eq!(echoed, "ping", "{backend}");
    assert_eq!(body, "hello /get", "{backend}");
}

#[test]
fn tokio_io_from_a_plain_thread_on_every_backend() {
    let servers = Servers::start();
    for backend in common::buildable_backends() {
        let exec = build(backend);
        let handles: Vec<_> = (0..3)
            .map(|_| exec.spawn_async((servers.echo, servers.http), tokio_io))
            .collect();
        for handle in handles {
            check(backend, handle.join());
        }
    }
}

#[test]
fn a_closure_that_makes_a_tokio_future_before_its_async_block() {
    // The closure itself makes the tokio resource: on the event loop it is called by
    // `spawn_async` on the submitting thread, which is in the runtime's context too.
    for backend in common::buildable_backends() {
        let exec = build(backend);
        let slept = exec.spawn_async(1u64, |ms: u64| {
            let sleep = tokio::time::sleep(Duration::from_millis(ms));
            async move {
                sleep.await;
                ms
            }
        });
        assert_eq!(slept.join(), Ok(1), "{backend}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_io_from_inside_a_runtime_awaited_from_tokio_tasks() {
    let servers = tokio::task::spawn_blocking(Servers::start).await.unwrap();
    for backend in common::buildable_backends() {
        let exec = build(backend);
        let input = (servers.echo, servers.http);
        // Awaited from tokio tasks: a handle is a future like any other.
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let handle = exec.spawn_async(input, tokio_io);
                tokio::spawn(handle)
            })
            .collect();
        for waiter in waiters {
            check(backend, waiter.await.expect("tokio task"));
        }
        // Dropped on a runtime thread: with no work left, dropping does not wait for tasks.
        drop(exec);
    }
    tokio::task::spawn_blocking(move || drop(servers))
        .await
        .unwrap();
}

#[test]
fn the_callers_runtime_by_handle() {
    let servers = Servers::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let input = (servers.echo, servers.http);
    #[cfg(feature = "thread")]
    {
        let pool = polyexec::thread::ThreadPool::builder()
            .workers(1)
            .tokio_handle(rt.handle().clone())
            .build()
            .unwrap();
        check(Backend::Thread, pool.spawn_async(input, tokio_io).join());
    }
    #[cfg(feature = "coroutine")]
    {
        let event_loop = polyexec::coroutine::EventLoop::builder()
            .tokio_handle(rt.handle().clone())
            .build()
            .unwrap();
        check(
            Backend::Coroutine,
            event_loop.spawn_async(input, tokio_io).join(),
        );
    }
    let _ = (input, &rt);
}

/// A loopback listener whose accepted connections are closed only on `release`: a task reading
/// from it waits until then, whatever the machine's load.
struct Gate {
    listener: StdListener,
}

impl Gate {
    fn new() -> Gate {
        Gate {
            listener: StdListener::bind("127.0.0.1:0").unwrap(),
        }
    }

    fn port(&self) -> u16 {
        self.listener.local_addr().unwrap().port()
    }

    /// Closes the first `n` connections: their readers see end of file.
    fn release(&self, n: usize) {
        for _ in 0..n {
            drop(self.listener.accept().unwrap());
        }
    }
}

/// An async task that waits at the gate.
async fn wait_at_gate(port: u16) -> usize {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    stream.read(&mut [0u8; 1]).await.unwrap()
}

/// A blocking task that waits at the gate.
fn block_at_gate(port: u16) -> usize {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.read(&mut [0u8; 1]).unwrap()
}

fn refused<R>(what: &str, body: impl FnOnce() -> R) {
    let payload = match catch_unwind(AssertUnwindSafe(body)) {
        Ok(_) => panic!("{what} returned instead of refusing"),
        Err(payload) => payload,
    };
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    assert!(
        message.contains("current-thread tokio runtime") && message.contains(".await"),
        "{what}: {message}"
    );
}

#[test]
fn blocking_waits_on_a_current_thread_runtime_refuse_with_advice() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for backend in common::buildable_backends() {
        let gate = Gate::new();
        let port = gate.port();
        let exec = build(backend);
        let gate = runtime.block_on(async {
            refused("join", || exec.spawn_async(port, wait_at_gate).join());
            refused("join_all", || {
                polyexec::join_all([exec.spawn_async(port, wait_at_gate)])
            });
            refused("map", || exec.map([port], block_at_gate).next());
            // `.await` is the way: the runtime goes on meanwhile (here, with the task that
            // opens the gate for the three refused waits' tasks and this one).
            let awaited = exec.spawn_async(port, wait_at_gate);
            let opener = tokio::task::spawn_blocking(move || {
                gate.release(4);
                gate
            });
            assert_eq!(awaited.await, Ok(0), "{backend}");
            opener.await.unwrap()
        });
        drop(gate);
        exec.shutdown();
    }
}

#[test]
fn dropping_an_executor_with_work_on_a_current_thread_runtime_refuses_with_advice() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for backend in common::buildable_backends() {
        let gate = Gate::new();
        let exec = build(backend);
        let waiting = exec.spawn_async(gate.port(), wait_at_gate);
        runtime.block_on(async {
            refused("drop", move || drop(exec));
        });
        // The shutdown went on elsewhere: the task still runs to its end once the gate opens.
        gate.release(1);
        assert_eq!(waiting.join(), Ok(0), "{backend}");
    }
}
