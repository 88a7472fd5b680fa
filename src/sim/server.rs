//! The accept loop behind [`super::Simulator::spawn`].
//!
//! It exists (instead of `axum::serve`) so the `reset` knob can drop a
//! connection with no HTTP response at all: a handler tags its response with
//! [`ResetConnection`], the per-connection service turns that into a service
//! error (hyper then closes the connection without writing anything) and the
//! socket is closed with `SO_LINGER 0`, so the client sees a TCP reset.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt;

/// Response extension asking the server to kill the connection instead of
/// answering.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ResetConnection;

/// Accepts connections forever, serving `router` on each.
pub(crate) async fn serve(router: Router, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let _ = stream.set_nodelay(true);
                tokio::spawn(serve_conn(stream, router.clone()));
            }
            Err(e) => {
                // Out of file descriptors and the like: back off, keep going.
                tracing::warn!(error = %e, "sim: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn serve_conn(stream: TcpStream, router: Router) {
    let reset = Arc::new(AtomicBool::new(false));
    let io = TokioIo::new(Resettable {
        stream,
        reset: reset.clone(),
    });
    let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
        let router = router.clone();
        let reset = reset.clone();
        async move {
            let resp = match router.oneshot(req.map(Body::new)).await {
                Ok(resp) => resp,
                Err(never) => match never {},
            };
            if resp.extensions().get::<ResetConnection>().is_some() {
                reset.store(true, Ordering::SeqCst);
                return Err(io::Error::other("sim: connection reset knob"));
            }
            Ok(resp)
        }
    });
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    if let Err(e) = builder.serve_connection(io, service).await {
        tracing::debug!(error = %e, "sim: connection ended with error");
    }
}

/// A TCP stream that, when flagged, closes with a reset instead of a FIN.
struct Resettable {
    stream: TcpStream,
    reset: Arc<AtomicBool>,
}

impl Drop for Resettable {
    fn drop(&mut self) {
        if self.reset.load(Ordering::SeqCst) {
            let _ = self.stream.set_zero_linger();
        }
    }
}

impl AsyncRead for Resettable {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Resettable {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}
