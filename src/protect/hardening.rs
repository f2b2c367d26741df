//! Hardening: what the daemon does to its own process before it reads a frame or a key.
//!
//! Core dumps off (RLIMIT_CORE = 0 and not dumpable, which also bars ptrace by other users), and every page
//! locked in RAM (mlockall) when the memory-lock limit allows it, so frames, embeddings and keys never reach a
//! core file or swap. The systemd unit adds `LimitCORE=0`, `LimitMEMLOCK=infinity` and `MemorySwapMax=0`.

use nix::sys::mman::{mlockall, MlockAllFlags};
use nix::sys::prctl;
use nix::sys::resource::{getrlimit, setrlimit, Resource, RLIM_INFINITY};

/// Fixes glibc's allocator for a process that runs the same models frame after frame: the mmap threshold at
/// 8 MiB, the trim threshold at 32 MiB and one arena per core. Called first thing in `main`, before any large
/// allocation or other thread. Returns whether glibc accepted all three. Each was measured on this project's
/// benches (`cargo bench --bench memory` for the daemon's RSS with 10,000 residents, `--bench frame_path` for
/// page faults):
/// - mmap threshold: left dynamic, glibc raises it after each large free and keeps ever larger buffers in its
///   arenas (193 MiB resident instead of 100 MiB; under `mlockall` that memory is also locked). Fixed at 1 MiB
///   (until issue 21), every activation over 1 MiB was mapped and unmapped each frame: 7,000 page faults and
///   15 % of the frame in the kernel. At 8 MiB tract's activations come from the arena; only buffers larger than
///   any activation (model loading) go back to the kernel when freed.
/// - trim threshold: fixing the mmap threshold also pins it at 128 KiB, so an arena whose free top grew past
///   that was handed back after a frame and faulted in again by the next (about 700 page faults a frame in one
///   run in two). At 32 MiB an arena keeps what a frame's activations take (0-1 fault a frame; about 11 MiB more
///   resident).
/// - arenas: glibc's default is 8 a core. A face frame's QR search and liveness run on helper threads beside
///   its models, and each new thread's arena kept its own copy of the activations: 173 MiB resident, against
///   138-140 MiB with one arena a core (no more threads allocate at once than there are cores to run them).
#[allow(unsafe_code)]
pub fn return_large_buffers_at_once() -> bool {
    const EIGHT_MIB: libc::c_int = 8 << 20;
    const THIRTY_TWO_MIB: libc::c_int = 32 << 20;
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let arenas = libc::c_int::try_from(cores).unwrap_or(libc::c_int::MAX);
    // SAFETY: mallopt only sets an allocator parameter; it reads no pointer and is called before other threads
    // exist. It returns 1 on success, 0 for a parameter glibc does not accept.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, EIGHT_MIB) == 1
            && libc::mallopt(libc::M_TRIM_THRESHOLD, THIRTY_TWO_MIB) == 1
            && libc::mallopt(libc::M_ARENA_MAX, arenas) == 1
    }
}

/// What hardening achieved (logged at start; the daemon runs either way).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hardening {
    /// No core file can be written and the process is not dumpable.
    pub core_dumps_off: bool,
    /// All current and future pages are locked in RAM.
    pub memory_locked: bool,
}

/// Applies the hardening this process is allowed.
pub fn harden_process() -> Hardening {
    let core_dumps_off = setrlimit(Resource::RLIMIT_CORE, 0, 0).is_ok() && prctl::set_dumpable(false).is_ok();
    // mlockall(MCL_FUTURE) under a finite limit would make later allocations fail; only lock when unlimited.
    let memory_locked = matches!(getrlimit(Resource::RLIMIT_MEMLOCK), Ok((soft, _)) if soft == RLIM_INFINITY)
        && mlockall(MlockAllFlags::MCL_CURRENT | MlockAllFlags::MCL_FUTURE).is_ok();
    Hardening { core_dumps_off, memory_locked }
}

/// Whether the kernel says the system clock is synchronised (NTP, chrony or systemd-timesyncd all tell it);
/// `None` if it cannot be asked. A gate has no battery-backed clock: until this is true, pass windows and the
/// audit log's times may be wrong.
#[allow(unsafe_code)]
pub fn clock_synchronised() -> Option<bool> {
    // SAFETY: `timex` is plain integers, for which all-zero is valid; adjtimex with `modes == 0` only reads
    // the kernel's clock state into that struct, which we own for the call.
    let mut state: libc::timex = unsafe { std::mem::zeroed() };
    let result = unsafe { libc::adjtimex(&mut state) };
    match result {
        -1 => None,
        libc::TIME_ERROR => Some(false),
        _ => Some(state.status & libc::STA_UNSYNC == 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glibc_accepts_the_fixed_mmap_threshold() {
        assert!(return_large_buffers_at_once());
    }

    #[test]
    fn core_dumps_are_off_after_hardening() {
        let hardening = harden_process();
        assert!(hardening.core_dumps_off);
        assert_eq!(getrlimit(Resource::RLIMIT_CORE).unwrap(), (0, 0));
        assert!(!prctl::get_dumpable().unwrap());
    }
}
