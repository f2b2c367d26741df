//! `facegate audit`, the real binary on a real device layout (SQLite file, key folder): a clean install with an
//! enrolment and a revocation passes, and its signed report verifies offline and shows the deletion with the
//! receipt's code; a JPEG or a raw frame planted in the data folder, or a plaintext embedding written into the
//! database, fails the report, naming where.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use facegate::capture::{decode_file, DecodeLimits};

const BIN: &str = env!("CARGO_BIN_EXE_facegate");

struct Device {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Device {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        std::fs::write(root.join("notice.txt"), "Face entry notice 2026-11\n").unwrap();
        Self { _dir: dir, root }
    }
    fn db(&self) -> PathBuf {
        self.root.join("data/facegate.sqlite")
    }
    fn key(&self) -> PathBuf {
        self.root.join("keys/master.key")
    }
    fn store_args(&self) -> Vec<String> {
        vec!["--db".into(), self.db().display().to_string(), "--key-file".into(), self.key().display().to_string()]
    }
    fn cli(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(["--models", common::models_dir().to_str().unwrap()])
            .args(args)
            .args(self.store_args())
            .env_remove("FACEGATE_MASTER_PASSPHRASE")
            .output()
            .unwrap()
    }
    fn enrol(&self, resident: &str, photos: &[PathBuf]) {
        let notice = self.root.join("notice.txt");
        let out = self.cli(&[
            "consent",
            "--resident",
            resident,
            "--notice",
            notice.to_str().unwrap(),
            "--notice-version",
            "1",
        ]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let mut args = vec!["enroll".to_owned(), "--resident".into(), resident.into()];
        args.extend(photos.iter().map(|p| p.display().to_string()));
        let out = self.cli(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    /// The signed report as JSON, and the exit code. `FACEGATE_AUDIT_BIN` runs another build's audit on the
    /// same device (to show what an earlier version missed; one without the system's places).
    fn audit(&self) -> (serde_json::Value, Option<i32>) {
        let out = match std::env::var_os("FACEGATE_AUDIT_BIN") {
            Some(bin) => Command::new(bin).args(["audit", "--json"]).args(self.store_args()).output().unwrap(),
            None => self.cli(&["audit", "--json", "--no-system-places"]),
        };
        let text = String::from_utf8_lossy(&out.stdout);
        let value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{e}: {text} {}", String::from_utf8_lossy(&out.stderr)));
        (value, out.status.code())
    }
}

fn check<'a>(signed: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    signed["report"]["checks"].as_array().unwrap().iter().find(|c| c["id"] == id).unwrap()
}

fn details(check: &serde_json::Value) -> String {
    check["details"].as_array().unwrap().iter().map(|d| d.as_str().unwrap()).collect::<Vec<_>>().join("\n")
}

fn verify(path: &Path) -> Output {
    Command::new(BIN).args(["audit", "verify", path.to_str().unwrap()]).output().unwrap()
}

#[test]
fn a_clean_install_passes_and_planted_images_frames_or_embeddings_fail() {
    let device = Device::new();
    let live =
        |subject: &str| -> Vec<PathBuf> { common::nuaa_frames("live", subject).into_iter().step_by(4).collect() };
    device.enrol("r-stays", &live("0001"));
    device.enrol("r-leaves", &live("0002"));
    let out = device.cli(&["revoke", "--resident", "r-leaves", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let receipt: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();

    // Clean: every check passes but the runtime one, which may only warn off a Pi (no unit, no daemon).
    let (clean, code) = device.audit();
    eprintln!("{}", serde_json::to_string_pretty(&clean["report"]["checks"]).unwrap());
    assert_eq!(code, Some(0), "{clean}");
    assert_eq!(clean["report"]["passed"], true);
    for id in ["files", "database", "audit_log", "retention"] {
        assert_eq!(check(&clean, id)["status"], "pass", "{id}: {}", details(check(&clean, id)));
    }
    assert_ne!(check(&clean, "runtime")["status"], "fail");
    // The clock's synchronisation is always reported (a warning when there is no NTP: issue 17, attack 7).
    let synced = facegate::protect::hardening::clock_synchronised();
    let runtime = details(check(&clean, "runtime"));
    let expected = if synced == Some(true) { "clock is synchronised" } else { "not synchronised" };
    assert!(runtime.contains(expected) || synced.is_none(), "{synced:?}: {runtime}");
    assert_eq!(clean["report"]["templates_held"], 1);
    // The deletion is in the report, with the code the resident's receipt carries.
    let deletions = clean["report"]["deletions"].as_array().unwrap();
    assert_eq!(deletions.len(), 1, "{deletions:?}");
    assert_eq!(deletions[0]["event"], "revoke");
    assert_eq!(deletions[0]["verification_code"], receipt["verification_code"]);
    assert!(!details(check(&clean, "files")).contains("0 files"), "nothing was scanned");

    // Saved, it verifies offline; altered, it does not.
    let saved = device.root.join("report.json");
    std::fs::write(&saved, serde_json::to_vec_pretty(&clean).unwrap()).unwrap();
    let out = verify(&saved);
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("signature valid"));
    let text = std::fs::read_to_string(&saved).unwrap().replace("\"templates_held\": 1", "\"templates_held\": 0");
    std::fs::write(&saved, text).unwrap();
    let out = verify(&saved);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("signature"), "{}", String::from_utf8_lossy(&out.stderr));

    // A JPEG left in the data folder (a debugging "snapshot", say).
    let photo = common::nuaa_frames("live", "0003").remove(0);
    let planted = device.db().with_file_name("snapshot-0001.dat");
    std::fs::copy(&photo, &planted).unwrap();
    let (report, code) = device.audit();
    assert_eq!((code, &report["report"]["passed"]), (Some(2), &serde_json::json!(false)));
    let files = details(check(&report, "files"));
    assert!(files.contains("snapshot-0001.dat: image at byte 0 (Jpeg 640x480)"), "{files}");
    std::fs::remove_file(&planted).unwrap();

    // A raw frame: the decoded pixels, as a camera driver would hand them over.
    let frame = decode_file(&photo, DecodeLimits::default()).unwrap();
    let raw = device.db().with_file_name("buffer.bin");
    std::fs::write(&raw, frame.rgb()).unwrap();
    let (report, code) = device.audit();
    assert_eq!(code, Some(2));
    let files = details(check(&report, "files"));
    assert!(files.contains("buffer.bin: raw_frame at byte 0 (640x480 RGB)"), "{files}");
    std::fs::remove_file(&raw).unwrap();
    assert_eq!(device.audit().1, Some(0), "clean again once removed");

    // A plaintext embedding hidden in an innocent text column of the database.
    let embedding = common::pipeline().read(&frame).unwrap().embedding;
    let bytes: Vec<u8> = embedding.as_slice().iter().flat_map(|v| v.to_le_bytes()).collect();
    {
        let conn = rusqlite::Connection::open(device.db()).unwrap();
        conn.execute("UPDATE residents SET unit_label = ?1 WHERE id = 'r-stays'", [bytes]).unwrap();
    }
    let (report, code) = device.audit();
    assert_eq!(code, Some(2));
    let files = details(check(&report, "files"));
    assert!(files.contains("embedding"), "{files}");

    // A keypad code from before codes were lengthened (issue 17): a warning naming what to do.
    {
        let conn = rusqlite::Connection::open(device.db()).unwrap();
        conn.execute(
            "INSERT INTO pin_verifiers (resident_id, verifier, set_at, keypad_code) VALUES ('r-stays', 'x', 0, '3401')",
            [],
        )
        .unwrap();
    }
    let (report, _) = device.audit();
    let database = details(check(&report, "database"));
    assert_eq!(check(&report, "database")["status"], "warn", "{database}");
    assert!(database.contains("1 keypad code(s) shorter than 6 digits"), "{database}");

    // An image column added to the schema fails the database check.
    {
        let conn = rusqlite::Connection::open(device.db()).unwrap();
        conn.execute_batch("UPDATE residents SET unit_label = NULL; ALTER TABLE residents ADD COLUMN photo BLOB;")
            .unwrap();
    }
    let (report, _) = device.audit();
    let database = details(check(&report, "database"));
    assert_eq!(check(&report, "database")["status"], "fail", "{database}");
    assert!(database.contains("residents.photo"), "{database}");
}

/// An audit of a device with no database says so and fails; it never creates one.
#[test]
fn an_audit_without_a_database_fails_clearly_and_creates_nothing() {
    let device = Device::new();
    let (report, code) = device.audit();
    assert_eq!(code, Some(2));
    assert!(details(check(&report, "database")).contains("no database here"));
    assert!(!device.db().exists());
}

/// Real SFace embeddings of the shared photos, normalised and at the raw output's scale (norm ~11), written
/// the ways a careless or hostile integrator would: each float format in either byte order, decimal text,
/// base64, hex, inside gzip or zip and nested two deep, between log lines: every one is found. (Not yet
/// int8, and not yet the corpus of plants in copies of a real device: issue 19.)
#[test]
fn real_embeddings_are_found_in_every_encoding_and_container() {
    use facegate::audit::scan::find_all;
    use facegate::audit::vectors::NumberFormat;

    let encode = encode_as;
    let people = common::people_with(2);
    let faces = facegate::audit::faces::FaceCheck::Unavailable("vectors only".into());
    let (mut plants, mut found) = (0, 0);
    for (person, photos) in people.iter().take(8) {
        let embedding = common::pipeline().read_file(&photos[0], DecodeLimits::default()).unwrap().embedding;
        for scale in [1.0f32, 11.0] {
            let values: Vec<f32> = embedding.as_slice().iter().map(|v| v * scale).collect();
            let text = format!("[{}]", values.iter().map(|v| format!("{v:.5}")).collect::<Vec<_>>().join(", "));
            let mut encodings: Vec<(String, Vec<u8>)> =
                NumberFormat::ALL.iter().map(|f| (f.as_str().to_owned(), encode(&values, *f))).collect();
            encodings.push(("json text".into(), format!("{{\"person\": 1, \"v\": {text}}}").into_bytes()));
            let f32le = encode(&values, NumberFormat::F32Le);
            encodings.push(("base64 f32".into(), data_encoding::BASE64.encode(&f32le).into_bytes()));
            let hex = data_encoding::HEXLOWER.encode(&encode(&values, NumberFormat::F16Be));
            encodings.push(("hex f16".into(), hex.into_bytes()));
            encodings.push(("gzip f64".into(), gzip(&encode(&values, NumberFormat::F64Le))));
            encodings.push(("zip of json".into(), zip(text.as_bytes())));
            let nested = data_encoding::BASE64.encode(&gzip(&f32le));
            encodings.push(("base64 of gzip f32".into(), nested.into_bytes()));
            encodings.push(("gzip of zip of f16".into(), gzip(&zip(&encode(&values, NumberFormat::F16Le)))));
            for (how, planted) in encodings {
                let mut file = b"2026-12-01T10:00:00Z INFO gate: frame handled\n".repeat(20);
                file.extend(&planted);
                file.extend(b"\n2026-12-01T10:00:01Z INFO gate: frame handled\n".repeat(20));
                plants += 1;
                let findings = find_all(&file, &faces);
                if findings.iter().any(|f| f.kind.contains("embedding")) {
                    found += 1;
                } else {
                    eprintln!("missed: {person} at scale {scale} as {how}");
                }
            }
        }
    }
    eprintln!("{found} of {plants} plants found");
    assert_eq!(found, plants);
}

/// What a plant is made of and where it goes.
enum Spot {
    /// A file in the data folder.
    File(&'static str),
    /// A cell: SQL run on the copy's database with the bytes as `?1`, then the table and column named.
    Cell { sql: &'static str, table: &'static str, column: &'static str },
}

/// What the audit protects is biometric data: a photograph or a raster is reported when the gate's own
/// detector finds a face in it, and passed over when it shows none (a program's resources hold photographs:
/// Chromium's `.pak` files carried the false positives this test was written for, which the old scan
/// reported). Without a detector, every photograph counts.
#[test]
fn a_picture_is_reported_when_it_shows_a_face_and_passed_over_when_it_does_not() {
    use facegate::audit::faces::FaceCheck;
    use facegate::audit::{pixels::find_raw_pixels, scan::find_images};

    let faces = FaceCheck::load(Some(&common::models_dir()));
    assert!(faces.unavailable().is_none(), "{:?}", faces.unavailable());
    let every = FaceCheck::Unavailable("no detector".into());
    let amid = |bytes: &[u8]| [&b"\x00\x01log line\n".repeat(300)[..], bytes, &b"\nmore\n".repeat(300)[..]].concat();
    let no_face = common::shared_faces().join("_negatives/no_face");
    // (Not the dogs: YuNet gives their faces 0.85, above the gate's 0.8, and an auditor would rather look.)
    for name in ["dlib_eagle.jpg", "dlib_horses.jpg"] {
        let bytes = amid(&std::fs::read(no_face.join(name)).unwrap());
        assert_eq!(find_images(&bytes, &every).len(), 1, "{name} is a photograph");
        assert!(find_images(&bytes, &faces).is_empty(), "{name} shows no face");
    }
    for (person, photos) in common::people_with(1).iter().step_by(97).take(8) {
        let bytes = amid(&std::fs::read(&photos[0]).unwrap());
        assert_eq!(find_images(&bytes, &faces).len(), 1, "{person}: a face photo");
    }
    // Rasters: a webcam frame's pixels in grey (a face) against the same rows of a photo without one.
    for (path, face) in
        [(common::nuaa_frames("live", "0003").remove(0), true), (no_face.join("dlib_horses.jpg"), false)]
    {
        let frame = decode_file(&path, DecodeLimits::default()).unwrap();
        let grey: Vec<u8> =
            frame.rgb().chunks(3).map(|p| ((u16::from(p[0]) + u16::from(p[1]) + u16::from(p[2])) / 3) as u8).collect();
        let bytes = amid(&grey);
        assert!(!find_raw_pixels(&bytes, &every).is_empty(), "{}: a raster", path.display());
        assert_eq!(!find_raw_pixels(&bytes, &faces).is_empty(), face, "{}", path.display());
    }
}

/// Issue 19's must-show: a corpus of plants made from the shared photos (every encoding and container the
/// auditor decodes, alone and nested two deep), each planted in its own copy of a real device (enrolled and
/// revoked through the CLI), each reported by `facegate audit` with its location. Recall must be 100 %.
#[test]
fn every_plant_of_the_corpus_is_found_in_its_own_copy_of_a_real_device_with_its_location() {
    use facegate::audit::vectors::NumberFormat;

    let base = Device::new();
    base.enrol("r-1", &common::nuaa_frames("live", "0001").into_iter().step_by(4).collect::<Vec<_>>());
    base.enrol("r-2", &common::nuaa_frames("live", "0002").into_iter().step_by(4).collect::<Vec<_>>());
    assert!(base.cli(&["revoke", "--resident", "r-2"]).status.success());
    let (clean, code) = base.audit();
    assert_eq!(code, Some(0), "the unplanted device passes: {}", details(check(&clean, "files")));

    // The materials: a webcam JPEG, its frame, a real aligned crop, a liveness-sized patch, an embedding.
    let photo_path = common::nuaa_frames("live", "0003").remove(0);
    let jpeg = std::fs::read(&photo_path).unwrap();
    let frame = decode_file(&photo_path, DecodeLimits::default()).unwrap();
    let faces = common::pipeline().detector().detect(&frame).unwrap();
    let crop = facegate::vision::align::align(&frame, &faces[0].landmarks).unwrap().rgb().to_vec();
    let rgb = image::RgbImage::from_raw(frame.width(), frame.height(), frame.rgb().to_vec()).unwrap();
    let b = faces[0].bbox;
    let face = image::imageops::crop_imm(&rgb, b.x as u32, b.y as u32, b.width as u32, b.height as u32).to_image();
    let patch = image::imageops::resize(&face, 80, 80, image::imageops::FilterType::Triangle).into_raw();
    let grey_crop: Vec<u8> =
        crop.chunks(3).map(|p| ((u16::from(p[0]) + u16::from(p[1]) + u16::from(p[2])) / 3) as u8).collect();
    let pi_frame = image::imageops::resize(&rgb, 1456, 1088, image::imageops::FilterType::Triangle).into_raw();
    let yuyv: Vec<u8> = frame
        .rgb()
        .chunks(6)
        .flat_map(|p| {
            let y =
                |r: u8, g: u8, b: u8| ((66 * u32::from(r) + 129 * u32::from(g) + 25 * u32::from(b)) / 256 + 16) as u8;
            [y(p[0], p[1], p[2]), 128, y(p[3], p[4], p[5]), 128]
        })
        .collect();
    let mut png = std::io::Cursor::new(Vec::new());
    image::RgbImage::from_raw(112, 112, crop.clone()).unwrap().write_to(&mut png, image::ImageFormat::Png).unwrap();
    let png = png.into_inner();
    let embedding: Vec<f32> = common::pipeline().read(&frame).unwrap().embedding.as_slice().to_vec();
    let raw_scale: Vec<f32> = embedding.iter().map(|v| v * 11.3).collect();
    let as_format = encode_as;
    let max = embedding.iter().fold(0f32, |m, v| m.max(v.abs()));
    let int8: Vec<u8> = embedding.iter().map(|v| ((v / max * 127.0).round() as i8) as u8).collect();
    let json = format!(
        "{{\"id\": 3, \"v\": [{}]}}",
        embedding.iter().map(|v| format!("{v:.6}")).collect::<Vec<_>>().join(", ")
    );
    let csv = format!("r-1;{}\n", raw_scale.iter().map(|v| format!("{v:.4}")).collect::<Vec<_>>().join(";"));
    let log_line = format!(
        "2026-12-01T10:00:00Z DEBUG matcher: probe {}\n",
        embedding.iter().map(|v| format!("{v:.5}")).collect::<Vec<_>>().join(" ")
    );
    let f32le = as_format(&embedding, NumberFormat::F32Le);

    // The containers and text encodings.
    let zstd = |bytes: &[u8]| ruzstd::encoding::compress_to_vec(bytes, ruzstd::encoding::CompressionLevel::Fastest);
    let xz = |bytes: &[u8]| {
        let mut out = Vec::new();
        lzma_rs::xz_compress(&mut std::io::Cursor::new(bytes), &mut out).unwrap();
        out
    };
    let base64 = |bytes: &[u8]| data_encoding::BASE64.encode(bytes).into_bytes();
    let hex = |bytes: &[u8]| data_encoding::HEXLOWER.encode(bytes).into_bytes();
    let amid = |bytes: &[u8]| {
        let mut file = b"2026-12-01T10:00:00Z INFO gate: frame handled in 42 ms\n".repeat(100);
        file.extend(bytes);
        file.extend(b"\n2026-12-01T10:00:01Z INFO gate: door closed\n".repeat(100));
        file
    };
    let in_log = |bytes: &[u8]| amid(&[b"{\"level\":\"debug\",\"snapshot\":\"", &base64(bytes)[..], b"\"}"].concat());

    const IMAGE: &[&str] = &["image"];
    const PIXELS: &[&str] = &["raw_frame", "raw_pixels"];
    const EMBEDDING: &[&str] = &["embedding"];
    let plants: Vec<(&str, &[&str], Spot, Vec<u8>)> = vec![
        ("a JPEG file", IMAGE, Spot::File("snap.dat"), jpeg.clone()),
        ("a PNG of the aligned crop", IMAGE, Spot::File("crop.png"), png.clone()),
        ("a JPEG inside a log", IMAGE, Spot::File("gate.log"), amid(&jpeg)),
        ("a JPEG in base64 in a JSON log line", IMAGE, Spot::File("events.jsonl"), in_log(&jpeg)),
        ("a JPEG in hex", IMAGE, Spot::File("dump.hex"), hex(&jpeg)),
        ("a JPEG in gzip", IMAGE, Spot::File("snap.gz"), gzip(&jpeg)),
        ("a JPEG in zstd", IMAGE, Spot::File("snap.zst"), zstd(&jpeg)),
        ("a JPEG in xz", IMAGE, Spot::File("snap.xz"), xz(&jpeg)),
        ("a JPEG in a zip", IMAGE, Spot::File("snaps.zip"), zip(&jpeg)),
        ("a JPEG in gzip in base64", IMAGE, Spot::File("blob.txt"), base64(&gzip(&jpeg))),
        ("a JPEG in xz in a zip", IMAGE, Spot::File("bundle.zip"), zip(&xz(&jpeg))),
        ("a PNG crop in zstd in hex", IMAGE, Spot::File("crop.hex"), hex(&zstd(&png))),
        ("a raw 640x480 RGB frame", PIXELS, Spot::File("frame.raw"), frame.rgb().to_vec()),
        ("a raw 640x480 YUYV frame", PIXELS, Spot::File("frame.yuyv"), yuyv.clone()),
        ("a Pi camera frame (1456x1088 RGB) inside a larger file", PIXELS, Spot::File("cam.bin"), amid(&pi_frame)),
        ("a raw aligned crop (112x112 RGB) inside a file", PIXELS, Spot::File("crop.bin"), amid(&crop)),
        ("a raw grey crop (112x112)", PIXELS, Spot::File("grey.bin"), amid(&grey_crop)),
        ("a raw liveness patch (80x80 RGB)", PIXELS, Spot::File("patch.bin"), amid(&patch)),
        ("a raw crop in gzip", PIXELS, Spot::File("crop.raw.gz"), gzip(&crop)),
        ("a raw patch in base64", PIXELS, Spot::File("patch.b64"), base64(&patch)),
        ("a raw frame in zstd", PIXELS, Spot::File("frame.zst"), zstd(frame.rgb())),
        ("an embedding f32 little-endian", EMBEDDING, Spot::File("probe.f32"), amid(&f32le)),
        ("an embedding f32 big-endian", EMBEDDING, Spot::File("probe.f32be"), amid(&as_format(&embedding, NumberFormat::F32Be))),
        ("an embedding f16 little-endian", EMBEDDING, Spot::File("probe.f16"), amid(&as_format(&embedding, NumberFormat::F16Le))),
        ("an embedding f16 big-endian", EMBEDDING, Spot::File("probe.f16be"), amid(&as_format(&embedding, NumberFormat::F16Be))),
        ("an embedding f64 little-endian", EMBEDDING, Spot::File("probe.f64"), amid(&as_format(&embedding, NumberFormat::F64Le))),
        ("an embedding f64 big-endian", EMBEDDING, Spot::File("probe.f64be"), amid(&as_format(&embedding, NumberFormat::F64Be))),
        ("a raw-scale embedding (norm 11)", EMBEDDING, Spot::File("raw.f32"), amid(&as_format(&raw_scale, NumberFormat::F32Le))),
        ("an embedding as JSON", EMBEDDING, Spot::File("probe.json"), json.clone().into_bytes()),
        ("a raw-scale embedding as CSV", EMBEDDING, Spot::File("probes.csv"), csv.clone().into_bytes()),
        ("an embedding in a log line", EMBEDDING, Spot::File("debug.log"), amid(log_line.as_bytes())),
        ("an embedding in base64", EMBEDDING, Spot::File("probe.b64"), base64(&f32le)),
        ("an embedding f16 in hex", EMBEDDING, Spot::File("probe.hex"), hex(&as_format(&embedding, NumberFormat::F16Be))),
        ("an embedding f64 in gzip", EMBEDDING, Spot::File("probe.gz"), gzip(&as_format(&embedding, NumberFormat::F64Le))),
        ("an embedding f32 in zstd", EMBEDDING, Spot::File("probe.zst"), zstd(&f32le)),
        ("an embedding f16 in xz", EMBEDDING, Spot::File("probe.xz"), xz(&as_format(&embedding, NumberFormat::F16Le))),
        ("an embedding as JSON in a zip", EMBEDDING, Spot::File("probes.zip"), zip(json.as_bytes())),
        ("an int8-quantised embedding", EMBEDDING, Spot::File("probe.i8"), int8.clone()),
        ("an embedding in gzip in base64", EMBEDDING, Spot::File("probe.gz.b64"), base64(&gzip(&f32le))),
        ("an embedding f16 in a zip in gzip", EMBEDDING, Spot::File("probe.zip.gz"), gzip(&zip(&as_format(&embedding, NumberFormat::F16Le)))),
        ("an int8 embedding in hex in a log", EMBEDDING, Spot::File("q.log"), amid(&hex(&int8))),
        (
            "a JPEG over overflow pages, as a BLOB in a TEXT column",
            IMAGE,
            Spot::Cell { sql: "UPDATE residents SET unit_label = ?1 WHERE id = 'r-1'", table: "residents", column: "unit_label" },
            jpeg.clone(),
        ),
        (
            "a PNG crop in a table named like the portal's, column `ciphertext`",
            IMAGE,
            Spot::Cell {
                sql: "CREATE TABLE portal_cache (id INTEGER PRIMARY KEY, ciphertext BLOB); INSERT INTO portal_cache VALUES (1, ?1)",
                table: "portal_cache",
                column: "ciphertext",
            },
            png.clone(),
        ),
        (
            "an embedding in a column named `nonce` of a table named like the compound's",
            EMBEDDING,
            Spot::Cell {
                sql: "CREATE TABLE compound_seen (nonce TEXT); INSERT INTO compound_seen VALUES (?1)",
                table: "compound_seen",
                column: "nonce",
            },
            f32le.clone(),
        ),
        (
            "an int8 embedding in a column named `hash`",
            EMBEDDING,
            Spot::Cell { sql: "CREATE TABLE cache (hash BLOB); INSERT INTO cache VALUES (?1)", table: "cache", column: "hash" },
            int8.clone(),
        ),
        (
            "a raw patch in gzip in a TEXT cell",
            PIXELS,
            Spot::Cell { sql: "UPDATE residents SET unit_label = ?1 WHERE id = 'r-2'", table: "residents", column: "unit_label" },
            gzip(&patch),
        ),
    ];
    assert!(plants.len() >= 40);

    let mut missed = Vec::new();
    for (what, kinds, spot, bytes) in &plants {
        let copy = Device::new();
        for folder in ["data", "keys"] {
            copy_dir(&base.root.join(folder), &copy.root.join(folder));
        }
        let expected = match spot {
            Spot::File(name) => {
                std::fs::write(copy.db().with_file_name(name), bytes).unwrap();
                format!("{}: ", copy.db().with_file_name(name).display())
            }
            Spot::Cell { sql, table, .. } => {
                let conn = rusqlite::Connection::open(copy.db()).unwrap();
                let (setup, insert) = sql.rsplit_once("; ").unwrap_or(("", sql));
                if !setup.is_empty() {
                    conn.execute_batch(setup).unwrap();
                }
                conn.execute(insert, [rusqlite::types::Value::Blob(bytes.clone())]).unwrap();
                format!("table {table}, row ")
            }
        };
        let (report, code) = copy.audit();
        let files = details(check(&report, "files"));
        // Found where it is and as what it is (not, say, a crop taken for int8 numbers).
        let located = files
            .lines()
            .filter(|l| l.contains(&expected) && kinds.iter().any(|k| l.contains(&format!(": {k} at byte"))))
            .collect::<Vec<_>>();
        let column_ok = match spot {
            Spot::Cell { column, .. } => located.iter().any(|l| l.contains(&format!("column {column}:"))),
            Spot::File(_) => !located.is_empty(),
        };
        eprintln!("{what}: {}", located.first().map_or("MISSED", |l| l));
        if code != Some(2) || !column_ok {
            missed.push(*what);
        }
    }
    eprintln!("{} of {} plants found, each with its location", plants.len() - missed.len(), plants.len());
    assert!(missed.is_empty(), "missed: {missed:?}");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Values in one of the binary number formats.
fn encode_as(values: &[f32], format: facegate::audit::vectors::NumberFormat) -> Vec<u8> {
    use facegate::audit::vectors::NumberFormat;
    values
        .iter()
        .flat_map(|&v| match format {
            NumberFormat::F16Le => half::f16::from_f32(v).to_le_bytes().to_vec(),
            NumberFormat::F16Be => half::f16::from_f32(v).to_be_bytes().to_vec(),
            NumberFormat::F32Le => v.to_le_bytes().to_vec(),
            NumberFormat::F32Be => v.to_be_bytes().to_vec(),
            NumberFormat::F64Le => f64::from(v).to_le_bytes().to_vec(),
            NumberFormat::F64Be => f64::from(v).to_be_bytes().to_vec(),
        })
        .collect()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn zip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    w.start_file("dump.bin", zip::write::SimpleFileOptions::default()).unwrap();
    w.write_all(bytes).unwrap();
    w.finish().unwrap().into_inner()
}
