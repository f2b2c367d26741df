//! The auditor's no-retention verification: one report, signed with the device's ed25519 key, that anyone can
//! verify offline (`facegate audit`, `facegate audit verify`, the auditor's page).
//!
//! Owns the checks: (a) a scan of the data and key folders, configured extra paths and the system's places
//! (journal, coredumps, /tmp, /var/tmp, swap) for images, raw pixels and embeddings in any common encoding,
//! through compression, archives, text encodings and every database cell ([`files`]); (b) the database schema and contents (no image columns, no table the
//! code does not know, every sealed template with a live consent and a wrapped key); (c) the hash-chained audit
//! log end to end; (d) runtime settings (core dumps, swap, the service sandbox); (e) retention (no template
//! past its unused limit). It reads and reports; it never repairs, deletes or prints a secret.

pub mod cells;
pub mod faces;
mod files;
pub mod layers;
pub mod pixels;
pub mod runs;
pub mod scan;
pub mod sign;
pub mod vectors;

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::protect::keys::{self, KeyWrap};
use crate::store::{AuditEvent, Store};

use crate::policy::rfc3339;

/// The report format's name, in every report.
pub const FORMAT: &str = "facegate-audit/1";

/// Audit-log events that destroy a template.
pub const DELETION_EVENTS: [&str; 3] = ["revoke", "expire (unused)", "expire (moved out)"];

/// What to audit.
#[derive(Clone, Debug)]
pub struct AuditScope {
    /// The SQLite database (its folder is scanned whole).
    pub database: PathBuf,
    /// The key folder (scanned too).
    pub key_dir: PathBuf,
    /// How the device's key files are sealed (the report is signed with the key under it; the keys check
    /// names the root).
    pub wrap: KeyWrap,
    /// Other folders or files to scan (`[audit] scan_paths`).
    pub extra_paths: Vec<PathBuf>,
    /// A template unused this long must be gone.
    pub max_unused_secs: i64,
    /// Where the service unit may be installed.
    pub unit_files: Vec<PathBuf>,
    /// `/proc` (a test may point elsewhere).
    pub proc_root: PathBuf,
    /// The models folder: the face detector tells photographs of faces from other pictures (`None`, or a
    /// detector that does not load: every photograph and raster is reported).
    pub models_dir: Option<PathBuf>,
    /// The root under which the system's places are scanned (the journal, the coredump folder, /tmp,
    /// /var/tmp, swap): `/`, or `None` not to scan them (`[audit] system_places = false`).
    pub system_root: Option<PathBuf>,
}

impl AuditScope {
    /// The scope for a device's configured paths.
    pub fn new(database: PathBuf, key_dir: PathBuf, wrap: KeyWrap, max_unused_secs: i64) -> Self {
        Self {
            database,
            key_dir,
            wrap,
            extra_paths: Vec::new(),
            max_unused_secs,
            unit_files: ["/etc/systemd/system", "/lib/systemd/system", "/usr/lib/systemd/system"]
                .iter()
                .map(|d| Path::new(d).join("facegate.service"))
                .collect(),
            proc_root: PathBuf::from("/proc"),
            models_dir: None,
            system_root: Some(PathBuf::from("/")),
        }
    }
}

/// A check's outcome. A report passes when no check fails; warnings are for settings off the device (a
/// development machine, no systemd) that an installer should look at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// As it must be.
    Pass,
    /// Not a violation, but worth a look.
    Warn,
    /// A no-retention guarantee is broken.
    Fail,
}

/// One check of the report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Check {
    /// Stable id: `files`, `database`, `audit_log`, `runtime`, `retention`, `keys`.
    pub id: &'static str,
    /// What was checked, for a reader.
    pub title: &'static str,
    /// The outcome.
    pub status: Status,
    /// What was seen (paths, counts, findings); never a secret or a biometric value.
    pub details: Vec<String>,
}

/// The whole report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AuditReport {
    /// [`FORMAT`].
    pub format: &'static str,
    /// When, RFC 3339 UTC.
    pub generated_at: String,
    /// The device's host name.
    pub device: String,
    /// facegate's version.
    pub facegate_version: &'static str,
    /// True when no check failed.
    pub passed: bool,
    /// The checks, (a) to (f).
    pub checks: Vec<Check>,
    /// Every template deletion in the audit log (revocations and expiries), with its verification code.
    pub deletions: Vec<AuditEvent>,
    /// Sealed templates now held.
    pub templates_held: i64,
    /// Residents with a live consent.
    pub live_consents: i64,
}

