//! Time per detector of the auditor's byte scan, over the files given (for profiling the scan).
//!
//!     cargo run --release --example scan_timing -- FILE...

use std::time::Instant;

use facegate::audit::faces::FaceCheck;
use facegate::audit::{layers, pixels, scan, vectors};

fn main() {
    let mut times = [0f64; 6];
    let names = ["images", "raw frame and pixels", "binary vectors", "decimal vectors", "layers", "layers' contents"];
    let mut total = 0usize;
    let faces = FaceCheck::load(Some(&facegate::vision::model::default_models_dir()));
    for path in std::env::args().skip(1) {
        let Ok(bytes) = std::fs::read(&path) else { continue };
        total += bytes.len();
        let mut clock = |i: usize, f: &mut dyn FnMut()| {
            let t = Instant::now();
            f();
            times[i] += t.elapsed().as_secs_f64();
        };
        clock(0, &mut || drop(scan::find_images(&bytes, &faces)));
        clock(1, &mut || {
            drop(scan::find_raw_frame(&bytes));
            drop(pixels::find_raw_pixels(&bytes, &faces));
        });
        clock(2, &mut || drop(vectors::find_binary_vectors(&bytes)));
        clock(3, &mut || drop(vectors::find_decimal_vectors(&bytes)));
        let mut found = Vec::new();
        clock(4, &mut || found = layers::layers(&bytes).layers);
        clock(5, &mut || found.iter().for_each(|l| drop(scan::find_all(&l.bytes, &faces))));
    }
    println!("{total} bytes");
    for (name, t) in names.iter().zip(times) {
        println!("{name:>22}: {t:7.3} s  ({:.1} MB/s)", total as f64 / t.max(1e-9) / 1e6);
    }
}
