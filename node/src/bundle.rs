//! Serves the official socket.io-client browser bundle at `/socket.io/socket.io.js` (also
//! `socket.io.min.js`, both source maps and the package's `LICENSE`), as the Node server does, so
//! a page on another host can load the client from the node it talks to.
//!
//! The bundle is someone else's code, so it is not in this repository: `node/build.rs` takes the
//! pinned npm tarball at build time, checks its integrity and embeds the files with a gzip copy of
//! each. Setting `client_bundle_dir` serves a directory instead. Only a build that could not get
//! the tarball (offline, no `ROLLCALL_CLIENT_BUNDLE_SRC`) redirects to the CDN copy of `client_version`.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hasher};
use std::path::Path;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};

/// One file of the bundle as build.rs embedded it.
struct EmbeddedFile {
    name: &'static str,
    body: &'static [u8],
    gzip: &'static [u8],
    /// Hex digest of `body`: the same on every node running this build.
    etag: &'static str,
}

/// The bundle build.rs embedded.
struct Embedded {
    version: &'static str,
    files: &'static [EmbeddedFile],
}

// Defines `EMBEDDED: Result<Embedded, &str>`: the bundle, or why this build has none.
include!(concat!(env!("OUT_DIR"), "/client_bundle.rs"));

/// The files served, as named in the npm package (`LICENSE` at its root, the rest in `dist/`).
pub const FILES: [&str; 5] =
    ["socket.io.js", "socket.io.js.map", "socket.io.min.js", "socket.io.min.js.map", "LICENSE"];
/// Browsers may reuse a copy this long, then revalidate it with `If-None-Match`.
const CACHE_CONTROL: &str = "public, max-age=3600";

/// One file ready to serve.
struct Asset {
    body: Bytes,
    etag: HeaderValue,
    /// The gzip-encoded body and its own tag (another representation needs another strong tag).
    gzip: Option<(Bytes, HeaderValue)>,
}

/// The bundle files served by this node, or the version to redirect to.
#[derive(Clone)]
pub struct ClientBundle {
    assets: Arc<HashMap<&'static str, Asset>>,
    cdn_version: String,
}

impl ClientBundle {
    /// The files of `dir` when it is set and holds the bundle, else the embedded bundle; logs once
    /// if neither exists (`/socket.io/socket.io.js` then redirects to the CDN copy of `cdn_version`).
    pub fn load(dir: &Path, cdn_version: &str) -> Self {
        let from_dir = if dir.as_os_str().is_empty() { None } else { read_dir(dir) };
        let assets = match (from_dir, EMBEDDED) {
            (Some(assets), _) => {
                tracing::info!(dir = %dir.display(), "serving the socket.io-client bundle from client_bundle_dir");
                assets
            }
            (None, Ok(embedded)) => {
                tracing::debug!(version = embedded.version, "serving the embedded socket.io-client bundle");
                embedded.files.iter().map(|file| (file.name, embedded_asset(file))).collect()
            }
            (None, Err(why)) => {
                tracing::warn!(
                    "this build has no socket.io-client bundle ({why}); /socket.io/socket.io.js redirects to \
                     https://cdn.socket.io/{cdn_version}/ (rebuild with network or ROLLCALL_CLIENT_BUNDLE_SRC)"
                );
                HashMap::new()
            }
        };
        Self { assets: Arc::new(assets), cdn_version: cdn_version.to_owned() }
    }
}

fn embedded_asset(file: &EmbeddedFile) -> Asset {
    Asset {
        body: Bytes::from_static(file.body),
        etag: quoted_tag(file.etag, ""),
        gzip: Some((Bytes::from_static(file.gzip), quoted_tag(file.etag, "-gzip"))),
    }
}

/// The bundle files in `dir` (LICENSE if present); `None`, logged, if one of the scripts or maps
/// cannot be read, so a half-filled directory never mixes with the embedded copy.
fn read_dir(dir: &Path) -> Option<HashMap<&'static str, Asset>> {
    let mut assets = HashMap::new();
    for name in FILES {
        match std::fs::read(dir.join(name)) {
            Ok(data) => {
                let mut hasher = DefaultHasher::new();
                hasher.write(&data);
                let etag = quoted_tag(&format!("{:016x}", hasher.finish()), "");
                assets.insert(name, Asset { body: Bytes::from(data), etag, gzip: None });
            }
            Err(_) if name == "LICENSE" => {}
            Err(error) => {
                tracing::warn!(dir = %dir.display(), file = name, %error, "client_bundle_dir ignored: cannot read the bundle there");
                return None;
            }
        }
    }
    Some(assets)
}

