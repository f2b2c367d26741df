//! Decoding before looking: the byte streams hidden inside a file (gzip, zstd and xz streams, zip entries,
//! base64 and hex runs), each decoded and searched again, up to [`MAX_DEPTH`] layers deep.
//!
//! Pure but for the decompressors it calls. Bounded so that a bomb cannot stall or exhaust the auditor: each
//! decoded layer is cut at [`MAX_LAYER_BYTES`], a file yields at most [`MAX_TOTAL_BYTES`] of decoded bytes,
//! and a decoder that fails (random bytes that happen to start with a magic) is simply not a layer. A stream
//! cut or left out at those limits is counted ([`Layers::cut`]), so the report can say what was not looked
//! at; a base64 or hex run is decoded whole or not at all (a picture cut by the auditor's own limit would
//! read as a retained picture cut short).

use std::io::Read;

/// Layers below the file itself (a zip of a gzip of base64 is three).
pub const MAX_DEPTH: usize = 3;
/// The most bytes one decoded layer may have (the rest is not looked at, and the finding says so).
pub const MAX_LAYER_BYTES: usize = 64 << 20;
/// The most decoded bytes one file may yield, all layers together.
pub const MAX_TOTAL_BYTES: usize = 256 << 20;
/// The shortest base64 or hex run decoded (a 64-value int8 vector in base64 is 88 characters).
pub const MIN_TEXT_RUN: usize = 88;
/// The longest base64 run also tried from its 2nd, 3rd and 4th character when it decodes from its first.
const MAX_SHIFTED_RUN: usize = 16 << 10;

/// One decoded stream: how it was reached from the file, and its bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layer {
    /// From the outside in, e.g. `gzip@120 > base64@4`.
    pub path: String,
    /// The decoded bytes.
    pub bytes: Vec<u8>,
}

/// The layers of one value, and how many streams the limits cut short or left out.
#[derive(Debug, Default)]
pub struct Layers {
    /// Outermost first.
    pub layers: Vec<Layer>,
    /// Streams cut at [`MAX_LAYER_BYTES`] or at the file's [`MAX_TOTAL_BYTES`], or not decoded for it.
    pub cut: usize,
}

/// Every layer inside `bytes` (not `bytes` itself), outermost first.
pub fn layers(bytes: &[u8]) -> Layers {
    let mut out = Layers::default();
    let mut budget = MAX_TOTAL_BYTES;
    descend(bytes, "", 1, &mut budget, &mut out);
    out
}

fn descend(bytes: &[u8], path: &str, depth: usize, budget: &mut usize, out: &mut Layers) {
    if depth > MAX_DEPTH {
        return;
    }
    for stream in decode_all(bytes, *budget) {
        let Stream { label, bytes: decoded, cut, text } = stream;
        let fits = decoded.len() <= *budget;
        if (!fits && text) || *budget == 0 {
            out.cut += 1;
            continue;
        }
        let decoded = &decoded[..decoded.len().min(*budget)];
        out.cut += usize::from(cut || !fits);
        *budget -= decoded.len();
        let here = if path.is_empty() { label } else { format!("{path} > {label}") };
        out.layers.push(Layer { path: here.clone(), bytes: decoded.to_vec() });
        descend(decoded, &here, depth + 1, budget, out);
    }
}

/// A stream decoded at some offset.
struct Stream {
    /// What and where: `gzip@120`, `zip@0:name/of/entry`, `base64@4`.
    label: String,
    bytes: Vec<u8>,
    /// Cut at the limit given to its decoder.
    cut: bool,
    /// A base64 or hex run: used whole or not at all.
    text: bool,
}

