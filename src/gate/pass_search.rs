//! The camera's search for visitor passes, off the frames' path: one thread searches the newest frame the
//! camera hands it while the frame workers detect and match faces. A search that takes long (a damaged or
//! hostile code can cost rqrr's search many times a frame's usual work, up to [`crate::vision::qr`]'s budget)
//! costs the pass reads of the frames it skipped, never a face decision, and a visitor's pass is read from the
//! next frame searched.
//!
//! Owns the one-frame mailbox and the camera's repeat filter of codes. It must never queue frames (a slow
//! search would hold a growing backlog of frames in memory, each a person's picture), never keep a frame past
//! its search, and never log what a code says.

use std::sync::{Arc, Condvar, Mutex, PoisonError};

use tokio::sync::mpsc;

use super::readers::{check_pass, RecentCodes};
use super::{Input, Shared};
use crate::capture::Frame;
use crate::vision::qr::CodeReader;

/// The frame waiting for the search: at most one, the newest; a frame it replaces unread is dropped (and wiped
/// once no worker holds it).
#[derive(Default)]
pub(super) struct PassSearch {
    slot: Mutex<Slot>,
    ready: Condvar,
}

#[derive(Default)]
struct Slot {
    frame: Option<Arc<Frame>>,
    closed: bool,
}

impl PassSearch {
    /// Hands the search a frame; never waits for the search.
    pub(super) fn offer(&self, frame: &Arc<Frame>) {
        let replaced = {
            let mut slot = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
            if slot.closed {
                return;
            }
            slot.frame.replace(Arc::clone(frame))
        };
        self.ready.notify_one();
        // Outside the lock: the last holder of a frame wipes it.
        drop(replaced);
    }

    /// Ends the search once its current frame is searched; a frame still waiting is dropped unread.
    pub(super) fn close(&self) {
        let waiting = {
            let mut slot = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
            slot.closed = true;
            slot.frame.take()
        };
        self.ready.notify_all();
        drop(waiting);
    }

    /// The next frame to search; `None` once closed.
    fn next(&self) -> Option<Arc<Frame>> {
        let mut slot = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if slot.closed {
                return None;
            }
            if let Some(frame) = slot.frame.take() {
                return Some(frame);
            }
            slot = self.ready.wait(slot).unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Searches frames until [`Self::close`]: each pass seen for the first time in a while goes to the
    /// registry's owner to be checked, and its result to the event loop. A panic in a search costs that
    /// frame's read.
    pub(super) fn run(&self, qr: &dyn CodeReader, shared: &Shared, tx: &mpsc::Sender<Input>) {
        let mut recent = RecentCodes::default();
        while let Some(frame) = self.next() {
            let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| qr.read_codes(&frame, 1)));
            drop(frame);
            let Ok(codes) = read else {
                let _ =
                    tx.blocking_send(Input::Fault("the QR search failed on a frame: its passes were not read".into()));
                continue;
            };
            for text in codes {
                // Any other code in view (a poster, a T-shirt) is none of the gate's business.
                if crate::protect::pass::looks_like_pass(&text) && recent.first_sighting(&text) {
                    check_pass(shared, text, "camera", tx);
                }
            }
        }
    }
}

/// Closes the search when the camera's loop ends, however it ends, so that its thread ends too.
pub(super) struct CloseOnDrop<'a>(pub(super) &'a PassSearch);

impl Drop for CloseOnDrop<'_> {
    fn drop(&mut self) {
        self.0.close();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn frame(shade: u8) -> Arc<Frame> {
        Arc::new(Frame::from_rgb(2, 2, vec![shade; 12]).unwrap())
    }

    #[test]
    fn the_search_gets_the_newest_frame_and_frames_it_skipped_are_released() {
        let search = PassSearch::default();
        let (first, second) = (frame(1), frame(2));
        search.offer(&first);
        search.offer(&second);
        assert_eq!(Arc::strong_count(&first), 1, "a replaced frame is still held");
        let next = search.next().unwrap();
        assert!(Arc::ptr_eq(&next, &second));
        drop(next);
        assert_eq!(Arc::strong_count(&second), 1, "a searched frame is still held");
    }

    #[test]
    fn closing_drops_the_waiting_frame_wakes_the_search_and_refuses_later_frames() {
        let search = PassSearch::default();
        let waiting = frame(3);
        search.offer(&waiting);
        std::thread::scope(|scope| {
            let searched = scope.spawn(|| {
                let mut n = 0;
                while search.next().is_some() {
                    n += 1;
                }
                n
            });
            // Either the thread took the frame before the close, or the close dropped it: never both, never
            // a wait past the close.
            search.close();
            assert!(searched.join().unwrap() <= 1);
        });
        assert_eq!(Arc::strong_count(&waiting), 1);
        search.offer(&waiting);
        assert_eq!(Arc::strong_count(&waiting), 1, "a closed search took a frame");
    }
}
