//! Listeners: accept TCP (and TLS) connections, serve HTTP/1.1 and HTTP/2 on them with upgrades, and shut
//! down gracefully — stop accepting, let requests in flight finish within the grace period. Tests bind port 0
//! and pass their own shutdown future.
//!
//! The runtime layout (an accept loop per listener, each connection dealt to one of the single-threaded
//! runtimes, one per core) is decided here only.

pub mod simple;
pub mod tls;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use crate::gateway::{self, Conn};
use crate::state::Shared;
use crate::upstream::PinnedUpstream;

/// A bound listener, plain or TLS.
pub struct Listener {
    /// The socket.
    pub tcp: TcpListener,
    /// TLS, for HTTPS listeners.
    pub tls: Option<TlsAcceptor>,
}

/// Serves `listeners` until `shutdown` completes, then waits up to `grace` for requests in flight.
pub async fn run(listeners: Vec<Listener>, shared: Shared, shutdown: impl Future<Output = ()> + Send, grace: Duration) {
    let limits = shared.load().config.limits.clone();
    let connections = Arc::new(Semaphore::new(limits.max_connections.min(Semaphore::MAX_PERMITS)));
    let graceful = std::sync::Arc::new(GracefulShutdown::new());
    let workers = Workers::start();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut loops = Vec::new();
    for listener in listeners {
        let shared = shared.clone();
        let mut stop = stop_rx.clone();
        let graceful = graceful.clone();
        let limits = limits.clone();
        let connections = connections.clone();
        let workers = workers.clone();
        loops.push(tokio::spawn(async move {
            let mut builder = Builder::new(TokioExecutor::new());
            // A request head larger than max_buf_size is answered 431 by hyper.
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .max_buf_size(limits.max_header_bytes)
                .keep_alive(true);
            builder
                .http2()
                .timer(TokioTimer::new())
                .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
            loop {
                let (stream, peer) = tokio::select! {
                    accepted = listener.tcp.accept() => match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            // Out of file descriptors and the like: back off instead of spinning.
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                    _ = stop.changed() => break,
                };
                let Ok(permit) = connections.clone().try_acquire_owned() else {
                    tracing::warn!(peer = %peer, limit = limits.max_connections, "refusing a connection: too many open");
                    if listener.tls.is_none() {
                        tokio::spawn(refuse_connection(stream));
                    }
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let shared = shared.clone();
                let builder = builder.clone();
                let tls = listener.tls.clone();
                let watcher = graceful.watcher();
                let idle_timeout = limits.idle_timeout;
                let pin_upstream = limits.upstream_connection_per_client;
                let handshake_timeout = limits.header_read_timeout;
                let serve = move |stream: TcpStream| async move {
                    let _permit = permit;
                    // Shared by the connection's requests: one reference count to take per request.
                    let conn = Arc::new(Conn::new(peer, tls.is_some(), pin_upstream.then(PinnedUpstream::default)));
                    let activity = Activity::new();
                    let service = {
                        let activity = activity.clone();
                        service_fn(move |req| {
                            let shared = shared.clone();
                            let conn = conn.clone();
                            let busy = activity.request_started();
                            async move {
                                let response = gateway::handle(&shared, &conn, req).await;
                                drop(busy);
                                Ok::<_, std::convert::Infallible>(response)
                            }
                        })
                    };
                    let result = match tls {
                        Some(acceptor) => {
                            match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                                Ok(Ok(tls_stream)) => {
                                    let io = TokioIo::new(Tracked { inner: tls_stream, activity: activity.clone() });
                                    let connection = builder.serve_connection_with_upgrades(io, service);
                                    close_when_idle(watcher.watch(connection.into_owned()), &activity, idle_timeout)
                                        .await
                                }
                                Ok(Err(e)) => {
                                    tracing::debug!(peer = %peer, error = %e, "TLS handshake failed");
                                    return;
                                }
                                Err(_) => return,
                            }
                        }
                        None => {
                            let io = TokioIo::new(Tracked { inner: stream, activity: activity.clone() });
                            let connection = builder.serve_connection_with_upgrades(io, service);
                            close_when_idle(watcher.watch(connection.into_owned()), &activity, idle_timeout).await
                        }
                    };
                    if let Err(e) = result {
                        tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
                    }
                };
                workers.dispatch(stream, serve);
            }
        }));
    }
    shutdown.await;
    tracing::info!("shutting down: no new connections; waiting for requests in flight");
    let _ = stop_tx.send(true);
    for l in loops {
        let _ = l.await;
    }
    let Ok(graceful) = std::sync::Arc::try_unwrap(graceful) else {
        return;
    };
    match tokio::time::timeout(grace, graceful.shutdown()).await {
        Ok(()) => tracing::info!("all requests finished"),
        Err(_) => tracing::warn!(
            grace_secs = grace.as_secs(),
            "requests still in flight after the grace period; closing them"
        ),
    }
    workers.stop().await;
}

/// A connection to serve, sent to a worker: the socket and what serves it there.
type Job = Box<dyn FnOnce(TcpStream) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// One single-threaded runtime per core, each serving the connections it is given: a request, its upstream
/// call and its answer stay on one thread (no cross-thread wake-ups), and each worker keeps its own upstream
/// connection pool (see `upstream::worker_index`). Connections are dealt out in turn.
#[derive(Clone)]
struct Workers {
    inner: Arc<WorkersInner>,
}

