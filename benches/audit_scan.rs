//! The no-retention audit of a device with 10,000 enrolled residents: every check, the file scan reading
//! every byte of the data and key folders and every cell of the database, timed in one run.
//!
//!     cargo bench --bench audit_scan [-- RESIDENTS]
//!
//! Prints the residents, the files, bytes and cells scanned, and the time of the whole audit (issue 19 asks
//! for under a minute on a 2-core machine). The system's places are left out: on a build machine they hold
//! the build's own files, not a gate's.

use std::time::Instant;

use facegate::audit::{run_audit, AuditScope, Status};
use facegate::protect::keys::KeyWrap;

#[path = "support/mod.rs"]
mod support;

fn main() {
    let residents: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(10_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let started = Instant::now();
    support::enrol_residents(dir.path(), residents);
    println!("enrolled {residents} residents in {:.1} s", started.elapsed().as_secs_f64());
    let mut scope =
        AuditScope::new(dir.path().join("data/facegate.sqlite"), dir.path().join("keys"), KeyWrap::Plain, 400 * 86_400);
    scope.system_root = None;
    let started = Instant::now();
    let report = run_audit(&scope, 1_790_000_100);
    let seconds = started.elapsed().as_secs_f64();
    let files = report.checks.iter().find(|c| c.id == "files").expect("files check");
    println!("audit of a device with {residents} residents: {seconds:.2} s");
    println!("  {}", files.details.first().map_or("", String::as_str));
    for check in &report.checks {
        println!("  {:<10} {:?}", check.id, check.status);
    }
    assert_ne!(files.status, Status::Fail, "{:?}", files.details);
}
