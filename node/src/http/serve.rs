//! The accept loop. Each accepted TCP stream gets its own hyper connection task serving the
//! router, with upgrades (the WebSocket transport). With `http2` off (the default) that is
//! hyper's HTTP/1.1 connection and nothing else; with it on, hyper-util's auto builder, which
//! first reads 24 bytes to tell HTTP/2 prior knowledge from HTTP/1.1 — and that first short read
//! makes hyper grow the connection's read buffer from 8 KiB to 16 KiB.
//!
//! Shutdown: when `stop` fires the loop stops accepting, every open connection is told to finish
//! its current request and close, and [`serve`] returns once all of them have.

use std::io;
use std::pin::pin;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How long to wait after an accept error that is not about one connection (e.g. out of files).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(250);

/// Serves `router` on `listener` until `stop` fires and every connection has closed.
pub async fn serve(listener: TcpListener, router: Router, http2: bool, stop: CancellationToken) {
    let (open_tx, open_rx) = watch::channel(());
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.cancelled() => break,
        };
        match accepted {
            Ok((stream, _)) => {
                let open = open_rx.clone();
                tokio::spawn(connection(stream, router.clone(), http2, stop.clone(), open));
            }
            Err(error) if per_connection(&error) => {}
            Err(error) => {
                tracing::warn!(%error, "accept failed; retrying shortly");
                tokio::select! {
                    () = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                    () = stop.cancelled() => break,
                }
            }
        }
    }
    drop(listener);
    drop(open_rx);
    // Every connection task holds a receiver until it ends.
    open_tx.closed().await;
}

/// Errors that concern one incoming connection only: accept the next one at once.
fn per_connection(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    )
}

async fn connection(
    stream: TcpStream,
    router: Router,
    http2: bool,
    stop: CancellationToken,
    _open: watch::Receiver<()>,
) {
    let io = TokioIo::new(stream);
    let service = TowerToHyperService::new(router);
    let result = if http2 {
        let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        let mut conn = pin!(builder.serve_connection_with_upgrades(io, service));
        tokio::select! {
            result = conn.as_mut() => result,
            () = stop.cancelled() => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        }
    } else {
        let builder = hyper::server::conn::http1::Builder::new();
        let mut conn = pin!(builder.serve_connection(io, service).with_upgrades());
        tokio::select! {
            result = conn.as_mut() => result.map_err(Into::into),
            () = stop.cancelled() => {
                conn.as_mut().graceful_shutdown();
                conn.await.map_err(Into::into)
            }
        }
    };
    if let Err(error) = result {
        tracing::trace!(%error, "connection ended with an error");
    }
}
