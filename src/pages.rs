//! Postern's own responses: small, accessible HTML pages with no external assets for browsers, and JSON for
//! everything else. Each carries a reason code and the request id, so that an operator can go from a user's
//! screenshot to the log line. Pages never show tokens, cookies or claims beyond the user's name.

use http::{HeaderValue, Response, StatusCode, header};
use serde_json::json;

use crate::body::{Body, full};

/// One page.
#[derive(Debug, Clone)]
pub struct Page {
    /// HTTP status.
    pub status: StatusCode,
    /// Heading and title.
    pub title: String,
    /// One or two sentences for a person.
    pub message: String,
    /// Reason code (`groups-unauthorized`, `login-state-missing`, …).
    pub reason: &'static str,
    /// The request id.
    pub request_id: String,
    /// Links to offer: `(label, href)`; hrefs must be Postern-relative or already validated.
    pub links: Vec<(String, String)>,
}

impl Page {
    /// A page without links.
    pub fn new(
        status: StatusCode,
        title: impl Into<String>,
        message: impl Into<String>,
        reason: &'static str,
        request_id: &str,
    ) -> Page {
        Page {
            status,
            title: title.into(),
            message: message.into(),
            reason,
            request_id: request_id.to_string(),
            links: Vec::new(),
        }
    }

    /// Adds a link.
    pub fn link(mut self, label: impl Into<String>, href: impl Into<String>) -> Page {
        self.links.push((label.into(), href.into()));
        self
    }

    /// HTML for browsers, JSON otherwise.
    pub fn render(&self, html: bool) -> Response<Body> {
        let (content_type, body) = if html {
            ("text/html; charset=utf-8", self.html())
        } else {
            let body = json!({
                "error": self.reason,
                "message": self.message,
                "request_id": self.request_id,
            });
            ("application/json", body.to_string())
        };
        let mut response = Response::new(full(body));
        *response.status_mut() = self.status;
        let h = response.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        security_headers(h);
        response
    }

    fn html(&self) -> String {
        let mut links = String::new();
        for (label, href) in &self.links {
            links.push_str(&format!("<a class=\"button\" href=\"{}\">{}</a> ", escape(href), escape(label)));
        }
        format!(
            r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · Postern</title>
<style>
body{{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:40rem;margin:4rem auto;padding:0 1rem;color:#1b1f24;line-height:1.5}}
h1{{font-size:1.5rem}} .meta{{color:#57606a;font-size:.875rem}} code{{background:#f3f4f6;padding:.1rem .3rem;border-radius:3px}}
.button{{display:inline-block;margin:.5rem .5rem 0 0;padding:.5rem 1rem;border-radius:6px;background:#0b5cad;color:#fff;text-decoration:none}}
.button:focus{{outline:3px solid #f0b400}}
</style></head>
<body><main>
<h1>{title}</h1>
<p>{message}</p>
<p>{links}</p>
<p class="meta">Status {status} · reason <code>{reason}</code> · request id <code>{request_id}</code></p>
</main></body></html>
"#,
            title = escape(&self.title),
            message = escape(&self.message),
            links = links,
            status = self.status.as_u16(),
            reason = escape(self.reason),
            request_id = escape(&self.request_id),
        )
    }
}

/// Headers on every page Postern itself serves: no caching, no framing, no scripts, no sniffing.
pub fn security_headers(h: &mut http::HeaderMap) {
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

/// True when the client takes HTML (a browser navigating), judged by `Accept`.
pub fn wants_html(headers: &http::HeaderMap) -> bool {
    headers.get_all(header::ACCEPT).iter().filter_map(|v| v.to_str().ok()).any(|v| {
        v.split(',').any(|t| t.trim().split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case("text/html")))
    })
}

/// HTML-escapes text.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A JSON response with Postern's security headers.
pub fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut response = Response::new(full(value.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    security_headers(response.headers_mut());
    response
}

/// A redirect.
pub fn redirect(location: &str) -> Response<Body> {
    let mut response = Response::new(crate::body::empty());
    *response.status_mut() = StatusCode::FOUND;
    if let Ok(v) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_escaped_and_json_is_for_non_browsers() {
        let page = Page::new(StatusCode::FORBIDDEN, "No <access>", "for \"x\"", "groups-unauthorized", "rid")
            .link("Sign out", "/oauth2/sign_out");
        let html = page.html();
        assert!(html.contains("No &lt;access&gt;") && html.contains("for &quot;x&quot;"));
        assert!(html.contains("rid") && html.contains("groups-unauthorized"));
        let mut h = http::HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_static("text/html,application/xhtml+xml;q=0.9"));
        assert!(wants_html(&h));
        h.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        assert!(!wants_html(&h));
    }
}
