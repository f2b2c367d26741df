//! HTML of the portal (maud: escaped by construction). Pure: values in, markup out. No page ever carries an
//! image, an embedding value or who passed when; charts are inline SVG drawn from published counts only.

use maud::{html, Markup, PreEscaped, DOCTYPE};

use super::i18n::{t, tf, Lang};
use crate::policy::counts::{Published, PublishedCell};
use crate::policy::rfc3339;
use crate::store::RevocationReceipt;

/// The stylesheet, served at `/style.css` (the CSP allows no inline style).
pub const STYLE: &str = "body{font-family:system-ui,'Noto Sans CJK SC',sans-serif;max-width:56rem;margin:1rem auto;\
padding:0 1rem;color:#1b1b1b;line-height:1.45}header{display:flex;justify-content:space-between;align-items:center;\
border-bottom:1px solid #ccc;margin-bottom:1rem}a{color:#0b4f9c}.error{color:#a40000;font-weight:600}\
.ok{color:#116b00;font-weight:600}.code{font-family:monospace;font-size:1.6rem;letter-spacing:.15rem;\
background:#f3f3f3;padding:.3rem .6rem;overflow-wrap:anywhere}table{border-collapse:collapse}td,th{border:1px solid #ccc;\
padding:.2rem .5rem;text-align:left}.pass{color:#116b00}.warn{color:#8a5a00}.fail{color:#a40000;font-weight:700}\
form{margin:.8rem 0}input,button{font-size:1rem;padding:.3rem .6rem}svg text{font-size:10px}#field text{font-size:28px}\
.notice li{margin:.3rem 0}.inline{display:inline}@media print{header form,header a{display:none}}";

/// What the layout needs besides the body.
pub struct Frame<'a> {
    /// Page language.
    pub lang: Lang,
    /// The path of this page (for the language switch).
    pub path: &'a str,
    /// The session's CSRF token (for the sign-out form).
    pub csrf: &'a str,
    /// Signed-in staff name, if any.
    pub staff: Option<&'a str>,
}

/// The page around a body.
pub fn layout(frame: &Frame<'_>, heading: &str, body: Markup) -> Markup {
    let lang = frame.lang;
    html! {
        (DOCTYPE)
        html lang=(lang.tag()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (heading) " · " (t(lang, "title")) }
                link rel="stylesheet" href="/style.css";
            }
            body {
                header {
                    a href={ "/?lang=" (lang.code()) } { strong { (t(lang, "title")) } }
                    span {
                        a id="lang-switch" href={ (frame.path) "?lang=" (lang.other().code()) } { (t(lang, "lang_switch")) }
                        @if let Some(name) = frame.staff {
                            " · " (name) " "
                            form.inline method="post" action="/logout" {
                                input type="hidden" name="csrf" value=(frame.csrf);
                                button id="logout" type="submit" { (t(lang, "logout")) }
                            }
                        }
                    }
                }
                h1 { (heading) }
                (body)
            }
        }
    }
}

/// A hidden CSRF field.
pub fn csrf_field(token: &str) -> Markup {
    html! { input type="hidden" name="csrf" value=(token); }
}

/// An error line, if any.
pub fn error_line(message: Option<&str>) -> Markup {
    html! { @if let Some(m) = message { p.error role="alert" { (m) } } }
}

/// What the consent notice and the signage say, from the config.
#[derive(Clone, Debug)]
pub struct NoticeFacts {
    /// Who runs the gate.
    pub operator: String,
    /// How to reach them.
    pub contact: String,
    /// Which devices hold templates.
    pub held_on: String,
    /// Days an unused template is kept.
    pub max_unused_days: i64,
    /// The notice's version label.
    pub version: String,
}

/// The consent notice's items, in order (also the text whose hash the consent record keeps).
pub fn notice_items(lang: Lang, facts: &NoticeFacts) -> Vec<String> {
    vec![
        t(lang, "notice_purpose").to_owned(),
        t(lang, "notice_kept").to_owned(),
        tf(lang, "notice_how_long", &[("days", &facts.max_unused_days.to_string())]),
        tf(lang, "notice_where", &[("where", &facts.held_on)]),
        t(lang, "notice_revoke").to_owned(),
        t(lang, "notice_alternative").to_owned(),
        tf(lang, "notice_operator", &[("operator", &facts.operator), ("contact", &facts.contact)]),
    ]
}

