//! Serves the drop-in counter for other sites: `GET /widget.js` and the stylesheet it links,
//! `GET /widget.css` (both in `assets/`). A page adds one tag,
//! `<script src="http://node:3000/widget.js" data-room="page" defer></script>`, and the script
//! loads this node's socket.io-client bundle, connects back and renders "12 online · 3 on this
//! page" (README, "Add a live counter to any site in one line").
//!
//! The files are cached by browsers like the bundle ([`crate::bundle`]): `Cache-Control`, a strong
//! `ETag` per representation, `304 Not Modified`, and gzip when the browser takes it. CORS comes
//! from the layer every route shares (`cors_origins`).

use std::hash::{DefaultHasher, Hasher};
use std::io::Write;
use std::sync::LazyLock;

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::bundle::{accepts_gzip, matches_if_none_match};

/// Browsers may reuse a copy this long, then revalidate it with `If-None-Match` (as the bundle).
const CACHE_CONTROL: &str = "public, max-age=3600";

static SCRIPT: LazyLock<Asset> =
    LazyLock::new(|| Asset::new(include_bytes!("assets/widget.js"), "application/javascript; charset=utf-8"));
static STYLE: LazyLock<Asset> =
    LazyLock::new(|| Asset::new(include_bytes!("assets/widget.css"), "text/css; charset=utf-8"));

/// `GET /widget.js`: the widget's script.
pub async fn script(request: HeaderMap) -> Response {
    SCRIPT.respond(&request)
}

/// `GET /widget.css`: the stylesheet the script links (rules without specificity, so the page's
/// own rules win).
pub async fn style(request: HeaderMap) -> Response {
    STYLE.respond(&request)
}

/// One file in its two representations, each with its own strong tag.
struct Asset {
    content_type: &'static str,
    body: Bytes,
    etag: HeaderValue,
    gzip: Bytes,
    gzip_etag: HeaderValue,
}

impl Asset {
    fn new(body: &'static [u8], content_type: &'static str) -> Self {
        let mut hasher = DefaultHasher::new();
        hasher.write(body);
        // DefaultHasher::new() has fixed keys: every node running this build sends the same tag.
        let digest = format!("{:016x}", hasher.finish());
        let tag = |suffix: &str| {
            HeaderValue::try_from(format!("\"{digest}{suffix}\""))
                .expect("a hex digest is a valid header value")
        };
        Self {
            content_type,
            body: Bytes::from_static(body),
            etag: tag(""),
            gzip: Bytes::from(gzip(body)),
            gzip_etag: tag("-gzip"),
        }
    }

    fn respond(&self, request: &HeaderMap) -> Response {
        let gzip = accepts_gzip(request);
        let (body, etag) = if gzip { (&self.gzip, &self.gzip_etag) } else { (&self.body, &self.etag) };
        let mut response = if matches_if_none_match(request, etag) {
            StatusCode::NOT_MODIFIED.into_response()
        } else {
            let mut response = body.clone().into_response();
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(self.content_type));
            if gzip {
                headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            }
            response
        };
        let headers = response.headers_mut();
        headers.insert(header::ETAG, etag.clone());
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(CACHE_CONTROL));
        headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
        // Loaded by other sites' pages: never let a browser sniff it into another type.
        headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        response
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(data).expect("writing into memory cannot fail");
    encoder.finish().expect("writing into memory cannot fail")
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    async fn get(path: &str, pairs: &[(header::HeaderName, &str)]) -> Response {
        let request: HeaderMap = pairs
            .iter()
            .map(|(name, value)| (name.clone(), HeaderValue::from_str(value).expect("ascii")))
            .collect();
        match path {
            "/widget.js" => script(request).await,
            _ => style(request).await,
        }
    }

    async fn body(response: Response) -> Vec<u8> {
        axum::body::to_bytes(response.into_body(), 1 << 20).await.expect("body").to_vec()
    }

    #[tokio::test]
    async fn the_script_is_served_plain_or_gzipped_with_its_own_tag_each() {
        let plain = get("/widget.js", &[]).await;
        assert_eq!(plain.status(), StatusCode::OK);
        assert_eq!(plain.headers()[header::CONTENT_TYPE], "application/javascript; charset=utf-8");
        assert_eq!(plain.headers()[header::CACHE_CONTROL], "public, max-age=3600");
        assert!(plain.headers().get(header::CONTENT_ENCODING).is_none());
        let plain_tag = plain.headers()[header::ETAG].clone();
        let plain_body = body(plain).await;
        assert_eq!(plain_body, include_bytes!("assets/widget.js"));

        let zipped = get("/widget.js", &[(header::ACCEPT_ENCODING, "gzip, br")]).await;
        assert_eq!(zipped.headers()[header::CONTENT_ENCODING], "gzip");
        assert_ne!(zipped.headers()[header::ETAG], plain_tag);
        let mut unzipped = Vec::new();
        flate2::read::GzDecoder::new(&body(zipped).await[..]).read_to_end(&mut unzipped).expect("gzip");
        assert_eq!(unzipped, plain_body);
    }

    #[tokio::test]
    async fn a_matching_tag_gets_304_without_a_body() {
        let first = get("/widget.css", &[(header::ACCEPT_ENCODING, "gzip")]).await;
        assert_eq!(first.headers()[header::CONTENT_TYPE], "text/css; charset=utf-8");
        let tag = first.headers()[header::ETAG].to_str().expect("ascii").to_owned();
        let again =
            get("/widget.css", &[(header::ACCEPT_ENCODING, "gzip"), (header::IF_NONE_MATCH, &tag)]).await;
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(again.headers()[header::ETAG], tag.as_str());
        assert!(body(again).await.is_empty());
        let other = get("/widget.css", &[(header::IF_NONE_MATCH, &tag)]).await;
        assert_eq!(other.status(), StatusCode::OK, "the plain copy has another tag than the gzipped one");
    }
}
