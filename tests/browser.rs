//! The portal in real headless Chromium (Debian's `chromium` and `chromium-driver`, installed by `.ci/run`),
//! served by the real daemon with a replay camera of a live person (NUAA subject 0003): a manager issues a code;
//! the resident consents and enrols through the gate camera, sets a PIN; the gate admits them and the counts
//! page shows the entry suppressed; the resident revokes and gets a receipt; the auditor's report shows the
//! deletion and a clean scan. Screenshots of each step go to `target/screenshots/` (pages only: the portal
//! never shows an image of anyone).
#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::daemon::{free_port, start_gate, Gate, AUDITOR, MANAGER};
use fantoccini::{Client, ClientBuilder, Locator};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

/// chromedriver on a free port, killed on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn chromedriver() -> Driver {
    assert!(
        std::path::Path::new(CHROMEDRIVER).is_file() && std::path::Path::new(CHROMIUM).is_file(),
        "headless Chromium is missing: `apt-get install chromium chromium-driver` (.ci/run installs them)"
    );
    let port = free_port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    Driver { child, url: format!("http://127.0.0.1:{port}") }
}

async fn browser(driver: &Driver) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert("browserName".into(), "chrome".into());
    // The gate's certificate is its own self-signed one (the HTTPS tests pin it; here the browser accepts it).
    caps.insert("acceptInsecureCerts".into(), true.into());
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": CHROMIUM,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1000,1300", "--lang=en-GB"]
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .unwrap_or_else(|e| panic!("cannot start headless Chromium through chromedriver: {e}"))
}

fn shots() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn shot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    std::fs::write(shots().join(format!("{name}.png")), png).unwrap();
}

async fn text_of(c: &Client, css: &str) -> String {
    c.wait().at_most(Duration::from_secs(10)).for_element(Locator::Css(css)).await.unwrap().text().await.unwrap()
}

async fn fill(c: &Client, css: &str, value: &str) {
    c.find(Locator::Css(css)).await.unwrap().send_keys(value).await.unwrap();
}

async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css)).await.unwrap().click().await.unwrap();
}

async fn path_of(c: &Client) -> String {
    c.current_url().await.unwrap().path().to_owned()
}

