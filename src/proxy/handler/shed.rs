//! The answer to a request an env will not take now: 503 with a jittered `Retry-After`, as the
//! waiting-room page for browsers and as a short JSON or text body for everything else.
//!
//! Owns: the page template, content negotiation (does the client prefer HTML?), the jitter, and
//! the recording of a shed answer. Must not touch: the decision to shed
//! ([`crate::proxy::protect::admission`]).
//!
//! The jitter (base ±50%, whole seconds) spreads the retries of a herd over a second or more
//! instead of bringing them all back at the same instant. The page refreshes itself after the
//! same delay twice over: a `<meta http-equiv="refresh">` in the built-in page and a `Refresh`
//! header, so a custom page without the meta tag still comes back by itself.
//!
//! A refresh is a `GET` of the same address: it repeats a shed `GET` or `HEAD`, but not a form's
//! `POST` (or any other method), whose data would be lost without a word. A request of any other
//! method gets [`UNSENT_PAGE`] instead (also in place of a custom page, which may refresh): no
//! refresh, and it says that what was sent did not arrive and how to send it again.

use std::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};

use super::answer::{ENV_HEADER_NAME, ERROR_HEADER};
use crate::metrics::{Outcome, Scope};
use crate::proxy::upstream::body::RespBody;
use crate::proxy::Proxy;
use crate::router::Env;

/// The placeholder a waiting-room page may contain, replaced by the seconds until it refreshes.
pub(crate) const RETRY_PLACEHOLDER: &str = "{retry_after}";

/// The built-in waiting-room page.
pub(crate) const DEFAULT_PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="{retry_after}">
<title>Busy, please wait</title>
<style>
body{font-family:system-ui,sans-serif;max-width:36em;margin:12vh auto;padding:0 1em;color:#222;line-height:1.5}
h1{font-size:1.5em}.note{color:#555}
</style>
</head>
<body>
<h1>We are letting people in a few at a time</h1>
<p>The service is very busy right now. So that it keeps working for everyone, new visits are
let in gradually instead of all at once.</p>
<p><strong>This page will try again by itself in {retry_after} seconds.</strong> There is no need
to reload it; reloading sooner does not get you in faster.</p>
<p class="note">Nothing you were doing has been lost.</p>
</body>
</html>
"#;

/// The page for a shed request the refresh would not repeat (a form's `POST`, any method but
/// `GET` and `HEAD`): it does not reload itself, and says what to do.
pub(crate) const UNSENT_PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Busy: your form was not sent</title>
<style>
body{font-family:system-ui,sans-serif;max-width:36em;margin:12vh auto;padding:0 1em;color:#222;line-height:1.5}
h1{font-size:1.5em}.note{color:#555}
</style>
</head>
<body>
<h1>Your form was not sent</h1>
<p>The service is very busy right now. So that it keeps working for everyone, new visits are
let in gradually instead of all at once, and what you just sent was not let in.</p>
<p><strong>Your form was not sent and nothing was changed.</strong> Go back (your browser's back
button), wait about {retry_after} seconds, and send it again.</p>
<p class="note">This page does not reload by itself, so nothing is sent twice.</p>
</body>
</html>
"#;

/// Whether a refresh (a `GET` of the same address) repeats a request of `method`.
pub(crate) fn refresh_repeats(method: &Method) -> bool {
    *method == Method::GET || *method == Method::HEAD
}

/// Why a request was shed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cause {
    /// The env's admission limit was full for longer than its queue timeout.
    Overloaded,
    /// The env's new-session rate had no token for a new connection or tunnel.
    NewSessions,
}

impl Cause {
    /// Value of the `x-cutover-error` header.
    pub(crate) fn code(self) -> &'static str {
        match self {
            Cause::Overloaded => "shed",
            Cause::NewSessions => "new-sessions",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Cause::Overloaded => "is at its limit of requests in flight",
            Cause::NewSessions => "is admitting new sessions gradually",
        }
    }
}

/// The prepared waiting-room page and the `Retry-After` base.
#[derive(Debug)]
pub(crate) struct ShedAnswers {
    /// The page split at each placeholder.
    parts: Vec<Bytes>,
    /// [`UNSENT_PAGE`] split at each placeholder.
    unsent: Vec<Bytes>,
    base_s: u32,
}

/// What kind of body a client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wants {
    Html,
    Json,
    Text,
}

impl ShedAnswers {
    pub(crate) fn new(page: Option<&str>, retry_after_s: u32) -> Self {
        let split = |page: &str| {
            page.split(RETRY_PLACEHOLDER)
                .map(|p| Bytes::copy_from_slice(p.as_bytes()))
                .collect()
        };
        ShedAnswers {
            parts: split(page.unwrap_or(DEFAULT_PAGE)),
            unsent: split(UNSENT_PAGE),
            base_s: retry_after_s.max(1),
        }
    }

    /// A `Retry-After` for one answer: the base ±50%, in whole seconds, at least 1.
    pub(crate) fn retry_after(&self) -> u32 {
        jitter(self.base_s, rand::random::<f64>())
    }

    /// The 503 for a request of `env` shed for `cause`, `retry` seconds from now. `repeat`:
    /// whether a refresh would repeat the request ([`refresh_repeats`]); if not, the HTML page
    /// is [`UNSENT_PAGE`], without a `Refresh`.
    pub(crate) fn answer(
        &self,
        env: Env,
        cause: Cause,
        wants: Wants,
        version: Version,
        retry: u32,
        repeat: bool,
    ) -> Response<RespBody> {
        let (ctype, body) = match wants {
            Wants::Html if repeat => ("text/html; charset=utf-8", fill(&self.parts, retry)),
            Wants::Html => ("text/html; charset=utf-8", fill(&self.unsent, retry)),
            Wants::Json => (
                "application/json",
                Bytes::from(format!(
                    "{{\"error\":\"{}\",\"env\":\"{env}\",\"retry_after_s\":{retry},\"message\":\"the {env} environment {}; retry after {retry} s\"}}\n",
                    cause.code(),
                    cause.describe()
                )),
            ),
            Wants::Text => (
                "text/plain; charset=utf-8",
                Bytes::from(format!(
                    "cutover: the {env} environment {}; retry after {retry} s\n",
                    cause.describe()
                )),
            ),
        };
        let mut resp = Response::new(RespBody::text(body));
        *resp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        let h = resp.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
        h.insert(header::RETRY_AFTER, HeaderValue::from(retry));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if wants == Wants::Html && repeat {
            h.insert(header::REFRESH, HeaderValue::from(retry));
        }
        h.insert(ERROR_HEADER, HeaderValue::from_static(cause.code()));
        h.insert(ENV_HEADER_NAME, HeaderValue::from_static(env.as_str()));
        if cause == Cause::NewSessions && version <= Version::HTTP_11 {
            // A refused newcomer comes back on a new connection (and asks for a token again)
            // rather than slipping in on this one.
            h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }

    #[cfg(test)]
    fn page(&self, retry: u32) -> Bytes {
        fill(&self.parts, retry)
    }
}

/// A page split at its placeholders, with `retry` put in each.
fn fill(parts: &[Bytes], retry: u32) -> Bytes {
    if parts.len() == 1 {
        return parts[0].clone();
    }
    let n = retry.to_string();
    let len = parts.iter().map(Bytes::len).sum::<usize>() + n.len() * parts.len();
    let mut out = BytesMut::with_capacity(len);
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            out.put_slice(n.as_bytes());
        }
        out.put_slice(p);
    }
    out.freeze()
}

