//! Where the models spend their time, node by node (tract's optimised plans, one thread): the profile that
//! decides which optimisation to try. Not a criterion bench: it prints the slowest nodes and the time per
//! operator kind.
//!
//!     cargo bench --bench profile [-- RUNS]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use facegate::vision::model::{ModelSpec, NodeTime, OnnxGraph, SFACE, YUNET};
use ndarray::Array4;

fn kind(op: &str) -> String {
    op.split(['(', ' ', '{']).next().unwrap_or(op).to_string()
}

fn report(spec: ModelSpec, shape: [usize; 4], runs: usize) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models");
    let plan = OnnxGraph::load(&dir, spec).and_then(|g| g.plan(shape)).expect("model loads (bash models/fetch.sh)");
    let input = Array4::from_shape_fn(shape, |(_, c, y, x)| ((x * 7 + y * 13 + c * 29) % 256) as f32);
    plan.profile(&input, 3).expect("warm-up");
    let times: Vec<NodeTime> = plan.profile(&input, runs).expect("profile");
    let total: Duration = times.iter().map(|t| t.total).sum();
    let per_run = |d: Duration| d.as_secs_f64() * 1e3 / runs as f64;
    println!("\n{} {:?}: {:.2} ms per run over {} nodes", spec.file_name, shape, per_run(total), times.len());
    let mut by_kind: BTreeMap<String, (Duration, usize)> = BTreeMap::new();
    for t in &times {
        let e = by_kind.entry(kind(&t.op)).or_default();
        e.0 += t.total;
        e.1 += 1;
    }
    let mut kinds: Vec<_> = by_kind.into_iter().collect();
    kinds.sort_by_key(|k| std::cmp::Reverse(k.1 .0));
    for (k, (d, n)) in kinds.iter().take(12) {
        println!(
            "  {:>7.2} ms {:>5.1} %  {:>3} x {}",
            per_run(*d),
            100.0 * d.as_secs_f64() / total.as_secs_f64(),
            n,
            k
        );
    }
    // The same plan run as the gate runs it (a fresh state each run): what the per-node sum leaves out.
    let started = std::time::Instant::now();
    for _ in 0..runs {
        std::hint::black_box(plan.run(input.clone()).expect("run"));
    }
    println!("  {:>7.2} ms a run through RunnablePlan::run (as the gate runs it)", per_run(started.elapsed()));
    let mut slow: Vec<&NodeTime> = times.iter().collect();
    slow.sort_by_key(|t| std::cmp::Reverse(t.total));
    println!("  slowest nodes:");
    for t in slow.iter().take(15) {
        let op: String = t.op.chars().take(110).collect();
        println!("  {:>7.3} ms  {:<40} {}", per_run(t.total), t.node.chars().take(40).collect::<String>(), op);
    }
}

fn main() {
    let runs = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(30);
    report(SFACE, [1, 3, 112, 112], runs);
    report(YUNET, [1, 3, 256, 320], runs);
    report(YUNET, [1, 3, 480, 640], runs);
}
