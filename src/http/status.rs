//! The status page at `/status` (when the control API is on): one HTML page, its script and
//! its style sheet, compiled into the binary (`include_str!`), no CDN, so it works on a LAN with
//! no internet and on a phone (responsive layout). The page holds no data: its script reads
//! the control API (`/api/v1/...`, and the event stream) with the token the user pastes once
//! (kept in the tab's sessionStorage), so the page itself needs no auth, like the API's reads
//! from loopback. `/` redirects here. Served with a Content-Security-Policy that allows only
//! these files and same-origin requests.

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue, LOCATION};
use hyper::{Response, StatusCode};

const HTML: &str = include_str!("status/index.html");
const SCRIPT: &str = include_str!("status/app.js");
const STYLE: &str = include_str!("status/app.css");

/// The page's own policy: nothing from elsewhere, no inline script or style.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                   connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
                   form-action 'none'; frame-ancestors 'none'";

/// The response for `path` when it is one of the page's files (or `/`, a redirect).
pub fn asset(path: &str) -> Option<Response<Full<Bytes>>> {
    let (body, kind) = match path {
        "/" => {
            let mut r = Response::new(Full::new(Bytes::new()));
            *r.status_mut() = StatusCode::SEE_OTHER;
            r.headers_mut()
                .insert(LOCATION, HeaderValue::from_static("/status"));
            return Some(r);
        }
        "/status" | "/status/" => (HTML, "text/html; charset=utf-8"),
        "/status/app.js" => (SCRIPT, "text/javascript; charset=utf-8"),
        "/status/app.css" => (STYLE, "text/css; charset=utf-8"),
        _ => return None,
    };
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    let headers = r.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(kind));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        hyper::header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        hyper::header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        hyper::header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    Some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_and_its_files_are_served_and_nothing_else() {
        let page = asset("/status").expect("page");
        assert_eq!(page.headers()[CONTENT_TYPE], "text/html; charset=utf-8");
        assert!(
            page.headers()["content-security-policy"]
                .to_str()
                .expect("ascii")
                .contains("script-src 'self'")
        );
        assert!(HTML.contains("/status/app.js") && HTML.contains("/status/app.css"));
        assert!(
            !HTML.contains("http://") && !HTML.contains("https://"),
            "no CDN"
        );
        assert!(!SCRIPT.contains("http://") && !SCRIPT.contains("https://"));
        assert!(
            HTML.contains("name=\"viewport\""),
            "phones get the mobile layout"
        );
        assert_eq!(
            asset("/").expect("redirect").status(),
            StatusCode::SEE_OTHER
        );
        assert!(asset("/status/other.js").is_none());
        assert!(asset("/nic/update").is_none());
    }
}
