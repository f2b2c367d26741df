//! The installer's aiming page: a schematic of the camera's field, redrawn every second from the camera's
//! figures ([`crate::vision::aim::AimView`]): each face as a box with its size, eye distance, yaw and roll,
//! the zone a face must lie in, the smallest face enrolment takes, and the scene's brightness and sharpness.
//!
//! Owns the drawing. It must never carry a pixel: the page is SVG shapes and numbers made here from the
//! view (at most [`crate::vision::aim::MAX_FACES`] boxes), no `<img>`, no data URL, no encoded frame.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use maud::{html, Markup};

use super::error::PortalError;
use super::i18n::{t, tf, Lang};
use super::session::{page, Installer, Staff};
use super::views::{layout, refresh};
use super::PortalState;
use crate::vision::aim::{AimView, SceneIssue};

type Shared = State<Arc<PortalState>>;

pub(super) fn routes() -> Router<Arc<PortalState>> {
    Router::new().route("/installer", get(aiming_page))
}

async fn aiming_page(State(state): Shared, Staff { visit, .. }: Staff<Installer>) -> Result<Response, PortalError> {
    let lang = visit.lang;
    let view = state.aiming.as_ref().map(|desk| desk.watch());
    let body = html! {
        // Redrawn every second without script; the camera describes frames only while this page is open.
        (refresh(1))
        @match &view {
            None => p.error id="no-camera" { (t(lang, "installer_no_camera")) },
            Some(None) => p id="waiting" { (t(lang, "installer_waiting")) },
            Some(Some(view)) => (aiming(lang, view)),
        }
    };
    Ok(page(StatusCode::OK, layout(&visit.frame("/installer"), t(lang, "installer_heading"), body)))
}

fn aiming(lang: Lang, view: &AimView) -> Markup {
    let good = view.faces.iter().filter(|f| f.issue.is_none()).count();
    let scene = match view.scene_issue() {
        None => t(lang, "installer_scene_ok"),
        Some(SceneIssue::TooDark) => t(lang, "installer_too_dark"),
        Some(SceneIssue::TooBright) => t(lang, "installer_too_bright"),
        Some(SceneIssue::Blurred) => t(lang, "installer_blurred"),
    };
    html! {
        p id="scene" class=(if view.scene_issue().is_some() { "warn" } else { "pass" }) {
            (view.width) "×" (view.height) " · "
            (tf(lang, "installer_figures", &[("b", &format!("{:.0}", view.brightness)), ("s", &format!("{:.0}", view.sharpness))]))
            " · " (scene)
        }
        (schematic(view))
        p id="verdict" class=(if good > 0 { "pass" } else { "warn" }) {
            @if !view.detector_up { (t(lang, "installer_no_detector")) }
            @else if view.faces.is_empty() { (t(lang, "installer_no_face")) }
            @else { (tf(lang, "installer_faces", &[("n", &view.faces.len().to_string()), ("good", &good.to_string())])) }
        }
        @if !view.faces.is_empty() {
            table id="faces" {
                tr { th { "#" } th { (t(lang, "installer_box")) } th { (t(lang, "installer_eyes")) } th { "yaw" } th { "roll" } th {} }
                @for (i, f) in view.faces.iter().enumerate() {
                    tr.face {
                        td { (i + 1) } td { (f.bbox.width) "×" (f.bbox.height) }
                        td { (format!("{:.0}", f.eye_distance_px)) } td { (format!("{:+.2}", f.yaw)) } td { (format!("{:+.2}", f.roll)) }
                        td class=(if f.issue.is_none() { "pass" } else { "warn" }) { (f.issue.map_or("ok", |i| i.as_str())) }
                    }
                }
            }
        }
        p { small { (tf(lang, "installer_hint", &[("px", &format!("{:.0}", view.min_eye_distance_px))])) } }
    }
}

/// The field as shapes: the frame, the zone (dashed), the smallest enrolable face (dotted, bottom left) and
/// each face's box (green when enrolment would take it, amber otherwise) with its number.
fn schematic(view: &AimView) -> Markup {
    // A face's box is about 2.5 eye distances wide and 3 high.
    let (min_w, min_h) = (view.min_eye_distance_px * 2.5, view.min_eye_distance_px * 3.0);
    let z = view.zone;
    html! {
        svg id="field" xmlns="http://www.w3.org/2000/svg" viewBox={ "0 0 " (view.width) " " (view.height) }
            width="100%" role="img" aria-label="camera field" {
            rect x="0" y="0" width=(view.width) height=(view.height) fill="#f4f4f4" stroke="#555" stroke-width="2" {}
            rect id="zone" x=(z.x) y=(z.y) width=(z.width) height=(z.height) fill="none" stroke="#0b4f9c"
                stroke-width="2" stroke-dasharray="12 8" {}
            rect id="min-face" x=(z.x + 4) y=(format!("{:.0}", f64::from(z.y + z.height) - f64::from(min_h) - 4.0))
                width=(format!("{min_w:.0}")) height=(format!("{min_h:.0}")) fill="none" stroke="#777" stroke-dasharray="3 3" {}
            @for (i, f) in view.faces.iter().enumerate() {
                @let colour = if f.issue.is_none() { "#116b00" } else { "#b36b00" };
                rect.face x=(f.bbox.x) y=(f.bbox.y) width=(f.bbox.width) height=(f.bbox.height) fill="none"
                    stroke=(colour) stroke-width="4" {}
                text x=(f.bbox.x + 4) y=(f.bbox.y.saturating_sub(6).max(12)) fill=(colour) font-size="24" { (i + 1) }
            }
        }
    }
}
