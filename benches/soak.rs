//! The soak (issue 20): the release daemon as deployed, for an hour, with everything a gate meets in a day.
//!
//!     bash deploy/soak.sh [SECONDS]          # or: cargo bench --bench soak -- SECONDS OUT_DIR
//!
//! The replay camera at 15 frames/s shows the four NUAA subjects of `../shared/spoof/live` (enrolled with the
//! CLI) in approaches of 6 frames between 70 frames without a face, as `latency.rs` does. Beside it: a right
//! keypad PIN every 20 s and a wrong one every 6 minutes (below the keypad's hourly budget), a visitor pass
//! issued by the CLI and scanned every 30 s, anonymous portal pages every 10 s and a staff sign-in every
//! minute, a CLI revocation and re-enrolment every 5 minutes, and the broker killed for a minute every 10
//! minutes. Every 10 s it samples the daemon's RSS, open file descriptors and threads, the database and its
//! WAL, and `/metrics`. It writes `soak.csv` and `soak.svg` (numbers only: no photo, no identity) to OUT_DIR
//! and prints the figures: RSS growth from the end of the first sixth (minute 10 of 60) to the end,
//! file descriptors and threads over the run, p99 of the first-frame-to-relay wait in the first and last
//! sixth, and every warning or error logged outside an injected fault.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[path = "support/daemon.rs"]
mod daemon;

const FPS: usize = 15;
const GAP: usize = 70;
const APPROACH: usize = 6;
const ENROL_FROM: usize = 10;
const COMPOUND: &str = "soak-court";
const TOKEN: &str = "soak-metrics-token-0123456789abcdef";
const CODE: &str = "340112";
const PIN: &str = "482913";
const SAMPLE: Duration = Duration::from_secs(10);

fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// Runs the CLI and insists that it succeeds.
fn cli(config: Option<&Path>, args: &[&str], stdin: Option<&str>) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_facegate"));
    if let Some(config) = config {
        command.arg("--config").arg(config);
    }
    let mut child = command
        .arg("--models")
        .arg(manifest().join("models"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("facegate runs");
    let mut input = child.stdin.take().expect("stdin");
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).expect("stdin written");
    }
    drop(input);
    let out = child.wait_with_output().expect("facegate ends");
    assert!(out.status.success(), "facegate {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The broker, restartable on its durable store.
struct Broker {
    conf: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl Broker {
    fn start(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.conf.with_extension("log"));
        let child = Command::new("nats-server")
            .arg("-c")
            .arg(&self.conf)
            .stdout(Stdio::null())
            .stderr(log.map_or(Stdio::null(), Stdio::from))
            .spawn()
            .expect("nats-server (Debian's nats-server package) runs");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One sample of the daemon and its files.
#[derive(Clone, Copy, Default)]
struct Sample {
    t: f64,
    rss_kib: u64,
    fds: u64,
    threads: u64,
    db_bytes: u64,
    wal_bytes: u64,
    frames: u64,
    broker_up: bool,
}

fn proc_status(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// The portal, as browsers on the LAN reach it (its certificate is the gate's own).
fn https() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .danger_accept_invalid_certs(true)
        .cookie_store(true)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("an HTTP client")
}

fn metric(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.trim().parse::<f64>().ok()).map(|v| v as u64)
}

fn quantile(mut values: Vec<f64>, q: f64) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let last = values.len().checked_sub(1)?;
    Some(values[((last as f64) * q).round() as usize])
}

/// Four small line plots, one per measure, over the run's seconds.
fn svg(samples: &[Sample], waits: &[(f64, f64)], seconds: f64) -> String {
    let series: [(&str, Vec<(f64, f64)>); 4] = [
        ("RSS (MiB)", samples.iter().map(|s| (s.t, s.rss_kib as f64 / 1024.0)).collect()),
        ("open file descriptors and threads", samples.iter().map(|s| (s.t, (s.fds + s.threads) as f64)).collect()),
        ("database + WAL (KiB)", samples.iter().map(|s| (s.t, (s.db_bytes + s.wal_bytes) as f64 / 1024.0)).collect()),
        ("first frame to relay (ms), each admission", waits.to_vec()),
    ];
    let (w, h, pad) = (760.0, 150.0, 40.0);
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{}\" font-family=\"sans-serif\" \
         font-size=\"11\">\n",
        series.len() as f64 * (h + pad) + pad
    );
    for (i, (title, points)) in series.iter().enumerate() {
        let top = pad + i as f64 * (h + pad);
        let max = points.iter().map(|p| p.1).fold(1e-9, f64::max) * 1.1;
        let path: Vec<String> = points
            .iter()
            .map(|(t, v)| format!("{:.1},{:.1}", 50.0 + t / seconds.max(1.0) * (w - 70.0), top + h - v / max * h))
            .collect();
        let _ = writeln!(
            out,
            "<text x=\"50\" y=\"{:.0}\">{title} (0 to {max:.1}; x: 0 to {seconds:.0} s)</text>\n\
             <rect x=\"50\" y=\"{top:.0}\" width=\"{}\" height=\"{h}\" fill=\"none\" stroke=\"#999\"/>\n\
             <polyline fill=\"none\" stroke=\"#1f77b4\" points=\"{}\"/>",
            top - 6.0,
            w - 70.0,
            path.join(" ")
        );
    }
    out.push_str("</svg>\n");
    out
}