impl Proxy {
    /// Answer a request `env` will not take (before anything was sent), recording the shed on
    /// the env and for users.
    pub(super) fn shed_answer<B>(
        &self,
        env: Env,
        cause: Cause,
        req: &Request<B>,
        start: Instant,
    ) -> Response<RespBody> {
        let now = Instant::now();
        let resp = self.shed_request(env, cause, req, now);
        let latency = start.elapsed();
        self.metrics
            .record(Scope::from(env), Outcome::Shed, latency, now);
        self.metrics
            .record(Scope::Users, Outcome::Shed, latency, now);
        resp
    }

    /// The 503 for a shed request (no metrics of the request itself).
    pub(super) fn shed_request<B>(
        &self,
        env: Env,
        cause: Cause,
        req: &Request<B>,
        now: Instant,
    ) -> Response<RespBody> {
        let wants = wants(req.headers().get(header::ACCEPT));
        let repeat = refresh_repeats(req.method());
        self.shed_with(env, cause, wants, req.version(), repeat, now)
    }

    /// The 503 for a shed request whose parts were already taken apart (no metrics of the
    /// request itself).
    pub(super) fn shed_response(
        &self,
        env: Env,
        cause: Cause,
        parts: &http::request::Parts,
        now: Instant,
    ) -> Response<RespBody> {
        let wants = wants(parts.headers.get(header::ACCEPT));
        let repeat = refresh_repeats(&parts.method);
        self.shed_with(env, cause, wants, parts.version, repeat, now)
    }

    fn shed_with(
        &self,
        env: Env,
        cause: Cause,
        wants: Wants,
        version: http::Version,
        repeat: bool,
        now: Instant,
    ) -> Response<RespBody> {
        if wants == Wants::Html {
            self.metrics.record_waiting_room(env, now);
        }
        let retry = self.shed.retry_after();
        self.shed.answer(env, cause, wants, version, retry, repeat)
    }
}

/// `base` ±50% by `unit` in 0..1, rounded to whole seconds, at least 1.
pub(crate) fn jitter(base: u32, unit: f64) -> u32 {
    let unit = if unit.is_finite() {
        unit.clamp(0.0, 1.0)
    } else {
        0.5
    };
    let v = f64::from(base) * (0.5 + unit);
    (v.round() as u32).max(1)
}

