//! The auditor's byte scan (`audit::scan::find_all`: images, raw frames, embeddings in every encoding,
//! inside every decoded layer) over whole trees that hold no face data, to count false positives:
//!
//!     cargo run --release --example scan_tree -- /usr/lib /usr/share
//!
//! Prints every finding, then the number of files and bytes scanned and the time taken. Files over 512 MiB
//! are skipped (as the audit does) and counted.

use std::time::Instant;

fn main() {
    let roots: Vec<String> = std::env::args().skip(1).collect();
    if roots.is_empty() {
        eprintln!("usage: scan_tree PATH...");
        std::process::exit(2);
    }
    let faces = facegate::audit::faces::FaceCheck::load(Some(&facegate::vision::model::default_models_dir()));
    if let Some(why) = faces.unavailable() {
        eprintln!("no face check: {why}");
        std::process::exit(2);
    }
    let started = Instant::now();
    let (mut files, mut bytes, mut skipped, mut unreadable, mut cut) = (0u64, 0u64, 0u64, 0u64, 0usize);
    let mut by_kind = std::collections::BTreeMap::<&str, u64>::new();
    for root in &roots {
        for entry in walkdir::WalkDir::new(root).follow_links(false).into_iter().filter_map(Result::ok) {
            if !entry.file_type().is_file() {
                continue;
            }
            if entry.metadata().map(|m| m.len()).unwrap_or(0) > 512 << 20 {
                skipped += 1;
                continue;
            }
            let Ok(content) = std::fs::read(entry.path()) else {
                unreadable += 1;
                continue;
            };
            files += 1;
            bytes += content.len() as u64;
            let scan =
                facegate::audit::scan::find_all_in(&content, &faces, facegate::audit::scan::Content::of(&content));
            if scan.streams_cut > 0 {
                println!("{}: {} decoded streams cut at the limits", entry.path().display(), scan.streams_cut);
                cut += scan.streams_cut;
            }
            for f in scan.findings {
                *by_kind.entry(f.kind).or_default() += 1;
                println!("{}: {} at byte {} ({})", entry.path().display(), f.kind, f.offset, f.detail);
            }
        }
    }
    println!("findings by kind: {by_kind:?}");
    println!(
        "{} findings in {files} files, {bytes} bytes ({:.1} GiB) scanned in {:.0} s; {skipped} over 512 MiB \
         skipped, {unreadable} unreadable; {cut} decoded streams cut at the limits",
        by_kind.values().sum::<u64>(),
        bytes as f64 / f64::from(1u32 << 30),
        started.elapsed().as_secs_f64()
    );
}