fn quoted_tag(digest: &str, suffix: &str) -> HeaderValue {
    HeaderValue::try_from(format!("\"{digest}{suffix}\"")).expect("a hex digest is a valid header value")
}

/// `GET /socket.io/{file}` for the bundle files.
pub async fn serve(
    State(bundle): State<ClientBundle>,
    UrlPath(file): UrlPath<String>,
    request: HeaderMap,
) -> Response {
    let Some(name) = FILES.iter().find(|name| **name == file) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let Some(asset) = bundle.assets.get(name) else {
        if *name == "LICENSE" {
            return StatusCode::NOT_FOUND.into_response();
        }
        let url = format!("https://cdn.socket.io/{}/{name}", bundle.cdn_version);
        return Redirect::temporary(&url).into_response();
    };
    let (body, etag, encoding) = match &asset.gzip {
        Some((gzip, etag)) if accepts_gzip(&request) => (gzip, etag, Some("gzip")),
        _ => (&asset.body, &asset.etag, None),
    };
    let mut response = if matches_if_none_match(&request, etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut response = body.clone().into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type(name)));
        if let Some(encoding) = encoding {
            headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static(encoding));
        }
        response
    };
    let headers = response.headers_mut();
    headers.insert(header::ETAG, etag.clone());
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(CACHE_CONTROL));
    if asset.gzip.is_some() {
        headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
    response
}

fn content_type(name: &str) -> &'static str {
    if name.ends_with(".map") {
        "application/json"
    } else if name.ends_with(".js") {
        "application/javascript; charset=utf-8"
    } else {
        "text/plain; charset=utf-8"
    }
}

/// Whether `Accept-Encoding` lists gzip without `q=0`.
pub(crate) fn accepts_gzip(request: &HeaderMap) -> bool {
    let codings = request.get_all(header::ACCEPT_ENCODING).iter().filter_map(|value| value.to_str().ok());
    codings.flat_map(|value| value.split(',')).any(|coding| {
        let mut parts = coding.split(';').map(str::trim);
        let name = parts.next().unwrap_or_default();
        let refused = parts
            .any(|param| param.strip_prefix("q=").is_some_and(|q| q.parse::<f32>().is_ok_and(|q| q <= 0.0)));
        (name.eq_ignore_ascii_case("gzip") || name.eq_ignore_ascii_case("x-gzip")) && !refused
    })
}

/// `If-None-Match` with the weak comparison RFC 9110 prescribes for it: `W/` is ignored.
pub(crate) fn matches_if_none_match(request: &HeaderMap, etag: &HeaderValue) -> bool {
    let etag = etag.as_bytes();
    let tags = request.get_all(header::IF_NONE_MATCH).iter().filter_map(|value| value.to_str().ok());
    tags.flat_map(|value| value.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag).as_bytes() == etag)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| (name.clone(), HeaderValue::from_str(value).expect("ascii")))
            .collect()
    }

    #[test]
    fn gzip_is_chosen_unless_refused() {
        let accepts = |value: &str| accepts_gzip(&headers(&[(header::ACCEPT_ENCODING, value)]));
        assert!(accepts("gzip, deflate, br"));
        assert!(accepts("br;q=1.0, GZIP;q=0.5"));
        assert!(!accepts("gzip;q=0, br"));
        assert!(!accepts("identity"));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    #[test]
    fn if_none_match_compares_weakly_and_accepts_lists_and_star() {
        let etag = HeaderValue::from_static("\"abc\"");
        let matches = |value: &str| matches_if_none_match(&headers(&[(header::IF_NONE_MATCH, value)]), &etag);
        assert!(matches("\"abc\""));
        assert!(matches("W/\"abc\""));
        assert!(matches("\"x\", \"abc\""));
        assert!(matches("*"));
        assert!(!matches("\"abc-gzip\""));
        assert!(!matches_if_none_match(&HeaderMap::new(), &etag));
    }

    #[tokio::test]
    async fn a_build_without_the_bundle_redirects_to_the_cdn() {
        let bundle = ClientBundle { assets: Arc::default(), cdn_version: "4.8.1".to_owned() };
        let get = |file: &str| serve(State(bundle.clone()), UrlPath(file.to_owned()), HeaderMap::new());
        let response = get("socket.io.min.js").await;
        assert_eq!(response.status(), StatusCode::TEMPORARY_REDIRECT);
        assert_eq!(response.headers()[header::LOCATION], "https://cdn.socket.io/4.8.1/socket.io.min.js");
        assert_eq!(get("LICENSE").await.status(), StatusCode::NOT_FOUND, "the CDN has no LICENSE");
        assert_eq!(get("other.js").await.status(), StatusCode::NOT_FOUND);
    }
}
