//! A layer in front of the Socket.IO service that hands engineioxide a request head of its own.
//!
//! engineioxide keeps the `Parts` of the request that opened a session for the socket's whole
//! life (and, on the polling-then-upgrade path, the upgrade request's `Parts` for the WebSocket
//! task's life too). hyper makes the URI and every header value a slice of the connection's read
//! buffer (8 KiB, 16 KiB behind hyper-util's HTTP/2 sniff), so each idle socket would pin that
//! whole buffer. engineioxide reads only the query, `Sec-WebSocket-Key` and `Content-Type`, and
//! rollcall only the query (`sockets::mod`); the copy below carries exactly those, in
//! allocations of their own, plus hyper's upgrade handle (the WebSocket needs it) and nothing
//! else: no other header, no axum extension.

use std::task::{Context, Poll};

use axum::http::{HeaderName, HeaderValue, Request, Uri, header};
use tower::{Layer, Service};

/// The only headers the Socket.IO service reads.
const KEPT: [HeaderName; 2] = [header::SEC_WEBSOCKET_KEY, header::CONTENT_TYPE];

/// Wraps a service in [`LeanHead`] when `enabled`, else passes requests through untouched.
#[derive(Clone, Copy, Debug)]
pub struct LeanHeadLayer {
    /// Whether to copy the head (setting `lean_request_head`).
    pub enabled: bool,
}

impl<S> Layer<S> for LeanHeadLayer {
    type Service = LeanHead<S>;

    fn layer(&self, inner: S) -> Self::Service {
        LeanHead { inner, enabled: self.enabled }
    }
}

/// See the module documentation.
#[derive(Clone, Debug)]
pub struct LeanHead<S> {
    inner: S,
    enabled: bool,
}

impl<S, B> Service<Request<B>> for LeanHead<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let request = if self.enabled { lean(request) } else { request };
        self.inner.call(request)
    }
}

/// The same request with a head that borrows nothing from the connection's buffer.
pub fn lean<B>(request: Request<B>) -> Request<B> {
    let (mut parts, body) = request.into_parts();
    let mut lean = Request::new(body);
    *lean.method_mut() = parts.method;
    *lean.version_mut() = parts.version;
    *lean.uri_mut() = copied_uri(&parts.uri);
    let headers = lean.headers_mut();
    headers.reserve(KEPT.len());
    for name in KEPT {
        if let Some(value) = parts.headers.get(&name).and_then(|v| HeaderValue::from_bytes(v.as_bytes()).ok())
        {
            headers.insert(name, value);
        }
    }
    if let Some(upgrade) = parts.extensions.remove::<hyper::upgrade::OnUpgrade>() {
        lean.extensions_mut().insert(upgrade);
    }
    lean
}

/// The path and query in a `String` of their own (a request URI is origin-form: nothing else).
fn copied_uri(uri: &Uri) -> Uri {
    let path_and_query = uri.path_and_query().map_or("/", |pq| pq.as_str()).to_owned();
    Uri::try_from(path_and_query).unwrap_or_else(|_| uri.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_copy_keeps_what_engineioxide_reads_and_nothing_else() {
        let request = Request::builder()
            .method("POST")
            .uri("http://node:3000/socket.io/?EIO=4&transport=polling&sid=abc&room=r1")
            .header(header::CONTENT_TYPE, "text/plain;charset=UTF-8")
            .header(header::SEC_WEBSOCKET_KEY, "dGhlIHNhbXBsZSBub25jZQ==")
            .header(header::COOKIE, "session=secret")
            .header(header::USER_AGENT, "test")
            .extension(42_u32)
            .body(())
            .expect("request");
        let lean = lean(request);
        assert_eq!(lean.method(), "POST");
        assert_eq!(lean.uri().path(), "/socket.io/");
        assert_eq!(lean.uri().query(), Some("EIO=4&transport=polling&sid=abc&room=r1"));
        assert_eq!(lean.headers().len(), 2);
        assert_eq!(lean.headers()[header::CONTENT_TYPE], "text/plain;charset=UTF-8");
        assert_eq!(lean.headers()[header::SEC_WEBSOCKET_KEY], "dGhlIHNhbXBsZSBub25jZQ==");
        assert!(lean.extensions().get::<u32>().is_none(), "extensions are dropped");
    }
}
