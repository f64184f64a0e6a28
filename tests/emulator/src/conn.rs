//! A TCP listener whose connections a handler can cut without answering: the "dropped
//! connection" fault. axum's services cannot fail, so the cut happens in the I/O layer: once
//! killed, the stream refuses every read and write, hyper gives up the connection and the
//! client sees it closed before any response byte.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// Accepts TCP connections that can be killed from a handler, counting the open ones.
#[derive(Debug)]
pub(crate) struct KillableListener {
    pub(crate) listener: TcpListener,
    /// Connections accepted and not yet closed.
    pub(crate) open: Arc<AtomicU64>,
    /// Notified when a connection closes.
    pub(crate) changed: Arc<Notify>,
}

/// A handle on one connection, given to handlers as `ConnectInfo<Connection>`.
#[derive(Debug, Clone)]
pub(crate) struct Connection {
    #[allow(dead_code)] // Kept for debugging output.
    pub(crate) peer: SocketAddr,
    killed: Arc<AtomicBool>,
}

impl Connection {
    /// Closes the connection without writing anything more.
    pub(crate) fn kill(&self) {
        self.killed.store(true, Ordering::SeqCst);
    }
}

/// A TCP stream that fails every operation once killed.
#[derive(Debug)]
pub(crate) struct KillableStream {
    inner: TcpStream,
    killed: Arc<AtomicBool>,
    open: Arc<AtomicU64>,
    changed: Arc<Notify>,
}

impl Drop for KillableStream {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::SeqCst);
        self.changed.notify_waiters();
    }
}

impl KillableStream {
    fn check(&self) -> io::Result<()> {
        if self.killed.load(Ordering::SeqCst) {
            Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "connection dropped by an emulator fault",
            ))
        } else {
            Ok(())
        }
    }
}

impl Listener for KillableListener {
    type Io = KillableStream;
    type Addr = Connection;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.listener.accept().await {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let killed = Arc::new(AtomicBool::new(false));
                    self.open.fetch_add(1, Ordering::SeqCst);
                    return (
                        KillableStream {
                            inner: stream,
                            killed: Arc::clone(&killed),
                            open: Arc::clone(&self.open),
                            changed: Arc::clone(&self.changed),
                        },
                        Connection { peer, killed },
                    );
                }
                Err(error) => {
                    // Transient accept errors (e.g. too many open files): back off briefly
                    // (a retry pace, not a wait for anything).
                    tracing::warn!(%error, "Accept failed.");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(Connection {
            peer: self.listener.local_addr()?,
            killed: Arc::new(AtomicBool::new(false)),
        })
    }
}

impl Connected<IncomingStream<'_, KillableListener>> for Connection {
    fn connect_info(stream: IncomingStream<'_, KillableListener>) -> Self {
        stream.remote_addr().clone()
    }
}

impl AsyncRead for KillableStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.check()?;
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for KillableStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.check()?;
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.check()?;
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
