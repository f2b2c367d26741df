//! The live status block of `facegate run` on a terminal: door, frames per second, camera and models, the
//! intent window, the broker link and the last passages by method and outcome with their time.
//!
//! Owns the drawing ([`render`], pure: a [`Snapshot`] in, lines out) and the indicatif bar that keeps the
//! block in place while log lines scroll above it ([`LogWriter`]). It must never show who passed: the gate's
//! status holds no identity to show. Off a terminal nothing is drawn and the daemon logs as before.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::gate::status::RecentPassage;
use crate::gate::GateStatus;
use crate::policy::decide::FaceIntent;
use crate::policy::passage::PassageOutcome;

/// How the broker link stands, as the block shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkShown {
    /// Not in a compound.
    None,
    /// Connected and caught up: faces may be matched.
    InStep,
    /// Connected, still applying what the broker held.
    CatchingUp,
    /// Not connected; the broker last answered this long ago (`None`: never).
    Down(Option<Duration>),
}

/// What the block shows, read from the gate's status at one moment.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    /// The relay holds the lock released.
    pub unlocked: bool,
    /// The door contact reads open.
    pub door_open: bool,
    /// Frames per second over the last refresh.
    pub fps: f64,
    /// The camera gives frames.
    pub camera_up: bool,
    /// The face models loaded.
    pub models_up: bool,
    /// How intent is shown at this gate.
    pub intent: FaceIntent,
    /// The intent window is open (faces are matched now).
    pub window_open: bool,
    /// The broker link.
    pub link: LinkShown,
    /// Admissions and refusals since start.
    pub admissions: u64,
    /// See `admissions`.
    pub refusals: u64,
    /// Door and keypad alarms since start.
    pub alarms: u64,
    /// The last passages, newest first: method, outcome and how long ago.
    pub recent: Vec<(RecentPassage, Duration)>,
}

impl Snapshot {
    /// Reads `status` now; `fps` is the caller's (frames over its own interval).
    pub fn read(status: &GateStatus, intent: FaceIntent, fps: f64) -> Self {
        let link = match status.link() {
            None => LinkShown::None,
            Some(link) if link.connected() && link.caught_up() => LinkShown::InStep,
            Some(link) if link.connected() => LinkShown::CatchingUp,
            Some(link) => LinkShown::Down(link.silent_for()),
        };
        let now = SystemTime::now();
        Self {
            unlocked: status.door().is_unlocked(),
            door_open: status.door().is_open(),
            fps,
            camera_up: status.camera_up(),
            models_up: status.models_up(),
            intent,
            window_open: status.intent_open(),
            link,
            admissions: status.admissions(),
            refusals: status.refusals(),
            alarms: status.door_alarms() + status.keypad_alarms(),
            recent: status.recent().into_iter().map(|p| (p, now.duration_since(p.at).unwrap_or_default())).collect(),
        }
    }
}

fn up(ok: bool) -> &'static str {
    if ok {
        "up"
    } else {
        "DOWN"
    }
}

fn ago(d: Duration) -> String {
    match d.as_secs() {
        s @ 0..=119 => format!("{s} s ago"),
        s @ 120..=7_199 => format!("{} min ago", s / 60),
        s => format!("{} h ago", s / 3_600),
    }
}

/// The block's lines.
pub fn render(s: &Snapshot, hint: Option<&str>) -> String {
    let door = match (s.unlocked, s.door_open) {
        (true, true) => "UNLOCKED, open",
        (true, false) => "UNLOCKED",
        (false, true) => "locked, door OPEN",
        (false, false) => "locked",
    };
    let intent = match (s.intent, s.window_open) {
        (FaceIntent::Always, _) => "always matching",
        (FaceIntent::Button, true) => "button window OPEN: matching faces",
        (FaceIntent::Button, false) => "button window closed",
        (FaceIntent::Presence, true) => "presence window OPEN: matching faces",
        (FaceIntent::Presence, false) => "presence window closed",
    };
    let link = match s.link {
        LinkShown::None => "no compound".to_owned(),
        LinkShown::InStep => "connected, in step".to_owned(),
        LinkShown::CatchingUp => "connected, catching up (faces wait)".to_owned(),
        LinkShown::Down(None) => "DOWN, never reached (faces off)".to_owned(),
        LinkShown::Down(Some(d)) => format!("DOWN, last heard {} (faces off past the limit)", ago(d)),
    };
    let mut lines = vec![
        format!("── facegate ─ door: {door}"),
        format!("   camera {} {:.1} frames/s · models {} · intent: {intent}", up(s.camera_up), s.fps, up(s.models_up)),
        format!("   broker: {link}"),
        format!("   admitted {} · refused {} · alarms {}", s.admissions, s.refusals, s.alarms),
    ];
    if s.recent.is_empty() {
        lines.push("   last: none yet".to_owned());
    }
    for (i, (p, age)) in s.recent.iter().enumerate() {
        let outcome = match p.outcome {
            PassageOutcome::Opened => "opened ",
            PassageOutcome::Refused => "REFUSED",
        };
        let label = if i == 0 { "last:" } else { "     " };
        lines.push(format!("   {label} {outcome} {:<12} {}", p.method.as_str(), ago(*age)));
    }
    if let Some(hint) = hint {
        lines.push(format!("   {hint}"));
    }
    lines.join("\n")
}

