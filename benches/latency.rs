//! Latency from the first frame in which an enrolled resident appears to the relay command (issue 21), on the
//! replay camera at 15 frames/s with liveness on, through the release daemon as deployed (`facegate run`, the
//! unit's environment, simulated relay).
//!
//!     cargo bench --bench latency [-- LOOPS]
//!
//! The four NUAA subjects of `../shared/spoof/live` are enrolled with the CLI from their first 10 webcam frames.
//! Their other frames are replayed as approaches of 6 frames each, every one after 70 frames without a face (a
//! plain grey picture; longer than the gate's 4 s pause after an admission), so each approach begins at a
//! known frame. The daemon reports, per face admission, the approach's first frame and the frame that
//! completed the 2-of-3 agreement; the bench checks that every admission's approach began where the replay put
//! the resident's first frame, then prints the median and p95 from that frame's arrival to the relay command.

use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "support/daemon.rs"]
mod daemon;

const FPS: usize = 15;
const GAP: usize = 70;
const APPROACH: usize = 6;
const ENROL_FROM: usize = 10;

fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn facegate(config: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_facegate"))
        .args(["--config", config.to_str().expect("utf-8 path"), "--models"])
        .arg(manifest().join("models"))
        .args(args)
        .output()
        .expect("facegate runs")
}

fn main() {
    let loops: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(2);
    let live = manifest().join("../shared/spoof/live");
    assert!(live.is_dir(), "{} is missing: this bench needs ../shared", live.display());
    let dir = tempfile::tempdir().expect("temp dir");
    let replay = dir.path().join("replay");
    std::fs::create_dir_all(&replay).expect("replay dir");
    let config = dir.path().join("gate.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\ndatabase = \"{d}/data/facegate.sqlite\"\nmaster_key = \"{d}/keys/master.key\"\n\
             [capture]\nsource = \"replay\"\nreplay_dir = \"{r}\"\nfps = {FPS}\n\
             [gate]\nintent = \"always\"\n[hardware]\nbackend = \"simulated\"\nkeypad = \"none\"\n",
            d = dir.path().display(),
            r = replay.display()
        ),
    )
    .expect("config");
    let notice = dir.path().join("notice.txt");
    std::fs::write(&notice, "Face entry notice (latency bench)").expect("notice");

    // A grey picture: a frame without a face.
    let grey = dir.path().join("grey.png");
    image::RgbImage::from_pixel(640, 480, image::Rgb([128, 128, 128])).save(&grey).expect("grey frame");

    let files = facegate::capture::replay::list_images(&live);
    let mut starts = Vec::new();
    let mut index = 0;
    let place = |from: &Path, index: &mut usize| {
        let ext = from.extension().and_then(|e| e.to_str()).unwrap_or("jpg");
        std::fs::copy(from, replay.join(format!("{:05}.{ext}", *index))).expect("copy frame");
        *index += 1;
    };
    for subject in ["nuaa_0001_", "nuaa_0002_", "nuaa_0003_", "nuaa_0004_"] {
        let frames: Vec<&PathBuf> =
            files.iter().filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(subject))).collect();
        let resident = format!("r-{}", &subject[5..9]);
        let mut consent_args = vec!["consent", "--resident", &resident, "--notice"];
        let notice_s = notice.to_str().expect("utf-8");
        consent_args.extend([notice_s, "--notice-version", "bench"]);
        let out = facegate(&config, &consent_args);
        assert!(out.status.success(), "consent: {}", String::from_utf8_lossy(&out.stderr));
        let mut enrol: Vec<&str> = vec!["enroll", "--resident", &resident];
        enrol.extend(frames[..ENROL_FROM].iter().map(|p| p.to_str().expect("utf-8")));
        let out = facegate(&config, &enrol);
        assert!(out.status.success(), "enrol {resident}: {}", String::from_utf8_lossy(&out.stderr));
        for approach in frames[ENROL_FROM..].chunks_exact(APPROACH) {
            for _ in 0..GAP {
                place(&grey, &mut index);
            }
            starts.push(index + 1);
            for frame in approach {
                place(frame, &mut index);
            }
        }
    }
    let per_loop = index;
    let seconds = (loops * per_loop).div_ceil(FPS) + 2;
    println!(
        "{} approaches of {APPROACH} frames by 4 enrolled residents, each after {GAP} frames without a face; \
         {per_loop} frames a loop at {FPS} fps, {loops} loops ({seconds} s)",
        starts.len()
    );
    let out = Command::new(env!("CARGO_BIN_EXE_facegate"))
        .args(["--config", config.to_str().expect("utf-8 path"), "--models"])
        .arg(manifest().join("models"))
        .args(["run", "--duration", &seconds.to_string()])
        .env_remove("GLIBC_TUNABLES")
        .envs(daemon::unit_environment())
        .output()
        .expect("facegate run");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "facegate run: {}", String::from_utf8_lossy(&out.stderr));
    print!("{report}");
    let pairs: Vec<(usize, usize)> = report
        .lines()
        .find_map(|l| l.split_once("last): ").map(|(_, rest)| rest.to_string()))
        .map(|rest| {
            rest.split_whitespace()
                .filter_map(|p| p.split_once("->"))
                .filter_map(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
                .collect()
        })
        .unwrap_or_default();
    let at_start = pairs.iter().filter(|(first, _)| starts.contains(&((first - 1) % per_loop + 1))).count();
    let frames_to_decision: Vec<usize> = pairs.iter().map(|(a, b)| b - a + 1).collect();
    println!(
        "\n{} face admissions for {} approaches replayed; {at_start} began at the resident's first frame; \
         frames to decision: {:?}",
        pairs.len(),
        starts.len() * loops,
        frames_to_decision
    );
    assert_eq!(at_start, pairs.len(), "an admission's approach did not begin at the resident's first frame");
}
