//! Check (a), the file scan: the data and key folders, `[audit] scan_paths`, and (unless switched off) the
//! places a system keeps what a process threw away: the journal, the coredump folder, /tmp, /var/tmp and any
//! active swap area. Every file's bytes go to the byte scanners ([`super::scan::find_all`]), large ones in
//! overlapping pieces; every SQLite database's cells too ([`super::cells`]).
//!
//! Reads only; a finding names the file (and table, row, column), the offset and why, never the bytes.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::faces::FaceCheck;
use super::{cells, scan, AuditScope, Check, Outcome, FILES_TITLE};

/// Bytes read and scanned at once; a larger file is scanned in pieces overlapping by [`OVERLAP`].
const PIECE: usize = 64 << 20;

/// Overlap of neighbouring pieces: more than any detector looks at in one go (a 1,024-value f64 vector,
/// an image header, a base64 run of a crop), so that nothing straddling a cut is missed.
const OVERLAP: usize = 1 << 20;

/// Where a system keeps what processes threw away, relative to the system root.
const SYSTEM_PLACES: [(&str, &str); 5] = [
    ("the persistent journal", "var/log/journal"),
    ("the volatile journal", "run/log/journal"),
    ("systemd-coredump's folder", "var/lib/systemd/coredump"),
    ("/tmp", "tmp"),
    ("/var/tmp", "var/tmp"),
];

/// One folder or file to scan, and what it is.
struct Root {
    what: String,
    path: PathBuf,
}

/// Runs check (a); `progress(done, total)` is called with bytes as they are scanned.
pub(super) fn check_files(scope: &AuditScope, progress: &dyn Fn(u64, u64)) -> Check {
    let mut out = Outcome::new();
    let faces = FaceCheck::load(scope.models_dir.as_deref());
    if let Some(why) = faces.unavailable() {
        out.note(format!("no face check ({why}): every photograph and raster is reported"));
    }
    let roots = roots(scope, &mut out);
    let total: u64 = roots.iter().flat_map(|r| files_under(&r.path)).map(|(_, size)| size).sum();
    let (mut files, mut bytes_scanned, mut cells_read) = (0usize, 0u64, 0u64);
    for root in &roots {
        if !root.path.exists() {
            out.note(format!("{} ({}): absent", root.what, root.path.display()));
            continue;
        }
        for entry in walkdir::WalkDir::new(&root.path).follow_links(false) {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    out.fail(format!("cannot read {e}: run the audit as the service user or root"));
                    continue;
                }
            };
            if !entry.file_type().is_file() && !is_block_device(entry.path()) {
                continue;
            }
            let path = entry.path();
            let database = match scan_file(path, PIECE, &faces, &mut |n| {
                bytes_scanned += n;
                progress(bytes_scanned, total);
            }) {
                Ok(scanned) => {
                    files += 1;
                    for f in scanned.findings {
                        out.fail(format!("{}: {} at byte {} ({})", path.display(), f.kind, f.offset, f.detail));
                    }
                    if scanned.streams_cut > 0 {
                        out.warn(format!(
                            "{}: {} decoded streams cut or left out at the limits ({} MiB a stream, {} MiB a file \
                             piece); not looked at past them",
                            path.display(),
                            scanned.streams_cut,
                            super::layers::MAX_LAYER_BYTES >> 20,
                            super::layers::MAX_TOTAL_BYTES >> 20,
                        ));
                    }
                    scanned.database
                }
                Err(e) => {
                    out.fail(format!("{}: cannot read ({e}); run the audit as root", path.display()));
                    false
                }
            };
            if database {
                match cells::scan_database(path, &faces) {
                    Ok(scan) => {
                        cells_read += scan.cells;
                        for c in scan.findings {
                            out.fail(format!(
                                "{}: table {}, row {}, column {}: {} at byte {} of the value ({})",
                                path.display(),
                                c.table,
                                c.row,
                                c.column,
                                c.finding.kind,
                                c.finding.offset,
                                c.finding.detail
                            ));
                        }
                    }
                    Err(e) => out.fail(format!("{}: a database whose cells cannot be read: {e}", path.display())),
                }
            }
        }
    }
    let names = roots.iter().map(|r| r.path.display().to_string()).collect::<Vec<_>>().join(", ");
    out.details.insert(
        0,
        format!("{files} files, {bytes_scanned} bytes and {cells_read} database cells scanned under {names}"),
    );
    out.into_check("files", FILES_TITLE)
}