/// Runs every check.
pub fn run_audit(scope: &AuditScope, now: i64) -> AuditReport {
    run_audit_with_progress(scope, now, &|_, _| {})
}

/// Runs every check; `progress(done, total)` follows the file scan in bytes (for a progress bar).
pub fn run_audit_with_progress(scope: &AuditScope, now: i64, progress: &dyn Fn(u64, u64)) -> AuditReport {
    let mut checks = vec![files::check_files(scope, progress)];
    let (mut deletions, mut templates_held, mut live_consents) = (Vec::new(), 0, 0);
    match Store::open_existing(&scope.database) {
        Ok(store) => {
            checks.push(check_database(&store));
            checks.push(check_audit_log(&store));
            checks.push(check_retention(&store, now - scope.max_unused_secs));
            deletions = store.audit_events(&DELETION_EVENTS).unwrap_or_default();
            (templates_held, live_consents) = store.enrolment_counts().unwrap_or_default();
        }
        Err(e) => {
            let failed = |id, title| Check { id, title, status: Status::Fail, details: vec![e.to_string()] };
            checks.push(failed("database", DATABASE_TITLE));
            checks.push(failed("audit_log", AUDIT_LOG_TITLE));
            checks.push(failed("retention", RETENTION_TITLE));
        }
    }
    checks.insert(3, check_runtime(scope));
    checks.push(check_keys(scope));
    AuditReport {
        format: FORMAT,
        generated_at: rfc3339(now),
        device: std::fs::read_to_string(scope.proc_root.join("sys/kernel/hostname"))
            .map(|h| h.trim().to_owned())
            .unwrap_or_default(),
        facegate_version: env!("CARGO_PKG_VERSION"),
        passed: checks.iter().all(|c| c.status != Status::Fail),
        checks,
        deletions,
        templates_held,
        live_consents,
    }
}

const FILES_TITLE: &str =
    "(a) no image, raw pixels or embedding in the data, key and configured folders, nor where the system keeps what \
     processes threw away";
const DATABASE_TITLE: &str = "(b) database: no image columns, no unknown tables, every template has a live consent";
const AUDIT_LOG_TITLE: &str = "(c) the hash-chained audit log verifies end to end";
const RUNTIME_TITLE: &str = "(d) runtime: core dumps off, swap, service sandbox, clock synchronised";
const RETENTION_TITLE: &str = "(e) retention: no template past its unused limit";
const KEYS_TITLE: &str = "(f) keys: every key file sealed under a hardware root, none in clear on the card";

/// (f): a key file in clear, or the `file` root, is a warning (the guarantees hold on the device, but a copied
/// card opens everything); a hardware root with every key file sealed passes. Reads the files themselves, not
/// only the config.
fn check_keys(scope: &AuditScope) -> Check {
    let mut details = vec![format!("key root: {}", scope.wrap.kind().name())];
    let mut in_clear = Vec::new();
    for entry in keys::inventory(&scope.key_dir) {
        details.push(format!("{}: {}", entry.path.display(), entry.form.describe()));
        if entry.form == keys::Form::Clear {
            in_clear.push(entry.path.display().to_string());
        }
    }
    let status = if scope.wrap.kind().keys_on_card() || !in_clear.is_empty() {
        details.insert(0, keys::root::KEYS_ON_CARD.to_owned());
        if !in_clear.is_empty() {
            details.insert(1, format!("in clear on the card: {}", in_clear.join(", ")));
        }
        Status::Warn
    } else {
        Status::Pass
    };
    Check { id: "keys", title: KEYS_TITLE, status, details }
}

