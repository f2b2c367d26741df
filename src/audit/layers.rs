//! Decoding before looking: the byte streams hidden inside a file (gzip, zstd and xz streams, zip entries,
//! base64 and hex runs), each decoded and searched again, up to [`MAX_DEPTH`] layers deep.
//!
//! Pure but for the decompressors it calls. Bounded so that a bomb cannot stall or exhaust the auditor: each
//! decoded layer is cut at [`MAX_LAYER_BYTES`], a file yields at most [`MAX_TOTAL_BYTES`] of decoded bytes,
//! and a decoder that fails (random bytes that happen to start with a magic) is simply not a layer.

use std::io::Read;

/// Layers below the file itself (a zip of a gzip of base64 is three).
pub const MAX_DEPTH: usize = 3;
/// The most bytes one decoded layer may have (the rest is not looked at, and the finding says so).
pub const MAX_LAYER_BYTES: usize = 64 << 20;
/// The most decoded bytes one file may yield, all layers together.
pub const MAX_TOTAL_BYTES: usize = 256 << 20;
/// The shortest base64 or hex run decoded (a 64-value int8 vector in base64 is 88 characters).
pub const MIN_TEXT_RUN: usize = 88;

/// One decoded stream: how it was reached from the file, and its bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layer {
    /// From the outside in, e.g. `gzip@120 > base64@4`.
    pub path: String,
    /// The decoded bytes.
    pub bytes: Vec<u8>,
}

/// Every layer inside `bytes` (not `bytes` itself), outermost first.
pub fn layers(bytes: &[u8]) -> Vec<Layer> {
    let mut out = Vec::new();
    let mut budget = MAX_TOTAL_BYTES;
    descend(bytes, "", 1, &mut budget, &mut out);
    out
}

fn descend(bytes: &[u8], path: &str, depth: usize, budget: &mut usize, out: &mut Vec<Layer>) {
    if depth > MAX_DEPTH {
        return;
    }
    for (what, offset, decoded) in decode_all(bytes, *budget) {
        if *budget == 0 {
            return;
        }
        let decoded = &decoded[..decoded.len().min(*budget)];
        *budget -= decoded.len();
        let here = if path.is_empty() { format!("{what}@{offset}") } else { format!("{path} > {what}@{offset}") };
        out.push(Layer { path: here.clone(), bytes: decoded.to_vec() });
        descend(decoded, &here, depth + 1, budget, out);
    }
}

/// Every stream that decodes at some offset of `bytes`: (kind, offset, decoded bytes).
fn decode_all(bytes: &[u8], budget: usize) -> Vec<(&'static str, usize, Vec<u8>)> {
    let limit = budget.min(MAX_LAYER_BYTES);
    let mut found = Vec::new();
    let mut i = 0;
    while i + 4 <= bytes.len() && found.len() < 4_096 {
        let rest = &bytes[i..];
        let mut skip = 0;
        let decoded = if rest.starts_with(&[0x1f, 0x8b, 0x08]) {
            read_limited(flate2::read::MultiGzDecoder::new(rest), limit).map(|d| ("gzip", d))
        } else if rest.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            ruzstd::decoding::StreamingDecoder::new(rest).ok().and_then(|d| read_limited(d, limit)).map(|d| ("zstd", d))
        } else if rest.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
            xz(rest, limit).map(|d| ("xz", d))
        } else if rest.starts_with(b"PK\x03\x04") {
            zip_entries(rest, limit).map(|(d, read)| {
                // The archive's entries are read to its end: their own headers, further on, are not archives
                // of their own (each would read the rest again, quadratic in the entries of a wheel or jar).
                skip = read;
                ("zip", d)
            })
        } else {
            None
        };
        match decoded {
            Some((what, data)) if !data.is_empty() => {
                found.push((what, i, data));
                i += skip.max(4);
            }
            _ => i += 1,
        }
    }
    found.extend(text_runs(bytes, limit));
    found
}

fn read_limited(reader: impl Read, limit: usize) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    // A stream cut short (truncated, or past the limit) still gives what it decoded so far.
    let _ = reader.take(u64::try_from(limit).unwrap_or(u64::MAX)).read_to_end(&mut out);
    (!out.is_empty()).then_some(out)
}