/// The device's folders, the configured ones, and the system's places with swap (each noted present or
/// absent).
fn roots(scope: &AuditScope, out: &mut Outcome) -> Vec<Root> {
    let db_dir = scope.database.parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let mut roots = vec![
        Root { what: "the data folder".into(), path: db_dir },
        Root { what: "the key folder".into(), path: scope.key_dir.clone() },
    ];
    roots.extend(scope.extra_paths.iter().map(|p| Root { what: "a configured path".into(), path: p.clone() }));
    let Some(system) = &scope.system_root else {
        out.note("the system's places (journal, coredumps, /tmp, /var/tmp, swap) were not scanned".into());
        return roots;
    };
    for (what, relative) in SYSTEM_PLACES {
        roots.push(Root { what: what.into(), path: system.join(relative) });
    }
    let swaps = std::fs::read_to_string(scope.proc_root.join("swaps")).unwrap_or_default();
    let areas: Vec<&str> = swaps.lines().skip(1).filter_map(|l| l.split_whitespace().next()).collect();
    if areas.is_empty() {
        out.note("swap: none active".into());
    }
    for area in areas {
        // /proc/swaps names paths on the running system: under a test's root, they are relative to it.
        let path = system.join(area.trim_start_matches('/'));
        out.note(format!("swap: {area} active, scanned"));
        roots.push(Root { what: "a swap area".into(), path });
    }
    roots
}

/// Files under a root with their sizes (for the progress bar's total).
fn files_under(root: &Path) -> impl Iterator<Item = (PathBuf, u64)> {
    walkdir::WalkDir::new(root).follow_links(false).into_iter().filter_map(Result::ok).filter_map(|e| {
        let size = if e.file_type().is_file() { e.metadata().ok()?.len() } else { device_size(e.path())? };
        Some((e.path().to_path_buf(), size))
    })
}

fn is_block_device(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_block_device())
}

/// A swap partition's size (its length as a file is 0).
fn device_size(path: &Path) -> Option<u64> {
    if !is_block_device(path) {
        return None;
    }
    let mut file = std::fs::File::open(path).ok()?;
    std::io::Seek::seek(&mut file, std::io::SeekFrom::End(0)).ok()
}

/// What the byte scan of one file gave.
struct ScannedFile {
    findings: Vec<scan::Finding>,
    /// It starts with SQLite's header (its cells are read next, through SQLite).
    database: bool,
    /// Decoded streams the limits cut short or left out.
    streams_cut: usize,
}