/// The notice as a list.
pub fn notice(lang: Lang, facts: &NoticeFacts) -> Markup {
    html! {
        ul.notice id="notice" { @for item in notice_items(lang, facts) { li { (item) } } }
        p { small { "v" (facts.version) } }
    }
}

/// Bars per bin for each (method, outcome) series; suppressed bins are outlined, never filled.
pub fn counts_chart(lang: Lang, id: &str, cells: &[PublishedCell], label_of: impl Fn(i64) -> String) -> Markup {
    let mut bins: Vec<i64> = cells.iter().map(|c| c.start).collect();
    bins.sort_unstable();
    bins.dedup();
    let mut series: Vec<_> = cells.iter().map(|c| (c.method, c.outcome)).collect();
    series.sort();
    series.dedup();
    let max = cells
        .iter()
        .filter_map(|c| match c.count {
            Published::Count(n) => Some(n),
            Published::Suppressed => None,
        })
        .max()
        .unwrap_or(0)
        .max(10);
    let (bar_w, row_h, left) = (14.0f64, 46.0f64, 130.0f64);
    #[allow(clippy::cast_precision_loss)]
    let width = (left + bar_w * bins.len() as f64 + 10.0).max(left + 200.0);
    #[allow(clippy::cast_precision_loss)]
    let height = row_h * series.len() as f64 + 24.0;
    html! {
        svg id=(id) role="img" aria-label=(id) width=(width) height=(height) viewBox={ "0 0 " (width) " " (height) } xmlns="http://www.w3.org/2000/svg" {
            @for (row, (method, outcome)) in series.iter().enumerate() {
                @let base = row_h * (row as f64 + 1.0);
                text x="2" y=(base - 16.0) { (method.as_str()) " / " (outcome.as_str()) }
                @for (i, bin) in bins.iter().enumerate() {
                    @let x = left + bar_w * i as f64;
                    @let cell = cells.iter().find(|c| c.start == *bin && c.method == *method && c.outcome == *outcome);
                    @match cell.map(|c| c.count) {
                        Some(Published::Count(n)) if n > 0 => {
                            @let h = 34.0 * n as f64 / max as f64;
                            rect x=(x) y=(base - h) width=(bar_w - 2.0) height=(h) fill="#0b4f9c" { title { (label_of(*bin)) ": " (n) } }
                        }
                        Some(Published::Suppressed) => {
                            rect class="suppressed" x=(x) y=(base - 34.0) width=(bar_w - 2.0) height="34" fill="none" stroke="#999" stroke-dasharray="2,2" {
                                title { (label_of(*bin)) ": " (t(lang, "suppressed")) }
                            }
                        }
                        _ => {}
                    }
                }
            }
            @if let Some(first) = bins.first() {
                text x=(left) y=(height - 4.0) { (label_of(*first)) }
            }
            @if let (true, Some(last)) = (bins.len() > 1, bins.last()) {
                text x=(width - 70.0) y=(height - 4.0) text-anchor="start" { (label_of(*last)) }
            }
        }
    }
}

/// The published cells as a table (what the chart shows, readable and testable).
pub fn counts_table(lang: Lang, id: &str, cells: &[PublishedCell], label_of: impl Fn(i64) -> String) -> Markup {
    html! {
        table id=(id) {
            tr { th { "start" } th { "method" } th { "outcome" } th { "count" } }
            @for c in cells {
                tr {
                    td { (label_of(c.start)) } td { (c.method) } td { (c.outcome) }
                    td.count { @match c.count { Published::Count(n) => (n), Published::Suppressed => (t(lang, "suppressed")) } }
                }
            }
        }
    }
}

/// Raw markup for a meta refresh (the enrolment progress page polls without script).
pub fn refresh(seconds: u32) -> Markup {
    PreEscaped(format!("<meta http-equiv=\"refresh\" content=\"{seconds}\">"))
}

/// What a revocation destroyed, when, and the code an auditor can check: the same for the resident and for the
/// manager revoking on a household's behalf.
pub fn receipt_table(lang: Lang, receipt: &RevocationReceipt) -> Markup {
    html! {
        table id="receipt" {
            tr { th { (t(lang, "receipt_time")) } td { (rfc3339(receipt.revoked_at)) } }
            tr { th { (t(lang, "receipt_deleted")) } td { ul { @for item in &receipt.deleted { li { (item) } } } } }
            tr { th { (t(lang, "receipt_code")) } td.code id="verification-code" { (receipt.verification_code) } }
        }
    }
}