struct Setup {
    _dir: tempfile::TempDir,
    config: PathBuf,
    db: PathBuf,
    broker: Broker,
    port: u16,
    subjects: Vec<Vec<PathBuf>>,
}

fn set_up() -> Setup {
    let live = manifest().join("../shared/spoof/live");
    assert!(live.is_dir(), "{} is missing: the soak needs ../shared", live.display());
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    let compound = root.join("compound");
    let broker_port = free_port();
    let listen = format!("127.0.0.1:{broker_port}");
    let (c, install, store) = (compound.display().to_string(), compound.join("broker"), root.join("broker-store"));
    cli(
        None,
        &[
            "compound",
            "init",
            "--dir",
            &c,
            "--name",
            COMPOUND,
            "--listen",
            &listen,
            "--install-dir",
            &install.display().to_string(),
            "--store-dir",
            &store.display().to_string(),
        ],
        None,
    );
    cli(None, &["compound", "add-gate", "--dir", &c, "--gate", "gate-a"], None);
    let mut broker = Broker { conf: compound.join("broker/nats-server.conf"), port: broker_port, child: None };
    broker.start();
    let keys = root.join("gate/keys/compound");
    std::fs::create_dir_all(&keys).expect("key folder");
    for file in ["ca.pem", "gate.pem", "gate.key", "compound.key"] {
        std::fs::copy(compound.join("gates/gate-a").join(file), keys.join(file)).expect("gate bundle");
    }
    let replay = root.join("gate/replay");
    std::fs::create_dir_all(&replay).expect("replay dir");
    let port = free_port();
    let config = root.join("gate/gate.toml");
    let d = root.join("gate").display().to_string();
    std::fs::write(
        &config,
        format!(
            "[audit]\nsystem_places = false\n\
             [store]\ndatabase = \"{d}/data/facegate.sqlite\"\nmaster_key = \"{d}/keys/master.key\"\n\
             [capture]\nsource = \"replay\"\nreplay_dir = \"{d}/replay\"\nfps = {FPS}\n\
             [gate]\nintent = \"always\"\n\
             [hardware]\nbackend = \"simulated\"\nkeypad = \"stdin\"\nscanner = \"stdin\"\n\
             [portal]\nenabled = true\nlisten = \"127.0.0.1:{port}\"\nmetrics_token = \"{TOKEN}\"\n\
             [compound]\nname = \"{COMPOUND}\"\ngate = \"gate-a\"\ngates = [\"gate-a\", \"gate-b\"]\n\
             broker = \"tls://127.0.0.1:{broker_port}\"\n"
        ),
    )
    .expect("config");

    let files = facegate::capture::replay::list_images(&live);
    let subjects: Vec<Vec<PathBuf>> = ["0001", "0002", "0003", "0004"]
        .iter()
        .map(|s| {
            let prefix = format!("nuaa_{s}_");
            files
                .iter()
                .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(&prefix)))
                .cloned()
                .collect()
        })
        .collect();
    let notice = root.join("notice.txt");
    std::fs::write(&notice, "Face entry notice (soak)").expect("notice");
    for (i, frames) in subjects.iter().enumerate() {
        enrol(&config, &notice, &format!("r-{i}"), &frames[..ENROL_FROM]);
    }
    cli(Some(&config), &["pin", "--resident", "r-0", "--code", CODE], Some(&format!("{PIN}\n")));
    cli(Some(&config), &["account", "--name", "morgan", "--role", "manager"], Some("soak-manager-password-1\n"));

    let grey = root.join("grey.png");
    image::RgbImage::from_pixel(640, 480, image::Rgb([128, 128, 128])).save(&grey).expect("grey frame");
    let mut index = 0;
    for frames in &subjects {
        for approach in frames[ENROL_FROM..].chunks_exact(APPROACH) {
            for from in std::iter::repeat_n(&grey, GAP).chain(approach) {
                let ext = from.extension().and_then(|e| e.to_str()).unwrap_or("jpg");
                std::fs::copy(from, replay.join(format!("{index:05}.{ext}"))).expect("copy frame");
                index += 1;
            }
        }
    }
    Setup { db: root.join("gate/data/facegate.sqlite"), _dir: dir, config, broker, port, subjects }
}