/// (b): the database against the schema this version declares ([`Store::declared_schema`]): every table,
/// column, index, view or trigger it does not declare is a finding, whatever its name (a table named like
/// the portal's, a column named `ciphertext`). What the cells hold is read in (a), cell by cell.
fn check_database(store: &Store) -> Check {
    let mut out = Outcome::new();
    match (store.schema(), store.schema_objects(), Store::declared_schema()) {
        (Ok(tables), Ok(objects), Ok((declared, declared_objects))) => {
            out.note(format!("{} tables, as the schema declares them", tables.len()));
            for table in &tables {
                let Some(known) = declared.iter().find(|d| d.name == table.name) else {
                    out.fail(format!(
                        "table {} is not in facegate's schema: nothing but facegate may write here",
                        table.name
                    ));
                    continue;
                };
                for (column, kind) in &table.columns {
                    match known.columns.iter().find(|(c, _)| c == column) {
                        None => out.fail(format!("column {}.{column} is not in facegate's schema", table.name)),
                        Some((_, declared_kind)) if !declared_kind.eq_ignore_ascii_case(kind) => out.fail(format!(
                            "column {}.{column} is declared {kind}, not {declared_kind} as facegate's schema has it",
                            table.name
                        )),
                        Some(_) => {}
                    }
                }
            }
            for (kind, name) in objects.iter().filter(|o| !declared_objects.contains(o)) {
                out.fail(format!("{kind} {name} is not in facegate's schema (it could copy or keep data)"));
            }
        }
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => out.fail(e.to_string()),
    }
    match store.orphan_counts() {
        Ok((0, 0, 0)) => out.note("every sealed template has a live consent and a wrapped key".into()),
        Ok((no_consent, no_key, no_template)) => out.fail(format!(
            "{no_consent} templates without a live consent, {no_key} without a wrapped key, {no_template} keys \
             without a template: run `facegate expire`, or restore from the audit log"
        )),
        Err(e) => out.fail(e.to_string()),
    }
    let digits = crate::registry::KEYPAD_CODE_DIGITS;
    match store.short_keypad_codes(digits) {
        Ok(0) => {}
        Ok(n) => out.warn(format!(
            "{n} keypad code(s) shorter than {digits} digits, issued before codes were lengthened: a guesser finds \
             them sooner; give those residents new random codes (`facegate pin --resident ID`)"
        )),
        Err(e) => out.fail(e.to_string()),
    }
    if let Err(e) = store.integrity_check() {
        out.fail(e.to_string());
    }
    out.into_check("database", DATABASE_TITLE)
}

fn check_audit_log(store: &Store) -> Check {
    match store.verify_audit_chain() {
        Ok(n) => Check {
            id: "audit_log",
            title: AUDIT_LOG_TITLE,
            status: Status::Pass,
            details: vec![format!("{n} events, chain intact")],
        },
        Err(e) => Check { id: "audit_log", title: AUDIT_LOG_TITLE, status: Status::Fail, details: vec![e.to_string()] },
    }
}

fn check_retention(store: &Store, cutoff: i64) -> Check {
    // What really happens: the running daemon's registry owner shreds these at start and every 24 hours.
    let last = match store.audit_events(&["expire (unused)"]) {
        Ok(events) => events.last().map_or_else(|| "none so far".to_owned(), |e| rfc3339(e.at)),
        Err(e) => {
            return Check {
                id: "retention",
                title: RETENTION_TITLE,
                status: Status::Fail,
                details: vec![e.to_string()],
            }
        }
    };
    let how = format!(
        "the running daemon shreds templates unused past the limit when it starts and every 24 hours (last such \
         shredding: {last})"
    );
    match store.unused_since(cutoff) {
        Ok(ids) if ids.is_empty() => Check {
            id: "retention",
            title: RETENTION_TITLE,
            status: Status::Pass,
            details: vec![format!("no template unused since {}", rfc3339(cutoff)), how],
        },
        Ok(ids) => Check {
            id: "retention",
            title: RETENTION_TITLE,
            status: Status::Fail,
            details: vec![
                format!(
                    "{} templates unused since {}: is the daemon running? `facegate expire` shreds them now",
                    ids.len(),
                    rfc3339(cutoff)
                ),
                how,
            ],
        },
        Err(e) => Check { id: "retention", title: RETENTION_TITLE, status: Status::Fail, details: vec![e.to_string()] },
    }
}

/// Unit directives the installed service must carry.
const UNIT_MUST: [&str; 7] = [
    "LimitCORE=0",
    "NoNewPrivileges=yes",
    "ProtectSystem=strict",
    "PrivateTmp=yes",
    "MemorySwapMax=0",
    "ProtectHome=yes",
    "UMask=0077",
];

