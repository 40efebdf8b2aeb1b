//! Serving connections, bounded: at most `max_connections` open at once (further ones wait
//! in the kernel's backlog until one closes); a connection on which nothing is read or
//! written for `idle` is closed; a request head (request line and headers) that has not fully
//! arrived within `head` closes its connection, and so does a kept-alive connection that
//! waits that long for its next request (hyper's header timer runs from the end of the
//! previous answer). Together they keep slow or silent clients from holding the service's
//! sockets and memory: the idle clock alone would let a client that sends one header byte a
//! minute hold a connection for ever. HTTP/1 only: HTTP/2 would need limits of its own (its
//! streams and flow-control windows, and no header timer in hyper), and no client of this
//! service needs it.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::serve::Listener;
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// How long [`serve`] gives its connections at once.
pub struct Deadlines {
    /// For a request head to arrive.
    pub head: Duration,
    /// For the connections still open at shutdown to finish their requests.
    pub drain: Duration,
}

/// Serves `app` on `listener` until `shutdown` resolves; then takes no more connections and
/// gives those open `deadlines.drain` to finish the requests they are answering.
pub async fn serve(
    mut listener: BoundedListener,
    app: Router,
    deadlines: Deadlines,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(deadlines.head);
    let connections = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let io = tokio::select! {
            (io, _) = listener.accept() => io,
            () = &mut shutdown => break,
        };
        let service = TowerToHyperService::new(app.clone());
        let connection = connections.watch(http.serve_connection(TokioIo::new(io), service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                // A client gone, idle, or too slow with its head: its own business.
                tracing::debug!(error = %e, "connection closed");
            }
        });
    }
    drop(listener);
    let open = connections.count();
    if tokio::time::timeout(deadlines.drain, connections.shutdown()).await.is_err() {
        tracing::warn!(open, drain_s = deadlines.drain.as_secs_f64(), "connections still open after the drain: closed");
    }
}

pub struct BoundedListener {
    inner: TcpListener,
    permits: Arc<Semaphore>,
    idle: Duration,
}

impl BoundedListener {
    pub fn new(inner: TcpListener, max_connections: usize, idle: Duration) -> Self {
        BoundedListener { inner, permits: Arc::new(Semaphore::new(max_connections.max(1))), idle }
    }
}

impl Listener for BoundedListener {
    type Io = Connection;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Connection, std::net::SocketAddr) {
        // The semaphore is never closed, so this waits until a connection ends.
        let permit = loop {
            if let Ok(permit) = self.permits.clone().acquire_owned().await {
                break permit;
            }
        };
        let (io, addr) = Listener::accept(&mut self.inner).await;
        let deadline = Box::pin(tokio::time::sleep(self.idle));
        (Connection { io, _permit: permit, idle: self.idle, deadline }, addr)
    }

    fn local_addr(&self) -> io::Result<std::net::SocketAddr> {
        self.inner.local_addr()
    }
}

/// An accepted connection: holds its permit until dropped, and fails its next read or
/// write once it has been idle too long.
pub struct Connection {
    io: TcpStream,
    _permit: OwnedSemaphorePermit,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl Connection {
    fn progressed(&mut self) {
        let next = Instant::now() + self.idle;
        self.deadline.as_mut().reset(next);
    }

    /// Restarts the idle clock on progress; fails a pending poll once the clock has run out
    /// (registering for a wake-up when it will).
    fn watch<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match poll {
            Poll::Ready(result) => {
                self.progressed();
                Poll::Ready(result)
            }
            Poll::Pending if self.deadline.as_mut().poll(cx).is_ready() => Poll::Ready(Err(idle_error())),
            Poll::Pending => Poll::Pending,
        }
    }
}

fn idle_error() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "connection idle for too long")
}

impl AsyncRead for Connection {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.io).poll_read(cx, buf);
        this.watch(cx, poll)
    }
}

impl AsyncWrite for Connection {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.io).poll_write(cx, buf);
        this.watch(cx, poll)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.watch(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}