fn enrol(config: &Path, notice: &Path, resident: &str, frames: &[PathBuf]) {
    let n = notice.display().to_string();
    cli(Some(config), &["consent", "--resident", resident, "--notice", &n, "--notice-version", "soak"], None);
    let mut args = vec!["enroll".to_owned(), "--resident".into(), resident.into()];
    args.extend(frames.iter().map(|p| p.display().to_string()));
    cli(Some(config), &args.iter().map(String::as_str).collect::<Vec<_>>(), None);
}

/// What happens in the run, on the sample clock: (tick of 10 s) -> the fault or traffic of that tick.
fn traffic(setup: &mut Setup, tick: u64, stdin: &mut std::process::ChildStdin, client: &reqwest::blocking::Client) {
    let base = format!("https://127.0.0.1:{}", setup.port);
    // Keypad: right every 20 s; wrong every 6 minutes (the hourly budget is 20 failures).
    if tick.is_multiple_of(2) {
        let _ = writeln!(stdin, "{CODE}#{PIN}#");
    }
    if tick % 36 == 18 {
        let _ = writeln!(stdin, "{CODE}#000000#");
    }
    // A visitor pass, issued and scanned.
    if tick % 3 == 1 {
        let issued = cli(Some(&setup.config), &["pass", "issue", "--valid-for", "1h", "--json"], None);
        if let Some(pass) =
            serde_json::from_str::<serde_json::Value>(&issued).ok().and_then(|v| v["pass"].as_str().map(str::to_owned))
        {
            let _ = writeln!(stdin, "{pass}");
        }
    }
    // The portal: anonymous pages always, a manager's sign-in every minute.
    for path in ["/", "/signage", "/resident", "/revoke"] {
        let _ = client.get(format!("{base}{path}")).send().and_then(|r| r.text());
    }
    if tick % 6 == 3 {
        let staff = https();
        if let Ok(page) = staff.get(format!("{base}/login")).send().and_then(|r| r.text()) {
            if let Some(at) = page.find("name=\"csrf\" value=\"") {
                let csrf = &page[at + 19..at + 51];
                let form = [("csrf", csrf), ("name", "morgan"), ("password", "soak-manager-password-1")];
                let _ = staff.post(format!("{base}/login")).form(&form).send();
                let _ = staff.get(format!("{base}/manager")).send().and_then(|r| r.text());
            }
        }
    }
    // Every 5 minutes a resident revokes at the CLI and enrols again.
    if tick % 30 == 15 {
        cli(Some(&setup.config), &["revoke", "--resident", "r-3"], None);
        let notice = setup.config.with_file_name("notice.txt");
        std::fs::write(&notice, "Face entry notice (soak)").expect("notice");
        enrol(&setup.config, &notice, "r-3", &setup.subjects[3][..ENROL_FROM]);
    }
}

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| !a.starts_with("--"));
    let seconds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(3600);
    let out_dir = args.next().map_or_else(|| manifest().join("target/soak"), PathBuf::from);
    std::fs::create_dir_all(&out_dir).expect("output folder");
    let mut setup = set_up();
    println!("soak: {seconds} s; replay at {FPS} fps; figures to {}", out_dir.display());

    let mut daemon = Command::new(env!("CARGO_BIN_EXE_facegate"))
        .arg("--config")
        .arg(&setup.config)
        .arg("--models")
        .arg(manifest().join("models"))
        .args(["run", "--duration", &seconds.to_string()])
        .env_remove("GLIBC_TUNABLES")
        .envs(daemon::unit_environment())
        .env("FACEGATE_LOG", "info")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("facegate run");
    let pid = daemon.id();
    let mut stdin = daemon.stdin.take().expect("stdin");
    let log: Arc<Mutex<Vec<(f64, String)>>> = Arc::default();
    let started = Instant::now();
    let reader = {
        let (log, stderr) = (log.clone(), daemon.stderr.take().expect("stderr"));
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                log.lock().expect("log").push((started.elapsed().as_secs_f64(), line));
            }
        })
    };
    let client = https();
    let mut samples = Vec::new();
    let mut cuts: Vec<(f64, f64)> = Vec::new();
    let mut tick = 0;
    let end = started + Duration::from_secs(seconds);
    while Instant::now() + SAMPLE < end {
        std::thread::sleep((started + SAMPLE * (tick + 1) as u32).saturating_duration_since(Instant::now()));
        tick += 1;
        // The broker: killed at minute 5 of every 10, back a minute later.
        if tick % 60 == 30 {
            setup.broker.kill();
            cuts.push((started.elapsed().as_secs_f64(), f64::INFINITY));
        }
        if tick % 60 == 36 {
            setup.broker.start();
            if let Some(cut) = cuts.last_mut() {
                cut.1 = started.elapsed().as_secs_f64();
            }
        }
        traffic(&mut setup, tick, &mut stdin, &client);
        let metrics = client
            .get(format!("https://127.0.0.1:{}/metrics", setup.port))
            .bearer_auth(TOKEN)
            .send()
            .and_then(|r| r.text())
            .unwrap_or_default();
        let wal = PathBuf::from(format!("{}-wal", setup.db.display()));
        let sample = Sample {
            t: started.elapsed().as_secs_f64(),
            rss_kib: proc_status(pid, "VmRSS:"),
            fds: std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count() as u64).unwrap_or(0),
            threads: proc_status(pid, "Threads:"),
            db_bytes: file_len(&setup.db),
            wal_bytes: file_len(&wal),
            frames: metric(&metrics, "facegate_frames_total").unwrap_or(0),
            broker_up: metric(&metrics, "facegate_broker_up") == Some(1),
        };
        samples.push(sample);
    }
    drop(stdin);
    let out = daemon.wait_with_output().expect("the daemon ends");
    let _ = reader.join();
    setup.broker.kill();
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "facegate run failed:\n{report}");
    print!("{report}");
    summarise(&samples, &report, &log.lock().expect("log"), &cuts, seconds as f64, &out_dir);
}