/// The bar while a block is drawn: log lines go above it.
static LIVE: OnceLock<ProgressBar> = OnceLock::new();

/// A log writer that prints above the live block when one is drawn (plain standard error otherwise).
#[derive(Clone, Copy, Debug, Default)]
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match LIVE.get() {
            Some(bar) if !bar.is_finished() => bar.suspend(|| std::io::stderr().write_all(buf)).map(|()| buf.len()),
            _ => std::io::stderr().write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = Self;

    fn make_writer(&'a self) -> Self::Writer {
        *self
    }
}

/// The block, redrawn twice a second from the gate's status until [`LiveStatus::finish`].
pub struct LiveStatus {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// The terminal's input settings before echo was turned off (restored at the end).
    echo: Option<nix::sys::termios::Termios>,
}

/// Turns off the echo of what is typed on a terminal's standard input (a bench's keypad and scanner): a PIN
/// typed there is not shown, as on a keypad, and the echoed line cannot break the block. Lines are still
/// read whole (canonical mode stays). Returns the settings to restore.
fn echo_off() -> Option<nix::sys::termios::Termios> {
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
    let stdin = std::io::stdin();
    if !std::io::IsTerminal::is_terminal(&stdin) {
        return None;
    }
    let saved = tcgetattr(&stdin).ok()?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO | LocalFlags::ECHONL);
    tcsetattr(&stdin, SetArg::TCSANOW, &quiet).ok()?;
    Some(saved)
}

impl LiveStatus {
    /// Starts drawing on standard error if it is a terminal (`None` otherwise: the daemon just logs).
    pub fn start(status: Arc<GateStatus>, intent: FaceIntent, hint: Option<String>) -> Option<Self> {
        if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            return None;
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(4));
        bar.set_style(ProgressStyle::with_template("{msg}").ok()?);
        let bar = LIVE.get_or_init(|| bar).clone();
        let quiet_input = hint.is_some();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name("live-status".into())
            .spawn(move || {
                let (mut frames, mut since) = (status.frames(), Instant::now());
                while !stopping.load(Ordering::Relaxed) {
                    let (now_frames, elapsed) = (status.frames(), since.elapsed().as_secs_f64().max(1e-3));
                    #[allow(clippy::cast_precision_loss)]
                    let fps = now_frames.saturating_sub(frames) as f64 / elapsed;
                    (frames, since) = (now_frames, Instant::now());
                    bar.set_message(render(&Snapshot::read(&status, intent, fps), hint.as_deref()));
                    std::thread::sleep(Duration::from_millis(500));
                }
                bar.finish_and_clear();
            })
            .ok()?;
        let echo = if quiet_input { echo_off() } else { None };
        Some(Self { stop, thread: Some(thread), echo })
    }

    /// Clears the block (the run report follows).
    pub fn finish(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for LiveStatus {
    fn drop(&mut self) {
        // The terminal gets its echo back however the run ended.
        if let Some(saved) = self.echo.take() {
            let _ = nix::sys::termios::tcsetattr(std::io::stdin(), nix::sys::termios::SetArg::TCSANOW, &saved);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::passage::EntryMethod;

    fn snapshot() -> Snapshot {
        Snapshot {
            unlocked: false,
            door_open: false,
            fps: 14.96,
            camera_up: true,
            models_up: true,
            intent: FaceIntent::Presence,
            window_open: false,
            link: LinkShown::None,
            admissions: 3,
            refusals: 1,
            alarms: 0,
            recent: Vec::new(),
        }
    }

    #[test]
    fn the_block_names_each_state_and_never_anyone() {
        let mut s = snapshot();
        let text = render(&s, Some("type 340112#4071# then Enter"));
        assert!(text.contains("door: locked\n"), "{text}");
        assert!(text.contains("camera up 15.0 frames/s · models up · intent: presence window closed"), "{text}");
        assert!(text.contains("broker: no compound") && text.contains("last: none yet"), "{text}");
        assert!(text.ends_with("type 340112#4071# then Enter"), "{text}");

        s.unlocked = true;
        s.camera_up = false;
        s.window_open = true;
        s.link = LinkShown::Down(Some(Duration::from_secs(190)));
        let at = SystemTime::UNIX_EPOCH;
        s.recent = vec![
            (RecentPassage { method: EntryMethod::Pin, outcome: PassageOutcome::Refused, at }, Duration::from_secs(4)),
            (
                RecentPassage { method: EntryMethod::Face, outcome: PassageOutcome::Opened, at },
                Duration::from_secs(7_300),
            ),
        ];
        let text = render(&s, None);
        assert!(text.contains("door: UNLOCKED\n") && text.contains("camera DOWN"), "{text}");
        assert!(text.contains("presence window OPEN"), "{text}");
        assert!(text.contains("broker: DOWN, last heard 3 min ago"), "{text}");
        assert!(text.contains("last: REFUSED pin          4 s ago"), "{text}");
        assert!(text.contains("opened  face         2 h ago"), "{text}");
        assert_eq!(text.lines().count(), 6);
    }

    #[test]
    fn the_snapshot_reads_the_gate_status() {
        let status = GateStatus::default();
        let s = Snapshot::read(&status, FaceIntent::Always, 0.0);
        assert!(!s.camera_up && !s.models_up && !s.unlocked && s.recent.is_empty());
        assert_eq!(s.link, LinkShown::None);
        assert!(render(&s, None).contains("intent: always matching"));
    }
}