fn xz(bytes: &[u8], limit: usize) -> Option<Vec<u8>> {
    let mut out = Capped { bytes: Vec::new(), limit };
    // The decoder stops at the cap (the writer refuses more) or at corrupt input: what it wrote is kept.
    let _ = lzma_rs::xz_decompress(&mut std::io::Cursor::new(bytes), &mut out);
    (!out.bytes.is_empty()).then_some(out.bytes)
}

/// A writer that takes at most `limit` bytes, then refuses.
struct Capped {
    bytes: Vec<u8>,
    limit: usize,
}

impl std::io::Write for Capped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let room = self.limit - self.bytes.len();
        if room == 0 {
            return Err(std::io::Error::other("decoded layer limit reached"));
        }
        let n = buf.len().min(room);
        self.bytes.extend_from_slice(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The entries of a zip archive that starts here, read from their local headers (a zip embedded in another
/// file has no central directory where a reader would look), concatenated.
/// The entries of a zip archive from its first local header on, and how many bytes they took.
fn zip_entries(bytes: &[u8], limit: usize) -> Option<(Vec<u8>, usize)> {
    let mut cursor = std::io::Cursor::new(bytes);
    let mut out = Vec::new();
    let mut read = 0;
    while out.len() < limit {
        match zip::read::read_zipfile_from_stream(&mut cursor) {
            Ok(Some(entry)) => {
                let left = limit - out.len();
                let _ = entry.take(u64::try_from(left).unwrap_or(u64::MAX)).read_to_end(&mut out);
            }
            Ok(None) | Err(_) => break,
        }
        read = usize::try_from(cursor.position()).unwrap_or(bytes.len());
    }
    (!out.is_empty()).then_some((out, read))
}

/// Runs of hex, base64 and URL-safe base64 of at least [`MIN_TEXT_RUN`] characters, decoded. A base64 run
/// may be wrapped (MIME and PEM break lines every 64 or 76 characters); a run that is all hex digits is read
/// as hex only. Where a run starts mid-token, each of the four possible starts is tried.
fn text_runs(bytes: &[u8], limit: usize) -> Vec<(&'static str, usize, Vec<u8>)> {
    let hex = |b: u8| b.is_ascii_hexdigit();
    let standard = |b: u8| b.is_ascii_alphanumeric() || b == b'+' || b == b'/';
    let url = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
    let mut found = Vec::new();
    for (what, class) in [("hex", &hex as &dyn Fn(u8) -> bool), ("base64", &standard), ("base64url", &url)] {
        for (start, run) in runs(bytes, class) {
            if run.len() < MIN_TEXT_RUN || (what != "hex" && run.iter().all(u8::is_ascii_hexdigit)) {
                continue;
            }
            if what == "hex" {
                if let Ok(decoded) = data_encoding::HEXLOWER_PERMISSIVE.decode(&run[..run.len() & !1]) {
                    found.push((what, start, truncate(decoded, limit)));
                }
                continue;
            }
            let encoding =
                if what == "base64" { &data_encoding::BASE64_NOPAD } else { &data_encoding::BASE64URL_NOPAD };
            for skip in 0..4 {
                let body = &run[skip..];
                // With its last 2 or 3 characters when they decode (an image's last bytes are its end
                // marker, without which a decoder refuses it); else whole groups of 4.
                let tail = body.len() - usize::from(body.len() % 4 == 1);
                let decoded = encoding.decode(&body[..tail]).or_else(|_| encoding.decode(&body[..body.len() / 4 * 4]));
                if let Ok(decoded) = decoded {
                    found.push(("base64", start + skip, truncate(decoded, limit)));
                }
            }
        }
    }
    found
}

/// Maximal runs of characters of `class` (their start and text), joining wrapped lines: a line of 60 or more
/// characters, a multiple of 4, then a line break, then more of the class.
fn runs(bytes: &[u8], class: &dyn Fn(u8) -> bool) -> Vec<(usize, Vec<u8>)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if !class(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        let mut text = Vec::new();
        let mut before_last;
        loop {
            let line = i;
            before_last = text.len();
            while i < bytes.len() && class(bytes[i]) {
                i += 1;
            }
            text.extend_from_slice(&bytes[line..i]);
            let length = i - line;
            let newline = match bytes.get(i..) {
                Some([b'\r', b'\n', next, ..]) if class(*next) => 2,
                Some([b'\n', next, ..]) if class(*next) => 1,
                _ => 0,
            };
            if newline == 0 || length < 60 || length % 4 != 0 {
                break;
            }
            i += newline;
        }
        // Padding ends a base64 run.
        while i < bytes.len() && bytes[i] == b'=' {
            i += 1;
        }
        // A short last line may be the wrapped value's end, or the next line of a log that happens to start
        // with such characters: both are tried.
        if before_last > 0 && text.len() - before_last < 60 {
            out.push((start, text[..before_last].to_vec()));
        }
        out.push((start, text));
    }
    out
}

fn truncate(mut bytes: Vec<u8>, limit: usize) -> Vec<u8> {
    bytes.truncate(limit);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    fn zip_of(name: &str, bytes: &[u8]) -> Vec<u8> {
        let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        writer.start_file(name, zip::write::SimpleFileOptions::default()).unwrap();
        writer.write_all(bytes).unwrap();
        writer.finish().unwrap().into_inner()
    }

    #[test]
    fn nested_streams_are_decoded_with_their_path() {
        let secret: Vec<u8> = (0..5_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let b64 = data_encoding::BASE64.encode(&gzip(&secret));
        let mut file = b"log line before\n".to_vec();
        file.extend(zip_of("dump.txt", b64.as_bytes()));
        file.extend(b"\ntrailer");
        let found = layers(&file);
        let inner = found.iter().find(|l| l.bytes == secret).unwrap_or_else(|| panic!("{found:?}"));
        assert_eq!(inner.path, "zip@16 > base64@0 > gzip@0");
        let hex = data_encoding::HEXLOWER.encode(&secret[..200]);
        let found = layers(format!("key = {hex}\n").as_bytes());
        assert_eq!(found[0].path, "hex@6");
        assert_eq!(found[0].bytes, secret[..200]);
    }

    #[test]
    fn a_bomb_is_cut_at_the_limits() {
        let zeros = vec![0u8; 80 << 20];
        let bomb = gzip(&gzip(&zeros));
        let found = layers(&bomb);
        let total: usize = found.iter().map(|l| l.bytes.len()).sum();
        assert!(total <= MAX_TOTAL_BYTES, "{total}");
        assert!(found.iter().all(|l| l.bytes.len() <= MAX_LAYER_BYTES));
        // A magic followed by garbage is no layer.
        let mut fake = vec![0x1f, 0x8b, 0x08];
        fake.extend([0xAAu8; 100]);
        assert!(layers(&fake).is_empty());
    }

    /// A wheel or a jar holds hundreds of entries; each entry's header was read as an archive of its own,
    /// reading the rest of the file again (the full scan spent minutes on pip's wheel). Found on the old code.
    #[test]
    fn an_archive_of_many_entries_is_one_layer() {
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for k in 0..300 {
            zip.start_file(format!("pkg/module_{k}.py"), zip::write::SimpleFileOptions::default()).unwrap();
            std::io::Write::write_all(&mut zip, format!("def f{k}():\n    return {k}\n").repeat(20).as_bytes())
                .unwrap();
        }
        let bytes = zip.finish().unwrap().into_inner();
        let found = layers(&bytes);
        let archives = found.iter().filter(|l| l.path.starts_with("zip@")).count();
        assert_eq!(archives, 1, "{:?}", found.iter().map(|l| &l.path).collect::<Vec<_>>());
    }

    /// Base64 without padding ends in 2 or 3 characters that carry the last bytes: an image's end marker is
    /// there (Chromium's data URIs of PNGs were "not decodable whole" without it). Found on the old code.
    #[test]
    fn a_base64_run_is_decoded_to_its_last_byte() {
        let bytes: Vec<u8> = (0..100u8).map(|b| b.wrapping_mul(37)).collect();
        let text = format!("url(data:image/png;base64,{})", data_encoding::BASE64_NOPAD.encode(&bytes));
        let found = layers(text.as_bytes());
        assert!(
            found.iter().any(|l| l.bytes == bytes),
            "{:?}",
            found.iter().map(|l| l.bytes.len()).collect::<Vec<_>>()
        );
    }
}