/// Waits (up to 15 s) for the page a click led to: a click returns before the navigation it starts ends.
async fn wait_path(c: &Client, expected: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while path_of(c).await != expected {
        assert!(Instant::now() < deadline, "not at {expected}: {}", c.source().await.unwrap());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn sign_in(c: &Client, gate: &Gate, (name, password): (&str, &str)) {
    c.goto(&format!("{}/login?lang=en", gate.base)).await.unwrap();
    fill(c, "#name", name).await;
    fill(c, "#password", password).await;
    click(c, "#login-submit").await;
}

#[test]
fn the_whole_portal_story_in_headless_chromium() {
    let gate = start_gate(&common::nuaa_frames("live", "0003"));
    let driver = chromedriver();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let manager = browser(&driver).await;
        sign_in(&manager, &gate, MANAGER).await;
        wait_path(&manager, "/manager").await;
        fill(&manager, "#unit", "3-401").await;
        click(&manager, "#issue").await;
        let code = text_of(&manager, "#issued-code").await;
        assert_eq!(code.len(), 14, "{code}");
        shot(&manager, "01-manager-issues-a-code").await;

        let resident = browser(&driver).await;
        resident.goto(&format!("{}/?lang=zh", gate.base)).await.unwrap();
        assert!(text_of(&resident, "#to-resident").await.contains("登记码"));
        shot(&resident, "02-home-in-chinese").await;
        resident.goto(&format!("{}/resident?lang=en", gate.base)).await.unwrap();
        fill(&resident, "#code", &code).await;
        click(&resident, "#code-submit").await;
        wait_path(&resident, "/resident/consent").await;
        assert!(text_of(&resident, "#notice").await.contains("never a photo"));
        shot(&resident, "03-consent-notice").await;
        // Without the tick, nothing happens but a clear message.
        click(&resident, "#consent-face").await;
        assert!(text_of(&resident, ".error").await.contains("Tick the box"));
        click(&resident, "#consent").await;
        click(&resident, "#consent-face").await;
        wait_path(&resident, "/resident/enrol").await;
        click(&resident, "#enrol-start").await;
        // The status page refreshes itself until the gate camera has 3 good, live frames.
        let deadline = Instant::now() + Duration::from_secs(60);
        // Enrolled: the revocation code comes with the enrolment itself, before the PIN step.
        while resident.find(Locator::Css("#revocation-code")).await.is_err() {
            assert!(Instant::now() < deadline, "enrolment did not finish: {}", resident.source().await.unwrap());
            assert!(resident.find_all(Locator::Css("img, video, canvas")).await.unwrap().is_empty());
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        assert!(text_of(&resident, "#enrolled").await.contains("enrolled and protected"));
        let revocation = text_of(&resident, "#revocation-code").await;
        shot(&resident, "04-enrolled-revocation-code-set-a-pin").await;
        fill(&resident, "#pin", "4071").await;
        fill(&resident, "#pin2", "4071").await;
        click(&resident, "#pin-submit").await;
        assert!(text_of(&resident, "#keypad").await.contains("# then your PIN #"));
        shot(&resident, "05-keypad-code-and-revocation-code").await;

        // The gate admits the resident (replay camera, intent "always"). Today is never published; once the day
        // has closed (the count moved back a day), the manager sees it, suppressed.
        let db = gate.dir.path().join("data/facegate.sqlite");
        let faces = || -> i64 {
            let conn = rusqlite::Connection::open(&db).unwrap();
            conn.query_row("SELECT COALESCE(SUM(count), 0) FROM passage_counts WHERE method = 'face'", [], |r| r.get(0))
                .unwrap()
        };
        let deadline = Instant::now() + Duration::from_secs(40);
        while faces() == 0 {
            assert!(Instant::now() < deadline, "no face entry counted");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        rusqlite::Connection::open(&db)
            .unwrap()
            .execute("UPDATE passage_counts SET hour_start = hour_start - 86400 WHERE method = 'face'", [])
            .unwrap();
        manager.goto(&format!("{}/manager", gate.base)).await.unwrap();
        let days = text_of(&manager, "#table-days").await;
        assert!(days.contains("face") && days.contains("not shown (1-10)") && days.contains("opened"), "{days}");
        let outlined = manager.find_all(Locator::Css("#chart-days rect.suppressed")).await.unwrap();
        assert!(!outlined.is_empty(), "the suppressed day is not drawn as suppressed");
        shot(&manager, "06-counts-suppressed").await;

        resident.goto(&format!("{}/revoke", gate.base)).await.unwrap();
        fill(&resident, "#revocation", &revocation).await;
        click(&resident, "#revoke-submit").await;
        let verification = text_of(&resident, "#verification-code").await;
        assert!(text_of(&resident, "#receipt").await.contains("sealed face template"));
        shot(&resident, "07-revocation-receipt").await;

        let auditor = browser(&driver).await;
        sign_in(&auditor, &gate, AUDITOR).await;
        wait_path(&auditor, "/auditor").await;
        let result = auditor.find(Locator::Id("result")).await.unwrap();
        assert_eq!(result.attr("class").await.unwrap().as_deref(), Some("pass"), "{}", result.text().await.unwrap());
        assert!(text_of(&auditor, "#check-files").await.contains("PASS"));
        assert!(text_of(&auditor, "#deletions").await.contains(&verification));
        shot(&auditor, "08-auditor-report").await;

        for c in [manager, resident, auditor] {
            c.close().await.unwrap();
        }
    });
    eprintln!("screenshots in {}", shots().display());
}

/// The guard's and the installer's pages in the same browser: a guard-call press appears on the guard's page
/// by itself (the page reloads), the guard releases the door with a reason and issues a pass whose QR code is
/// on screen; the installer's page draws the camera's field with the face the camera sees, as shapes.
#[test]
fn the_guard_and_aiming_pages_in_headless_chromium() {
    let began = Instant::now();
    let mut gate = common::daemon::start_gate_typed(&common::nuaa_frames("live", "0003")[..6], |_| String::new());
    for ((name, password), role) in
        [(("grd", "guard-password-1"), "guard"), (("ins", "installer-password-1"), "installer")]
    {
        gate.cli(&["account", "--name", name, "--role", role], Some(&format!("{password}\n")));
    }
    let driver = chromedriver();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let guard = runtime.block_on(async {
        let guard = browser(&driver).await;
        sign_in(&guard, &gate, ("grd", "guard-password-1")).await;
        wait_path(&guard, "/guard").await;
        assert!(text_of(&guard, "#no-calls").await.contains("No calls"));
        guard
    });
    gate.type_line("!guard");
    runtime.block_on(async {
        // No reload by the test: the page's own refresh brings the call.
        let call = text_of(&guard, "#calls tr.call").await;
        assert!(call.contains("gate") && call.contains("s ago"), "{call}");
        shot(&guard, "09-guard-call").await;
        click_on_refreshing(&guard, "#to-release").await;
        wait_path(&guard, "/guard/release").await;
        fill(&guard, "#reason", "parcel delivery for the office").await;
        shot(&guard, "10-guard-release-reason").await;
        click(&guard, "#release").await;
        assert!(text_of(&guard, "#released").await.contains("audit log"));
        click_on_refreshing(&guard, "#issue-pass").await;
        wait_path(&guard, "/guard/pass").await;
        assert!(text_of(&guard, "#pass-text").await.starts_with("FGP1:"));
        let qr = guard.find(Locator::Css("#pass-qr svg")).await.unwrap();
        let size = qr.rectangle().await.unwrap();
        assert!(size.2 >= 200.0 && size.3 >= 200.0, "the QR code is drawn {}x{}", size.2, size.3);
        shot(&guard, "11-guard-visitor-pass").await;
        guard.close().await.unwrap();

        let installer = browser(&driver).await;
        sign_in(&installer, &gate, ("ins", "installer-password-1")).await;
        wait_path(&installer, "/installer").await;
        let faces = text_of(&installer, "#faces tr.face").await;
        assert!(faces.starts_with('1'), "{faces}");
        // One person in front of the camera; the detector may add a weak second box in some frames. Each
        // box drawn has its row of figures (the page may reload between the two reads: compare one page).
        let source = installer.source().await.unwrap();
        let boxes = source.matches("<rect class=\"face\"").count();
        assert!(boxes >= 1 && boxes == source.matches("<tr class=\"face\">").count(), "{source}");
        assert!(text_of(&installer, "#scene").await.contains("640×480"));
        let images = installer.find_all(Locator::Css("img, canvas, image, video")).await.unwrap();
        assert!(images.is_empty(), "the aiming page holds an image element");
        shot(&installer, "12-installer-aiming").await;
        installer.close().await.unwrap();
    });
    gate.wait_for_log("method=\"guard\" outcome=\"opened\"", began, Duration::from_secs(5));
}

/// A click on a page that reloads itself every few seconds: an element found just before a reload is gone
/// after it, so the click is tried again on the reloaded page.
async fn click_on_refreshing(c: &Client, css: &str) {
    for _ in 0..3 {
        let clicked = match c.find(Locator::Css(css)).await {
            Ok(element) => element.click().await.is_ok(),
            Err(_) => false,
        };
        if clicked {
            return;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    panic!("could not click {css}");
}