fn summarise(samples: &[Sample], report: &str, log: &[(f64, String)], cuts: &[(f64, f64)], seconds: f64, out: &Path) {
    let waits: Vec<(f64, f64)> = report
        .lines()
        .find_map(|l| l.split_once("ms to the relay): ").map(|(_, rest)| rest.to_owned()))
        .map(|rest| {
            rest.split_whitespace()
                .filter_map(|p| p.split_once(':'))
                .filter_map(|(f, ms)| Some((f.parse::<f64>().ok()? / FPS as f64, ms.parse().ok()?)))
                .collect()
        })
        .unwrap_or_default();
    let mut csv = String::from("t_s,rss_kib,fds,threads,db_bytes,wal_bytes,frames_total,broker_up\n");
    for s in samples {
        let _ = writeln!(
            csv,
            "{:.0},{},{},{},{},{},{},{}",
            s.t,
            s.rss_kib,
            s.fds,
            s.threads,
            s.db_bytes,
            s.wal_bytes,
            s.frames,
            u8::from(s.broker_up)
        );
    }
    std::fs::write(out.join("soak.csv"), csv).expect("soak.csv");
    std::fs::write(out.join("soak.svg"), svg(samples, &waits, seconds)).expect("soak.svg");

    let sixth = seconds / 6.0;
    let rss_at = |t: f64| samples.iter().filter(|s| s.t >= t).map(|s| s.rss_kib).next().unwrap_or(0);
    let (from, to) = (rss_at(sixth), samples.last().map_or(0, |s| s.rss_kib));
    let growth = (to as f64 - from as f64) / (from as f64).max(1.0) * 100.0;
    let range = |f: fn(&Sample) -> u64| {
        let after = samples.iter().filter(|s| s.t >= sixth).map(f);
        (after.clone().min().unwrap_or(0), after.max().unwrap_or(0))
    };
    let p99 = |lo: f64, hi: f64| quantile(waits.iter().filter(|w| w.0 >= lo && w.0 < hi).map(|w| w.1).collect(), 0.99);
    let (first, last) = (p99(0.0, sixth), p99(seconds - sixth, seconds + 1.0));
    let injected = |t: f64, line: &str| {
        cuts.iter().any(|&(a, b)| t >= a && t <= b + 30.0)
            && ["broker", "compound", "nats", "connect"].iter().any(|w| line.to_lowercase().contains(w))
    };
    let wrong_pin = |line: &str| line.contains("PIN") || line.contains("keypad");
    // Before the first sample the daemon is starting: what it says then (the key root's warning on a file
    // root, the model's opset) is its configuration, listed apart.
    let warned = |l: &str| l.contains(" WARN ") || l.contains(" ERROR ");
    let at_start = log.iter().filter(|(t, l)| *t < SAMPLE.as_secs_f64() && warned(l)).count();
    let unexpected: Vec<&(f64, String)> = log
        .iter()
        .filter(|(t, l)| *t >= SAMPLE.as_secs_f64() && warned(l) && !injected(*t, l) && !wrong_pin(l))
        .collect();
    println!("\nsoak figures ({} samples every {} s; {} broker cuts):", samples.len(), SAMPLE.as_secs(), cuts.len());
    println!(
        "  RSS at {sixth:.0} s {:.1} MiB, at the end {:.1} MiB: growth {growth:+.2} %",
        from as f64 / 1024.0,
        to as f64 / 1024.0
    );
    println!("  file descriptors after {sixth:.0} s: {:?}; threads: {:?}", range(|s| s.fds), range(|s| s.threads));
    println!(
        "  database + WAL at the end: {} + {} bytes",
        samples.last().map_or(0, |s| s.db_bytes),
        samples.last().map_or(0, |s| s.wal_bytes)
    );
    println!(
        "  first-frame-to-relay p99: first sixth {} ms ({} admissions), last sixth {} ms ({} admissions)",
        first.map_or("-".into(), |v| format!("{v:.1}")),
        waits.iter().filter(|w| w.0 < sixth).count(),
        last.map_or("-".into(), |v| format!("{v:.1}")),
        waits.iter().filter(|w| w.0 >= seconds - sixth).count()
    );
    println!("  warnings at start-up (configuration): {at_start}");
    println!("  warnings and errors after start-up outside the injected faults: {}", unexpected.len());
    for (t, line) in unexpected.iter().take(20) {
        println!("    {t:.0} s: {line}");
    }
}