/// Every stream that decodes at some offset of `bytes`.
fn decode_all(bytes: &[u8], budget: usize) -> Vec<Stream> {
    let limit = budget.min(MAX_LAYER_BYTES);
    let mut found = Vec::new();
    let mut i = 0;
    while i + 4 <= bytes.len() && found.len() < 4_096 {
        let rest = &bytes[i..];
        let mut skip = 0;
        let mut stream = |what: &str, (bytes, read): (Vec<u8>, usize)| {
            skip = read;
            let cut = bytes.len() >= limit;
            Stream { label: format!("{what}@{i}"), bytes, cut, text: false }
        };
        let decoded = if rest.starts_with(&[0x1f, 0x8b, 0x08]) {
            // One member per layer, and the next is found at its own offset: decoded as one stream from
            // every member's start, a file of many members (Chromium's .pak) decoded quadratically, ran out
            // of budget and cut the pictures of its later members.
            gzip_member(rest, limit).map(|d| vec![stream("gzip", d)])
        } else if rest.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            ruzstd::decoding::StreamingDecoder::new(rest)
                .ok()
                .and_then(|d| read_limited(d, limit))
                .map(|d| vec![stream("zstd", (d, 0))])
        } else if rest.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
            xz(rest, limit).map(|d| vec![stream("xz", (d, 0))])
        } else if rest.starts_with(b"PK\x03\x04") {
            // The archive's entries are read to its end: their own headers, further on, are not archives
            // of their own (each would read the rest again, quadratic in the entries of a wheel or jar).
            // Each entry is a layer: a picture in one is not cut where the limit falls in another.
            zip_entries(rest, limit).map(|(entries, read)| {
                skip = read;
                let mut left = limit;
                entries
                    .into_iter()
                    .map(|(name, bytes)| {
                        let cut = bytes.len() >= left;
                        left = left.saturating_sub(bytes.len());
                        Stream { label: format!("zip@{i}:{name}"), bytes, cut, text: false }
                    })
                    .collect()
            })
        } else {
            None
        };
        match decoded {
            Some(streams) if !streams.is_empty() => {
                found.extend(streams.into_iter().filter(|s| !s.bytes.is_empty()));
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

/// One gzip member from the start of `bytes`: what it decodes to (up to `limit`) and how many bytes it took.
fn gzip_member(bytes: &[u8], limit: usize) -> Option<(Vec<u8>, usize)> {
    let mut decoder = flate2::bufread::GzDecoder::new(bytes);
    let decoded = read_limited(&mut decoder, limit)?;
    // The reader over a slice is left just past what the decoder consumed.
    let read = bytes.len() - decoder.into_inner().len();
    Some((decoded, read))
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

/// A zip entry's name and bytes.
type Entry = (String, Vec<u8>);

/// The entries of a zip archive from its first local header on (a zip embedded in another file has no
/// central directory where a reader would look): each entry's name and bytes, the whole cut at `limit`, and
/// how many bytes of the archive they took.
fn zip_entries(bytes: &[u8], limit: usize) -> Option<(Vec<Entry>, usize)> {
    let mut cursor = std::io::Cursor::new(bytes);
    let mut out = Vec::new();
    let mut read = 0;
    let mut left = limit;
    while left > 0 {
        match zip::read::read_zipfile_from_stream(&mut cursor) {
            Ok(Some(entry)) => {
                // A name that is not text still names the entry (its bytes, lossily).
                let name =
                    entry.name().map_or_else(|_| String::from_utf8_lossy(entry.name_raw()).into_owned(), Into::into);
                let mut data = Vec::new();
                let _ = entry.take(u64::try_from(left).unwrap_or(u64::MAX)).read_to_end(&mut data);
                left -= data.len();
                out.push((name, data));
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
fn text_runs(bytes: &[u8], limit: usize) -> Vec<Stream> {
    // Decoded whole, never cut: the text is in memory already and decodes to less than itself.
    let whole = |what: &str, at: usize, bytes: Vec<u8>| Stream {
        label: format!("{what}@{at}"),
        cut: bytes.len() > limit,
        bytes,
        text: true,
    };
    let hex = |b: u8| b.is_ascii_hexdigit();
    let standard = |b: u8| b.is_ascii_alphanumeric() || b == b'+' || b == b'/';
    let url = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
    let mut found = Vec::new();
    for (what, class) in [("hex", &hex as &dyn Fn(u8) -> bool), ("base64", &standard), ("base64url", &url)] {
        for (start, end, run) in runs(bytes, class) {
            if run.len() < MIN_TEXT_RUN || (what != "hex" && run.iter().all(u8::is_ascii_hexdigit)) {
                continue;
            }
            if what != "hex" && !of_its_own_alphabet(what, bytes, start, end, &run) {
                continue;
            }
            if what == "hex" {
                if let Ok(decoded) = data_encoding::HEXLOWER_PERMISSIVE.decode(&run[..run.len() & !1]) {
                    found.push(whole(what, start, decoded));
                }
                continue;
            }
            let encoding =
                if what == "base64" { &data_encoding::BASE64_NOPAD } else { &data_encoding::BASE64URL_NOPAD };
            let mut decoded_one = false;
            for skip in 0..4 {
                // The other starts only for short runs (a vector's) or when the first does not decode: a
                // picture's run is long and starts where its token does.
                if skip > 0 && run.len() > MAX_SHIFTED_RUN && decoded_one {
                    break;
                }
                let body = &run[skip..];
                // With its last 2 or 3 characters when they decode (an image's last bytes are its end
                // marker, without which a decoder refuses it); else whole groups of 4.
                let tail = body.len() - usize::from(body.len() % 4 == 1);
                let decoded = encoding.decode(&body[..tail]).or_else(|_| encoding.decode(&body[..body.len() / 4 * 4]));
                if let Ok(decoded) = decoded {
                    decoded_one = true;
                    found.push(whole("base64", start + skip, decoded));
                }
            }
        }
    }
    found
}

/// Whether a base64 run (`what`: `base64` or `base64url`, from `start` to `end` of `bytes`) is not a piece of
/// a longer run in the other alphabet. The two share letters and digits: a URL-safe run with no `-` or `_`
/// lies inside a standard run, which decodes it; a standard run with no `+` or `/` that a `-` or `_` borders
/// lies inside a URL-safe run. Decoded alone, such a piece is a cut prefix: the first 146 characters of a
/// PNG data URI, up to its first `+`, read as a picture "cut short" (Chromium's resources).
fn of_its_own_alphabet(what: &str, bytes: &[u8], start: usize, end: usize, run: &[u8]) -> bool {
    let (own, other): (&[u8], &[u8]) = if what == "base64" { (b"+/", b"-_") } else { (b"-_", b"+/") };
    if run.iter().any(|b| own.contains(b)) {
        return true;
    }
    if what == "base64url" {
        return false;
    }
    let before = start.checked_sub(1).and_then(|i| bytes.get(i));
    let after = bytes.get(end);
    ![before, after].into_iter().flatten().any(|b| other.contains(b))
}

/// Maximal runs of characters of `class` (their start, end and text), joining wrapped lines: a line of 60 or more
/// characters, a multiple of 4, then a line break, then more of the class.
fn runs(bytes: &[u8], class: &dyn Fn(u8) -> bool) -> Vec<(usize, usize, Vec<u8>)> {
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
            out.push((start, i, text[..before_last].to_vec()));
        }
        out.push((start, i, text));
    }
    out
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
        let found = layers(&file).layers;
        let inner = found.iter().find(|l| l.bytes == secret).unwrap_or_else(|| panic!("{found:?}"));
        assert_eq!(inner.path, "zip@16:dump.txt > base64@0 > gzip@0");
        let hex = data_encoding::HEXLOWER.encode(&secret[..200]);
        let found = layers(format!("key = {hex}\n").as_bytes()).layers;
        assert_eq!(found[0].path, "hex@6");
        assert_eq!(found[0].bytes, secret[..200]);
    }

    #[test]
    fn a_bomb_is_cut_at_the_limits() {
        let zeros = vec![0u8; 80 << 20];
        let bomb = gzip(&gzip(&zeros));
        let found = layers(&bomb);
        assert!(found.cut >= 1, "the cut is counted");
        let found = found.layers;
        let total: usize = found.iter().map(|l| l.bytes.len()).sum();
        assert!(total <= MAX_TOTAL_BYTES, "{total}");
        assert!(found.iter().all(|l| l.bytes.len() <= MAX_LAYER_BYTES));
        // A magic followed by garbage is no layer.
        let mut fake = vec![0x1f, 0x8b, 0x08];
        fake.extend([0xAAu8; 100]);
        assert!(layers(&fake).layers.is_empty());
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
        let found = layers(&bytes).layers;
        let archives = found.iter().filter(|l| l.path.starts_with("zip@") && !l.path.starts_with("zip@0:")).count();
        assert_eq!(archives, 0, "{:?}", found.iter().map(|l| &l.path).collect::<Vec<_>>());
        assert_eq!(found.iter().filter(|l| l.path.starts_with("zip@0:pkg/module_")).count(), 300);
    }

    /// Chromium's resource files hold hundreds of gzip members back to back. Each member was decoded as a
    /// multi-member stream to the file's end, so the layers grew quadratically, the budget ran out and the
    /// later members' base64 pictures were cut ("not decodable whole": 14 false findings in /usr/lib/chromium).
    /// Found on the old code.
    #[test]
    fn each_gzip_member_is_one_layer_and_the_last_is_whole() {
        let mut file = Vec::new();
        let mut rng = 1u32;
        for k in 0..120 {
            // Text that compresses well: 64 KiB per member, 7.5 MiB in all.
            file.extend(gzip(format!("/* resource {k} */ .a {{ color: red; }}\n").repeat(2_000).as_bytes()));
        }
        let picture: Vec<u8> = (0..3_000)
            .map(|_| {
                rng = rng.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                (rng >> 16) as u8
            })
            .collect();
        let css =
            format!(".b {{ background: url(data:image/png;base64,{}); }}", data_encoding::BASE64.encode(&picture));
        file.extend(gzip(css.as_bytes()));
        let found = layers(&file);
        assert_eq!(found.cut, 0);
        let found = found.layers;
        let gzips = found.iter().filter(|l| l.path.starts_with("gzip@") && !l.path.contains(" > ")).count();
        assert_eq!(gzips, 121);
        let total: usize = found.iter().map(|l| l.bytes.len()).sum();
        assert!(total < 16 << 20, "{total} bytes decoded from a 7.5 MiB resource file");
        assert!(found.iter().any(|l| l.bytes == picture), "the last member's picture is not whole");
    }

    /// A base64 run that does not fit in what is left of the file's budget is left out and counted, not cut:
    /// cut, a picture read as one retained cut short. Found on the old code.
    #[test]
    fn a_text_run_is_decoded_whole_or_counted_as_left_out() {
        let mut file = Vec::new();
        for k in 0..4 {
            // 1,000 bytes of the budget left after these (none cut: each is under the layer limit).
            let size = if k < 3 { MAX_LAYER_BYTES - 1 } else { MAX_LAYER_BYTES - 997 };
            file.extend(gzip(&vec![0u8; size]));
        }
        let picture: Vec<u8> = (0..3_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
        file.extend(format!(" {} ", data_encoding::BASE64.encode(&picture)).as_bytes());
        let found = layers(&file);
        assert!(
            !found.layers.iter().any(|l| l.bytes.len() < picture.len() && picture.starts_with(&l.bytes)),
            "a base64 run was cut at the budget"
        );
        // The run, its other starts and whatever else comes after the budget ran out.
        assert!(found.cut >= 4, "the run left out is not counted: {}", found.cut);
        let zip = zip_of("a.bin", &picture);
        let found = layers(&zip).layers;
        assert_eq!(found[0].path, "zip@0:a.bin");
    }

    /// The letters and digits of a base64 run are a run of the other alphabet too, up to its first `+` or `/`
    /// (or `-` or `_`): decoded alone, that piece is the payload cut short, and a PNG's cut there has a whole
    /// header ("not decodable whole": Chromium's data URIs). Found on the old code.
    #[test]
    fn a_piece_of_a_run_in_the_other_alphabet_is_not_decoded_alone() {
        for (encoding, specials) in [(&data_encoding::BASE64, "+/"), (&data_encoding::BASE64URL, "-_")] {
            // A payload whose first special character comes after the shortest run decoded.
            let payload = (0u32..)
                .map(|seed| {
                    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
                    (0..600)
                        .map(|_| {
                            x ^= x << 13;
                            x ^= x >> 17;
                            x ^= x << 5;
                            (x >> 24) as u8
                        })
                        .collect::<Vec<u8>>()
                })
                .find(|p| encoding.encode(p).find(|c| specials.contains(c)).is_some_and(|at| at > MIN_TEXT_RUN + 8))
                .unwrap();
            let text = format!("url(data:image/png;base64,{})", encoding.encode(&payload));
            let found = layers(text.as_bytes()).layers;
            assert!(found.iter().any(|l| l.bytes == payload), "{specials}: the payload is not decoded whole");
            let cut = found.iter().find(|l| l.bytes.len() < payload.len() && payload.starts_with(&l.bytes));
            assert!(cut.is_none(), "{specials}: a cut prefix was decoded as {}", cut.map_or("", |l| &l.path));
        }
    }

    /// Base64 without padding ends in 2 or 3 characters that carry the last bytes: an image's end marker is
    /// there (Chromium's data URIs of PNGs were "not decodable whole" without it). Found on the old code.
    #[test]
    fn a_base64_run_is_decoded_to_its_last_byte() {
        let bytes: Vec<u8> = (0..100u8).map(|b| b.wrapping_mul(37)).collect();
        let text = format!("url(data:image/png;base64,{})", data_encoding::BASE64_NOPAD.encode(&bytes));
        let found = layers(text.as_bytes()).layers;
        assert!(
            found.iter().any(|l| l.bytes == bytes),
            "{:?}",
            found.iter().map(|l| l.bytes.len()).collect::<Vec<_>>()
        );
    }
}
