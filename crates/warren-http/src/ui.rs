//! The web UI's files, embedded at build time (see `build.rs`) and served by the
//! management listener outside `/api`: `/` is `index.html`; a path that is no file is 404.
//! The UI is static; everything it shows comes from the API with the user's credentials.

use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

include!(concat!(env!("OUT_DIR"), "/ui_assets.rs"));

/// The UI loads nothing from elsewhere and may not be framed.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' data:; \
     style-src 'self' 'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'; \
     base-uri 'none'; form-action 'self'";

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "json" => "application/json",
        "txt" | "md" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// The embedded file at `path`, if there is one (`/` is `/index.html`).
pub(crate) fn asset(path: &str) -> Option<(&'static str, &'static [u8])> {
    let path = if path == "/" { "/index.html" } else { path };
    ASSETS
        .iter()
        .find(|(p, _)| *p == path)
        .map(|(p, bytes)| (content_type(p), *bytes))
}

/// The router's fallback: API paths that match no route are RabbitMQ's 404; other GETs
/// are UI files.
pub(crate) async fn fallback(method: Method, uri: Uri) -> Response {
    let path = uri.path();
    if path == "/api" || path.starts_with("/api/") {
        return ApiError::not_found().into_response();
    }
    if method != Method::GET && method != Method::HEAD {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    let Some((kind, bytes)) = asset(path) else {
        return (StatusCode::NOT_FOUND, "Not Found").into_response();
    };
    let mut response = bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    // Assets change with the binary: revalidate rather than cache stale code.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_is_embedded_and_types_follow_extensions() {
        let (kind, bytes) = asset("/").expect("ui/index.html is embedded");
        assert_eq!(kind, "text/html; charset=utf-8");
        assert!(std::str::from_utf8(bytes).is_ok_and(|s| s.contains("<html")));
        assert!(asset("/no-such-file.js").is_none());
        assert_eq!(content_type("/a/b.css"), "text/css; charset=utf-8");
        assert_eq!(content_type("/x"), "application/octet-stream");
    }
}