fn check_runtime(scope: &AuditScope) -> Check {
    let mut out = Outcome::new();
    let proc_root = &scope.proc_root;
    let core_pattern = std::fs::read_to_string(proc_root.join("sys/kernel/core_pattern")).unwrap_or_default();
    let daemons = daemon_pids(proc_root);
    let mut locked_kb = 0u64;
    if daemons.is_empty() {
        out.warn("the gate daemon is not running here: its process limits were not checked".into());
    }
    match crate::protect::hardening::clock_synchronised() {
        Some(true) => out.note("the system clock is synchronised".into()),
        Some(false) => out.warn(
            "the system clock is not synchronised (no NTP): pass windows, counts and this report's times may be \
             wrong; enable systemd-timesyncd or chrony"
                .into(),
        ),
        None => out.warn("the clock's synchronisation could not be read".into()),
    }
    for pid in &daemons {
        let limits = std::fs::read_to_string(proc_root.join(format!("{pid}/limits"))).unwrap_or_default();
        let core_line = limits.lines().find(|l| l.starts_with("Max core file size")).unwrap_or("");
        let soft = core_line.split_whitespace().nth(4).unwrap_or("?");
        if soft == "0" {
            out.note(format!("daemon pid {pid}: core dumps off (RLIMIT_CORE 0)"));
        } else {
            out.fail(format!("daemon pid {pid}: core file size limit {soft}: a crash could write frames to disk"));
        }
        let proc_status = std::fs::read_to_string(proc_root.join(format!("{pid}/status"))).unwrap_or_default();
        locked_kb += proc_status
            .lines()
            .find_map(|l| l.strip_prefix("VmLck:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0);
    }
    let swaps = std::fs::read_to_string(proc_root.join("swaps")).unwrap_or_default();
    let active_swaps = swaps.lines().skip(1).filter(|l| !l.trim().is_empty()).count();
    match (active_swaps, locked_kb) {
        (0, _) => out.note("no swap active".into()),
        (n, kb) if kb > 0 => out.note(format!("{n} swap area(s) active; the daemon's {kb} kB are locked in RAM")),
        (n, _) => out.warn(format!(
            "{n} swap area(s) active and the daemon's memory is not locked: set MemorySwapMax=0 (in the unit)"
        )),
    }
    if core_pattern.trim_start().starts_with('|') {
        out.note(format!("kernel core_pattern pipes to {}", core_pattern.trim()));
    }
    match scope.unit_files.iter().find(|p| p.is_file()) {
        None => out.warn("the facegate service unit is not installed here".into()),
        Some(unit) => {
            let text = std::fs::read_to_string(unit).unwrap_or_default();
            let missing: Vec<&str> =
                UNIT_MUST.iter().copied().filter(|d| !text.lines().any(|l| l.trim() == *d)).collect();
            if missing.is_empty() {
                out.note(format!("{}: sandboxed ({})", unit.display(), UNIT_MUST.join(", ")));
            } else {
                out.warn(format!("{}: missing {}", unit.display(), missing.join(", ")));
            }
        }
    }
    out.into_check("runtime", RUNTIME_TITLE)
}

/// Processes running `facegate ... run`.
fn daemon_pids(proc_root: &Path) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir(proc_root) else { return Vec::new() };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let cmdline = std::fs::read(proc_root.join(format!("{pid}/cmdline"))).unwrap_or_default();
            let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
            args.first().is_some_and(|a| a.ends_with(b"facegate")) && args.iter().any(|a| *a == b"run")
        })
        .collect()
}

/// A check's outcome as it is built: the worst status seen and the details.
struct Outcome {
    status: Status,
    details: Vec<String>,
}

impl Outcome {
    fn new() -> Self {
        Self { status: Status::Pass, details: Vec::new() }
    }
    fn note(&mut self, detail: String) {
        self.details.push(detail);
    }
    fn warn(&mut self, detail: String) {
        if self.status == Status::Pass {
            self.status = Status::Warn;
        }
        self.details.push(detail);
    }
    fn fail(&mut self, detail: String) {
        self.status = Status::Fail;
        self.details.push(detail);
    }
    fn into_check(self, id: &'static str, title: &'static str) -> Check {
        Check { id, title, status: self.status, details: self.details }
    }
}
