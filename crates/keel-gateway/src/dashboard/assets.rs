//! The dashboard's page and its assets, embedded in the binary: nothing is
//! fetched at build or run time, and an operator needs no build step. The
//! page holds no data (it asks `/gateway/dashboard` with the operator's
//! credential), so these routes are public.

use axum::http::header;
use axum::response::{IntoResponse, Response};

/// The page's Content-Security-Policy: its own scripts, styles and API
/// only, no inline script, no frames, nothing from another origin. uPlot
/// sets styles through the DOM, which `style-src` does not govern; the
/// `data:` image is the empty favicon the page declares so the browser
/// does not ask the proxy for `/favicon.ico`.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// Asked again on every load: a gateway upgraded in place serves the new
/// page at once (the files are small and come from memory).
const CACHE_CONTROL: &str = "no-cache";

const HTML: &str = include_str!("../../assets/dashboard.html");
const APP_JS: &str = include_str!("../../assets/dashboard.js");
const APP_CSS: &str = include_str!("../../assets/dashboard.css");
const UPLOT_JS: &str = include_str!("../../assets/vendor/uplot-1.6.32/uPlot.iife.min.js");
const UPLOT_CSS: &str = include_str!("../../assets/vendor/uplot-1.6.32/uPlot.min.css");

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, CACHE_CONTROL),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            // The token lives in the fragment, which is never sent; this
            // keeps even the path out of any request the page makes.
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        body,
    )
        .into_response()
}

/// `GET /dashboard`.
pub async fn page() -> Response {
    asset("text/html; charset=utf-8", HTML)
}

/// `GET /dashboard/app.js`.
pub async fn app_js() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

/// `GET /dashboard/app.css`.
pub async fn app_css() -> Response {
    asset("text/css; charset=utf-8", APP_CSS)
}

/// `GET /dashboard/uplot.js`.
pub async fn uplot_js() -> Response {
    asset("text/javascript; charset=utf-8", UPLOT_JS)
}

/// `GET /dashboard/uplot.css`.
pub async fn uplot_css() -> Response {
    asset("text/css; charset=utf-8", UPLOT_CSS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_has_no_inline_script_and_no_external_url() {
        for (name, text) in [("html", HTML), ("js", APP_JS), ("css", APP_CSS)] {
            assert!(!text.contains("http://"), "{name} names an http URL");
            assert!(!text.contains("https://"), "{name} names an https URL");
        }
        // Every <script> loads a file of ours and has no body.
        for chunk in HTML.split("<script").skip(1) {
            let tag_end = chunk.find('>').unwrap_or(chunk.len());
            assert!(chunk[..tag_end].contains("src=\"/dashboard/"), "{chunk}");
            assert!(chunk[tag_end..].starts_with("></script>"), "{chunk}");
        }
        // No inline event handler (` onclick=` and the like).
        let handler = HTML.split(" on").skip(1).any(|rest| {
            let word = rest.trim_start_matches(|c: char| c.is_ascii_lowercase());
            word.len() < rest.len() && word.starts_with('=')
        });
        assert!(!handler, "an inline event handler");
        for id in [
            "leader",
            "members",
            "alerts",
            "availability",
            "backups",
            "status",
        ] {
            assert!(HTML.contains(&format!("id=\"{id}\"")), "#{id} missing");
        }
    }
}
