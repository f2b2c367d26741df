//! Steady resident memory of the gate daemon with 10,000 enrolled residents, next to OpenCV's path holding the same
//! number of plain templates, in one run.
//!
//! The daemon runs with the environment of `deploy/facegate.service`, as deployed. Enrols 10,000 residents (random unit vectors, sealed and stored through the real registry, so the gallery,
//! keys and SQLite file are the real ones), then runs the release daemon (`facegate run`) on a replay of webcam
//! frames with face matching always on, sampling its VmRSS twice a second. The steady figure is the median after
//! a warm-up; the peak is the kernel's high-water mark. The peer is `benches/peer/frame_peer.py --runtime opencv`
//! after 100 frames against a 10,000 x 128 gallery.
//!
//!     cargo bench --bench memory [-- SECONDS]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[path = "support/mod.rs"]
mod support;

#[path = "support/daemon.rs"]
mod daemon;

const RESIDENTS: usize = 10_000;
const WARM_UP: Duration = Duration::from_secs(10);

fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

fn daemon_rss(dir: &Path, seconds: u64, env: &[(String, String)]) -> (u64, u64, u64, String) {
    let replay = manifest().join("../shared/spoof/live");
    assert!(replay.is_dir(), "{} is missing: the memory bench needs ../shared", replay.display());
    let config = dir.join("gate.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\ndatabase = \"{d}/data/facegate.sqlite\"\nmaster_key = \"{d}/keys/master.key\"\n\
             [capture]\nsource = \"replay\"\nreplay_dir = \"{r}\"\nfps = 30\n\
             [gate]\nintent = \"always\"\n[hardware]\nbackend = \"simulated\"\nkeypad = \"none\"\n",
            d = dir.display(),
            r = replay.display()
        ),
    )
    .expect("config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_facegate"))
        .args(["--config", config.to_str().expect("utf-8 path"), "--models"])
        .arg(manifest().join("models"))
        .args(["run", "--duration", &(WARM_UP.as_secs() + seconds).to_string()])
        .env_remove("GLIBC_TUNABLES")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("facegate run");
    let pid = child.id();
    let start = Instant::now();
    let mut steady = Vec::new();
    let mut peak_seen = 0;
    while child.try_wait().ok().flatten().is_none() {
        if let (Some(rss), Some(hwm)) = (status_kib(pid, "VmRSS:"), status_kib(pid, "VmHWM:")) {
            peak_seen = hwm;
            if start.elapsed() > WARM_UP {
                steady.push(rss);
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let mut report = String::new();
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if line.starts_with("ran ") {
                report = line;
            }
        }
    }
    let max = steady.iter().copied().max().unwrap_or(0);
    (median(steady), max, peak_seen, report)
}

fn opencv_rss() -> Option<u64> {
    let dir = manifest().join("../shared/spoof/live");
    let frames: Vec<PathBuf> = facegate::capture::replay::list_images(&dir).into_iter().take(20).collect();
    let mut child = Command::new("python3")
        .arg(manifest().join("benches/peer/frame_peer.py"))
        .args(["--runtime", "opencv", "--threads", "1", "--detect-side", "320", "--gallery", &RESIDENTS.to_string()])
        .args(&frames)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .ok()?;
    let mut stdin = child.stdin.take()?;
    let mut stdout = BufReader::new(child.stdout.take()?);
    let mut line = String::new();
    stdout.read_line(&mut line).ok()?;
    writeln!(stdin, "frame 100\nrss\nquit").ok()?;
    line.clear();
    stdout.read_line(&mut line).ok()?;
    line.clear();
    stdout.read_line(&mut line).ok()?;
    let _ = child.wait();
    line.split_whitespace().nth(1)?.parse().ok()
}

fn main() {
    let seconds = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(20);
    let dir = tempfile::tempdir().expect("temporary folder");
    let started = Instant::now();
    support::enrol_residents(dir.path(), RESIDENTS);
    println!("enrolled {RESIDENTS} residents in {:.1} s", started.elapsed().as_secs_f64());
    let mib = |kib: u64| kib as f64 / 1024.0;
    let unit_env = daemon::unit_environment();
    let (steady, max, peak, report) = daemon_rss(dir.path(), seconds, &unit_env);
    println!(
        "facegate run, {RESIDENTS} residents, face matching always on, {seconds} s after a {} s warm-up:",
        WARM_UP.as_secs()
    );
    println!("  environment from deploy/facegate.service: {unit_env:?}");
    println!("  {report}");
    println!(
        "  steady RSS (median) {:.1} MiB, highest sample {:.1} MiB, peak (VmHWM, incl. model loading) {:.1} MiB",
        mib(steady),
        mib(max),
        mib(peak)
    );
    match opencv_rss() {
        Some(kib) => println!(
            "OpenCV path (Python, 10,000 plain templates) after 100 frames: current RSS {:.1} MiB; facegate / OpenCV {:.2}",
            mib(kib),
            steady as f64 / kib as f64
        ),
        None => println!("OpenCV peer not available (pip install onnxruntime onnx \"opencv-python-headless<5\")"),
    }
}
