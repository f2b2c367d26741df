//! The replay source: a folder of photos played in a loop as if a camera saw them.
//!
//! Used off the Pi and in tests, and the default when no camera is configured. It reads image files and never
//! writes one. A file that does not decode is skipped with a warning (its name only), never a crash. A folder
//! is listed again at the end of every loop, so its photos can be swapped while the gate runs (as a person
//! steps in front of a camera).

use std::path::{Path, PathBuf};

use super::{decode_file, CaptureError, DecodeLimits, Frame, FrameSource};

const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "pgm", "ppm", "pnm", "bmp", "tif", "tiff", "webp", "gif"];

/// Loops over the image files under a folder (recursively, in path order).
#[derive(Debug)]
pub struct ReplaySource {
    root: PathBuf,
    /// Whether `root` is listed again at each loop (a folder, not an explicit list).
    follow: bool,
    files: Vec<PathBuf>,
    next_idx: usize,
    last_idx: Option<usize>,
    limits: DecodeLimits,
}

impl ReplaySource {
    /// Lists the images under `root`. Fails if there are none.
    pub fn open(root: &Path, limits: DecodeLimits) -> Result<Self, CaptureError> {
        let files = list_images(root);
        if files.is_empty() {
            return Err(CaptureError::NoImages(root.to_path_buf()));
        }
        Ok(Self { root: root.to_path_buf(), follow: true, files, next_idx: 0, last_idx: None, limits })
    }

    /// Plays an explicit list of files in order, in a loop.
    pub fn from_files(files: Vec<PathBuf>, limits: DecodeLimits) -> Result<Self, CaptureError> {
        let root = files.first().and_then(|f| f.parent()).map(Path::to_path_buf).unwrap_or_default();
        if files.is_empty() {
            return Err(CaptureError::NoImages(root));
        }
        Ok(Self { root, follow: false, files, next_idx: 0, last_idx: None, limits })
    }

    /// How many files one loop plays.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Always false: an empty folder is refused by `open`.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

impl FrameSource for ReplaySource {
    fn next_frame(&mut self) -> Result<Frame, CaptureError> {
        if self.follow && self.next_idx == 0 {
            self.files = list_images(&self.root);
            self.last_idx = None;
        }
        // One full loop without a decodable file means the folder is useless: say so instead of spinning.
        for _ in 0..self.files.len() {
            let idx = self.next_idx;
            let path = &self.files[idx];
            self.next_idx = (idx + 1) % self.files.len();
            match decode_file(path, self.limits) {
                Ok(frame) => {
                    self.last_idx = Some(idx);
                    return Ok(frame);
                }
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "replay: skipping a file that does not decode")
                }
            }
        }
        // Start the next call with a fresh listing: the folder may have been refilled.
        self.next_idx = 0;
        Err(CaptureError::NoImages(self.root.clone()))
    }

    fn describe(&self) -> String {
        format!("replay of {} images under {}", self.files.len(), self.root.display())
    }

    fn last_file(&self) -> Option<&Path> {
        self.last_idx.and_then(|i| self.files.get(i)).map(PathBuf::as_path)
    }
}

/// Image files under `root`, sorted by path; unreadable entries are skipped.
pub fn list_images(root: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = walkdir::WalkDir::new(root)
        .follow_links(true)
        .sort_by_file_name()
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(walkdir::DirEntry::into_path)
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
        })
        .collect();
    files.sort();
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loops_skips_bad_files_and_refuses_an_empty_folder() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(ReplaySource::open(dir.path(), DecodeLimits::default()), Err(CaptureError::NoImages(_))));
        image::RgbImage::from_pixel(4, 3, image::Rgb([1, 2, 3])).save(dir.path().join("a.png")).unwrap();
        std::fs::write(dir.path().join("b.jpg"), b"not a jpeg").unwrap();
        let mut source = ReplaySource::open(dir.path(), DecodeLimits::default()).unwrap();
        assert_eq!(source.len(), 2);
        for _ in 0..3 {
            let frame = source.next_frame().unwrap();
            assert_eq!((frame.width(), frame.height()), (4, 3));
        }
        std::fs::remove_file(dir.path().join("a.png")).unwrap();
        assert!(matches!(source.next_frame(), Err(CaptureError::NoImages(_))));
        // The folder is listed again at the next loop: a photo dropped in is played.
        image::RgbImage::from_pixel(6, 5, image::Rgb([1, 2, 3])).save(dir.path().join("c.png")).unwrap();
        let frame = source.next_frame().unwrap();
        assert_eq!((frame.width(), frame.height()), (6, 5));
    }
}
