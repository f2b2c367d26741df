//! The gate daemon's resident memory under a flood of anonymous portal requests (issue 17, attack 5).
//!
//! Starts the daemon built with the bench profile (`facegate run`, portal on, replay camera), lets it settle,
//! then sends 100,000 cookie-less HTTPS requests on 8 connections at a time (keep-alive, a new connection per
//! source address). Three floods, one after the other:
//! - spread over 1,000 source addresses (127.0.x.y, each under the per-address limit), every fifth request
//!   to a page with a form (`/login`, which makes a session): what the bounded session store holds; then
//!   the same again a minute later, to show the memory does not keep growing;
//! - from one address (127.0.0.2): what the per-address limit refuses.
//!
//! VmRSS is read from `/proc` before, after each flood, and the peak (VmHWM) at the end.
//!
//!     cargo bench --bench portal_flood [-- REQUESTS]

#[allow(clippy::unwrap_used)]
#[path = "../tests/common/mod.rs"]
mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

fn status_kib(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn client(pem: &[u8], from: IpAddr) -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(pem).expect("a PEM certificate"))
        .tls_built_in_root_certs(false)
        .local_address(from)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("an HTTPS client")
}

/// Sends `total` requests from `sources` addresses on `threads` threads (so at most `threads` connections at
/// once: what is measured is what requests leave behind, not how many sockets are open); returns the count of
/// each status: (200, 429, other).
fn flood(gate: &common::daemon::Gate, total: usize, sources: u32, threads: u32) -> (usize, usize, usize) {
    let per_source = total / usize::try_from(sources).unwrap_or(1);
    let pem = std::fs::read(gate.dir.path().join("keys/portal-cert.pem")).expect("the portal's certificate");
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (base, pem) = (gate.base.clone(), pem.clone());
            std::thread::spawn(move || {
                let (mut ok, mut limited, mut other) = (0, 0, 0);
                for s in (0..sources).filter(|s| sources == 1 || s % threads == t) {
                    let ip = if sources == 1 {
                        Ipv4Addr::new(127, 0, 0, 2)
                    } else {
                        Ipv4Addr::new(
                            127,
                            0,
                            u8::try_from(1 + s / 250).unwrap_or(255),
                            u8::try_from(1 + s % 250).unwrap_or(1),
                        )
                    };
                    let c = client(&pem, IpAddr::V4(ip));
                    let per_thread =
                        if sources == 1 { total / usize::try_from(threads).unwrap_or(1) } else { per_source };
                    for i in 0..per_thread {
                        let path = if i % 5 == 0 { "/login" } else { "/" };
                        match c.get(format!("{base}{path}")).send().map(|r| r.status().as_u16()) {
                            Ok(200) => ok += 1,
                            Ok(429) => limited += 1,
                            _ => other += 1,
                        }
                    }
                }
                (ok, limited, other)
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap_or((0, 0, 0))).fold((0, 0, 0), |a, b| (a.0 + b.0, a.1 + b.1, a.2 + b.2))
}

fn main() {
    let total: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(100_000);
    let frames = common::nuaa_frames("live", "0004");
    let gate = common::daemon::start_gate(&frames[..4]);
    let pid = gate.pid();
    std::thread::sleep(Duration::from_secs(5));
    let before = status_kib(pid, "VmRSS:");
    println!("facegate run with the portal, {total} anonymous requests per flood, 20 % to /login (a form):");
    println!("  before: VmRSS {:.1} MiB", before as f64 / 1024.0);

    // 127.0.0.1 (the device's own tools) is not limited, every other address is: 127.0.1.1 and up stand for
    // the LAN. 1,000 addresses x 100 requests stay under the limit of 120 a minute each.
    let mut last = before;
    let mut spread = before;
    for round in ["1,000 addresses", "1,000 more"] {
        let started = Instant::now();
        let (ok, limited, other) = flood(&gate, total, 1_000, 8);
        spread = status_kib(pid, "VmRSS:");
        println!(
            "  {round:<16} {ok} answered, {limited} refused (429), {other} other in {:.0} s; VmRSS {:.1} MiB ({:+.1})",
            started.elapsed().as_secs_f64(),
            spread as f64 / 1024.0,
            (spread as f64 - last as f64) / 1024.0
        );
        last = spread;
        // The same addresses once their minute has passed: every /login makes a new session again.
        std::thread::sleep(Duration::from_secs(61));
    }

    let started = Instant::now();
    let (ok, limited, other) = flood(&gate, total, 1, 8);
    let single = status_kib(pid, "VmRSS:");
    println!(
        "  one address      {ok} answered, {limited} refused (429), {other} other in {:.0} s; VmRSS {:.1} MiB ({:+.1})",
        started.elapsed().as_secs_f64(),
        single as f64 / 1024.0,
        (single as f64 - spread as f64) / 1024.0
    );
    println!(
        "  after both: {:+.1} MiB over the start; peak VmHWM {:.1} MiB",
        (single as f64 - before as f64) / 1024.0,
        status_kib(pid, "VmHWM:") as f64 / 1024.0
    );
}