/// What the `Accept` header prefers: HTML when `text/html` (or XHTML) is named explicitly with
/// a quality at least that of JSON; JSON when JSON is named; text otherwise. A browser's
/// `text/html,...,*/*;q=0.8` is HTML; curl's `*/*` and `application/json` are not.
pub(crate) fn wants(accept: Option<&HeaderValue>) -> Wants {
    let Some(accept) = accept.and_then(|a| a.to_str().ok()) else {
        return Wants::Text;
    };
    let (mut html, mut json) = (None::<f32>, None::<f32>);
    for item in accept.split(',') {
        let mut params = item.split(';');
        let media = params.next().unwrap_or("").trim();
        let q = params
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        let slot = if media.eq_ignore_ascii_case("text/html")
            || media.eq_ignore_ascii_case("application/xhtml+xml")
        {
            &mut html
        } else if media.eq_ignore_ascii_case("application/json")
            || media.to_ascii_lowercase().ends_with("+json")
        {
            &mut json
        } else {
            continue;
        };
        *slot = Some(slot.map_or(q, |s| s.max(q)));
    }
    match (html, json) {
        (Some(h), j) if h > 0.0 && h >= j.unwrap_or(0.0) => Wants::Html,
        (_, Some(j)) if j > 0.0 => Wants::Json,
        _ => Wants::Text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(s: &str) -> Wants {
        wants(Some(&HeaderValue::from_str(s).expect("header")))
    }

    #[test]
    fn browsers_get_html_and_api_clients_do_not() {
        assert_eq!(
            w("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
            Wants::Html
        );
        assert_eq!(w("application/json"), Wants::Json);
        assert_eq!(w("application/json, text/html;q=0.5"), Wants::Json);
        assert_eq!(w("application/problem+json"), Wants::Json);
        assert_eq!(w("*/*"), Wants::Text);
        assert_eq!(w("text/html;q=0"), Wants::Text);
        assert_eq!(wants(None), Wants::Text);
    }

    #[test]
    fn jitter_stays_within_half_of_the_base() {
        assert_eq!(jitter(2, 0.0), 1);
        assert_eq!(jitter(2, 0.5), 2);
        assert_eq!(jitter(2, 1.0), 3);
        assert_eq!(jitter(1, 0.0), 1);
        assert_eq!(jitter(10, f64::NAN), 10);
        for i in 0..=100 {
            let v = jitter(10, f64::from(i) / 100.0);
            assert!((5..=15).contains(&v), "{v}");
        }
    }

    #[test]
    fn the_page_carries_the_retry_time_and_refreshes_itself() {
        let s = ShedAnswers::new(None, 2);
        let r = s.answer(
            Env::Old,
            Cause::Overloaded,
            Wants::Html,
            Version::HTTP_11,
            3,
            true,
        );
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()[header::RETRY_AFTER], "3");
        assert_eq!(r.headers()[header::REFRESH], "3");
        assert!(!r.headers().contains_key(header::CONNECTION));
        let page = s.page(3);
        let text = std::str::from_utf8(&page).expect("utf-8");
        assert!(text.contains(r#"<meta http-equiv="refresh" content="3">"#));
        assert!(text.contains("try again by itself in 3 seconds"));
        assert!(!text.contains(RETRY_PLACEHOLDER));

        let custom = ShedAnswers::new(Some("<p>busy</p>"), 2);
        assert_eq!(&custom.page(9)[..], b"<p>busy</p>");
        let r = custom.answer(
            Env::New,
            Cause::NewSessions,
            Wants::Json,
            Version::HTTP_11,
            4,
            true,
        );
        assert_eq!(r.headers()[header::CONNECTION], "close");
        assert_eq!(r.headers()[ERROR_HEADER], "new-sessions");
    }

    #[test]
    fn a_shed_form_is_not_resubmitted_and_the_page_says_it_was_not_sent() {
        for page in [
            None,
            Some(r#"<meta http-equiv="refresh" content="{retry_after}">"#),
        ] {
            let s = ShedAnswers::new(page, 2);
            let r = s.answer(
                Env::Old,
                Cause::Overloaded,
                Wants::Html,
                Version::HTTP_11,
                3,
                refresh_repeats(&Method::POST),
            );
            assert_eq!(r.status(), 503);
            assert_eq!(r.headers()[header::RETRY_AFTER], "3");
            assert!(!r.headers().contains_key(header::REFRESH));
            let text = fill(&s.unsent, 3);
            let text = std::str::from_utf8(&text).expect("utf-8");
            assert!(!text.to_ascii_lowercase().contains("http-equiv"));
            assert!(text.contains("Your form was not sent"));
            assert!(text.contains("about 3 seconds"));
            assert!(!text.contains("has been lost"));
        }
        for m in [Method::GET, Method::HEAD] {
            assert!(refresh_repeats(&m), "{m}");
        }
        for m in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            assert!(!refresh_repeats(&m), "{m}");
        }
    }
}