/// Every finding in one file: whole when it fits in a piece, else piece by piece (each piece a value of
/// its own; findings in an overlap reported once, at their offset in the file).
fn scan_file(
    path: &Path,
    piece_size: usize,
    faces: &FaceCheck,
    scanned: &mut dyn FnMut(u64),
) -> std::io::Result<ScannedFile> {
    let mut file = std::fs::File::open(path)?;
    let mut findings: Vec<scan::Finding> = Vec::new();
    let mut piece: Vec<u8> = Vec::new();
    let mut database = None;
    let mut content = None;
    let mut start = 0usize; // file offset of piece[0]
    let mut streams_cut = 0;
    loop {
        let before = piece.len();
        (&mut file).take((piece_size - before) as u64).read_to_end(&mut piece)?;
        let fresh = piece.len() - before;
        scanned(fresh as u64);
        let last = piece.len() < piece_size;
        database.get_or_insert_with(|| piece.starts_with(cells::SQLITE_MAGIC));
        let content = *content.get_or_insert_with(|| scan::Content::of(&piece));
        let scan = scan::find_all_in(&piece, faces, content);
        streams_cut += scan.streams_cut;
        for f in scan.findings {
            let found = scan::Finding { offset: start + f.offset, ..f };
            // Seen again in the overlap: the later piece holds more of it (an image cut at the end of the
            // earlier piece is whole in the next).
            match findings.iter_mut().find(|g| g.offset == found.offset && g.kind == found.kind) {
                Some(earlier) => *earlier = found,
                None => findings.push(found),
            }
        }
        if last {
            return Ok(ScannedFile { findings, database: database.unwrap_or(false), streams_cut });
        }
        let keep = piece.len() - OVERLAP;
        piece.drain(..keep);
        start += keep;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protect::keys::KeyWrap;

    /// The system's places under a test root: what a crashed or careless process left in the journal, the
    /// coredump folder, /tmp, /var/tmp and a swap file is found; an absent place is noted; switched off,
    /// none is read.
    #[test]
    fn the_journal_coredumps_temp_folders_and_swap_are_scanned_and_named() {
        let root = tempfile::tempdir().unwrap();
        let sys = root.path().join("sys");
        let proc_root = root.path().join("proc");
        std::fs::create_dir_all(proc_root.join("sys/kernel")).unwrap();
        let img =
            image::RgbImage::from_fn(64, 64, |x, y| image::Rgb([(x * 3 + y) as u8, (y * 3) as u8, (x ^ y) as u8]));
        let mut png = std::io::Cursor::new(Vec::new());
        img.write_to(&mut png, image::ImageFormat::Png).unwrap();
        let png = png.into_inner();
        let planted = [
            "var/log/journal/abc/system.journal",
            "var/lib/systemd/coredump/core.facegate.0.zst",
            "tmp/frame-dump.bin",
            "var/tmp/probe.png",
            "swapfile",
        ];
        for path in planted {
            let path = sys.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            let mut bytes = b"header ".repeat(300);
            bytes.extend(&png);
            std::fs::write(path, bytes).unwrap();
        }
        std::fs::write(proc_root.join("swaps"), "Filename Type Size Used Priority\n/swapfile file 1024 0 -2\n")
            .unwrap();
        let data = root.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let mut scope = AuditScope::new(data.join("facegate.sqlite"), root.path().join("keys"), KeyWrap::Plain, 1);
        scope.proc_root = proc_root;
        scope.system_root = Some(sys.clone());
        let check = check_files(&scope, &|_, _| {});
        let text = check.details.join("\n");
        for path in planted {
            assert!(text.contains(&format!("{}: image at byte 2100", sys.join(path).display())), "{path}: {text}");
        }
        assert!(text.contains("the volatile journal"), "an absent place is noted: {text}");
        assert!(text.contains("swap: /swapfile active, scanned"), "{text}");
        scope.system_root = None;
        let check = check_files(&scope, &|_, _| {});
        assert_eq!(check.status, super::super::Status::Pass, "{:?}", check.details);
    }

    #[test]
    fn a_large_file_is_scanned_in_pieces_and_a_finding_across_a_cut_is_found_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.bin");
        let img = image::RgbImage::from_fn(64, 64, |x, y| image::Rgb([(x * 3) as u8, (y * 3) as u8, 9]));
        let mut png = std::io::Cursor::new(Vec::new());
        img.write_to(&mut png, image::ImageFormat::Png).unwrap();
        let png = png.into_inner();
        // Ciphertext-like filler, with the image straddling the first cut and inside the overlap.
        let piece = 4 * OVERLAP;
        let mut rng = <rand_chacha::ChaCha20Rng as rand::SeedableRng>::seed_from_u64(3);
        let mut bytes = vec![0u8; piece + 3 * OVERLAP];
        rand::RngCore::fill_bytes(&mut rng, &mut bytes);
        let at = piece - 100;
        bytes.splice(at..at + png.len(), png);
        std::fs::write(&path, &bytes).unwrap();
        let mut seen = 0u64;
        let faces = FaceCheck::Unavailable("a unit test".into());
        let found = scan_file(&path, piece, &faces, &mut |n| seen += n).unwrap().findings;
        assert_eq!(seen, bytes.len() as u64);
        let images: Vec<_> = found.iter().filter(|f| f.kind == "image").collect();
        assert_eq!(images.len(), 1, "{found:?}");
        assert_eq!((images[0].offset, images[0].detail.as_str()), (at, "Png 64x64"));
    }
}
