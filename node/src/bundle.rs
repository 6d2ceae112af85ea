//! Serves the official socket.io-client browser bundle at `/socket.io/socket.io.js`, as the
//! Node server does, so a page on another host can load the client from the node it talks to.
//!
//! The bundle is someone else's code, so it is not in this repository: the test script and the
//! container image copy it from the npm package into `client_bundle_dir`. Without a local copy the
//! node redirects to the official CDN copy of the same version.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};

/// The files served, as named in the npm package's `dist/` folder.
pub const FILES: [&str; 4] = ["socket.io.js", "socket.io.js.map", "socket.io.min.js", "socket.io.min.js.map"];

/// The bundle files read at startup, or the version to redirect to.
#[derive(Clone)]
pub struct ClientBundle {
    files: Arc<HashMap<&'static str, Bytes>>,
    version: String,
}

impl ClientBundle {
    /// Reads whatever of [`FILES`] exists in `dir`; logs once if nothing does.
    pub fn load(dir: &Path, version: &str) -> Self {
        let files: HashMap<_, _> = FILES
            .iter()
            .filter_map(|name| std::fs::read(dir.join(name)).ok().map(|data| (*name, Bytes::from(data))))
            .collect();
        if files.is_empty() {
            tracing::info!(dir = %dir.display(), "no local socket.io-client bundle; /socket.io/socket.io.js redirects to the CDN");
        }
        Self { files: Arc::new(files), version: version.to_owned() }
    }
}

/// `GET /socket.io/{file}` for the bundle files.
pub async fn serve(State(bundle): State<ClientBundle>, UrlPath(file): UrlPath<String>) -> Response {
    let Some(name) = FILES.iter().find(|name| **name == file) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let Some(data) = bundle.files.get(name) else {
        let url = format!("https://cdn.socket.io/{}/{name}", bundle.version);
        return Redirect::temporary(&url).into_response();
    };
    let content_type =
        if name.ends_with(".map") { "application/json" } else { "application/javascript; charset=utf-8" };
    let mut response = data.clone().into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600"));
    response
}