struct WorkersInner {
    senders: Vec<tokio::sync::mpsc::UnboundedSender<(std::net::TcpStream, Job)>>,
    next: AtomicUsize,
    stop: tokio::sync::watch::Sender<bool>,
    threads: std::sync::Mutex<Vec<std::thread::JoinHandle<()>>>,
}

impl Workers {
    fn start() -> Workers {
        let count = std::thread::available_parallelism().map_or(1, usize::from);
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut senders = Vec::new();
        let mut threads = Vec::new();
        for index in 0..count {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(std::net::TcpStream, Job)>();
            let mut stopped = stopped.clone();
            let spawned = std::thread::Builder::new().name(format!("postern-worker-{index}")).spawn(move || {
                crate::upstream::set_worker_index(index + 1);
                let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                    tracing::error!("cannot start a worker runtime");
                    return;
                };
                rt.block_on(async move {
                    loop {
                        tokio::select! {
                            job = rx.recv() => match job {
                                Some((stream, serve)) => match TcpStream::from_std(stream) {
                                    Ok(stream) => {
                                        tokio::spawn(serve(stream));
                                    }
                                    Err(e) => tracing::debug!(error = %e, "cannot register a connection"),
                                },
                                None => break,
                            },
                            _ = stopped.changed() => break,
                        }
                    }
                    // Connections in flight finish (the server's graceful shutdown decides how long).
                    while !*stopped.borrow() {
                        if stopped.changed().await.is_err() {
                            break;
                        }
                    }
                });
            });
            match spawned {
                Ok(handle) => {
                    senders.push(tx);
                    threads.push(handle);
                }
                Err(e) => tracing::error!(error = %e, "cannot start a worker thread"),
            }
        }
        Workers {
            inner: Arc::new(WorkersInner {
                senders,
                next: AtomicUsize::new(0),
                stop,
                threads: std::sync::Mutex::new(threads),
            }),
        }
    }

    /// Hands `stream` to the next worker; without workers, serves it on the current runtime.
    fn dispatch<F, Fut>(&self, stream: TcpStream, serve: F)
    where
        F: FnOnce(TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let senders = &self.inner.senders;
        if senders.is_empty() {
            tokio::spawn(serve(stream));
            return;
        }
        let Ok(std_stream) = stream.into_std() else { return };
        let job: Job = Box::new(move |s| Box::pin(serve(s)));
        let i = self.inner.next.fetch_add(1, Ordering::Relaxed) % senders.len();
        let _ = senders[i].send((std_stream, job));
    }

    /// Ends the workers once the server's shutdown is done.
    async fn stop(&self) {
        let _ = self.inner.stop.send(true);
        let threads =
            std::mem::take(&mut *self.inner.threads.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
    }
}

/// Over `max_connections`: a short 503 on a plain-HTTP connection (a TLS one is just closed), then close.
async fn refuse_connection(mut stream: TcpStream) {
    use tokio::io::AsyncWriteExt;
    const BODY: &str = "{\"error\":\"overloaded\",\"message\":\"too many connections; try again shortly\"}\n";
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{BODY}",
        BODY.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(answer.as_bytes())).await;
    let _ = stream.shutdown().await;
}

/// Whether a connection is doing anything: how many times it has moved bytes or finished a request, and how
/// many of its requests are being handled. A counter, not a clock: reads and writes only bump it, and the idle
/// check, a few times per `idle_timeout`, sees whether it moved.
#[derive(Clone)]
struct Activity(Arc<ActivityInner>);

struct ActivityInner {
    events: AtomicU64,
    busy: AtomicUsize,
}

/// Marks a request in flight until dropped.
struct Busy(Activity);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.0.busy.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}

impl Activity {
    fn new() -> Activity {
        Activity(Arc::new(ActivityInner { events: AtomicU64::new(0), busy: AtomicUsize::new(0) }))
    }

    fn touch(&self) {
        self.0.events.fetch_add(1, Ordering::Relaxed);
    }

    fn request_started(&self) -> Busy {
        self.0.busy.fetch_add(1, Ordering::Relaxed);
        Busy(self.clone())
    }

    /// What the idle check compares between two looks: `None` while a request is in flight.
    fn mark(&self) -> Option<u64> {
        (self.0.busy.load(Ordering::Relaxed) == 0).then(|| self.0.events.load(Ordering::Relaxed))
    }
}

/// Drives `connection`, dropping (closing) it once it has been idle for `idle_timeout`: keep-alive connections
/// nobody uses do not hold sockets and memory forever. A request in flight is never cut. Idleness is measured
/// in checks a quarter of `idle_timeout` apart (at least 50 ms, at most 5 s), so a connection closes at most
/// two checks after `idle_timeout` has passed since its last activity.
async fn close_when_idle<F, E>(connection: F, activity: &Activity, idle_timeout: Duration) -> Result<(), E>
where
    F: Future<Output = Result<(), E>>,
{
    tokio::pin!(connection);
    let check = (idle_timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(5));
    let mut last = activity.mark();
    let mut idle_since = Instant::now();
    loop {
        tokio::select! {
            result = &mut connection => return result,
            _ = tokio::time::sleep(check) => {
                let now = activity.mark();
                if now.is_none() || now != last {
                    idle_since = Instant::now();
                    last = now;
                } else if idle_since.elapsed() >= idle_timeout {
                    return Ok(());
                }
            }
        }
    }
}

/// An IO stream that records when it last moved bytes.
struct Tracked<T> {
    inner: T,
    activity: Activity,
}

impl<T: AsyncRead + Unpin> AsyncRead for Tracked<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        poll
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tracked<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(poll, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        poll
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(poll, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        poll
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
