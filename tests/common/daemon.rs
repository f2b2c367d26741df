//! The daemon with its portal, as the portal tests and the browser tests start it: a private device folder,
//! a replay camera, two staff accounts, HTTPS on a free loopback port.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use reqwest::redirect::Policy;
use reqwest::StatusCode;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_facegate");
/// The manager's account.
pub const MANAGER: (&str, &str) = ("mgr", "manager-password-1");
/// The auditor's account.
pub const AUDITOR: (&str, &str) = ("aud", "auditor-password-1");

/// A running daemon with its portal; killed on drop.
pub struct Gate {
    child: Child,
    /// The device's folder (config, data, keys, replay).
    pub dir: tempfile::TempDir,
    /// `https://localhost:PORT`.
    pub base: String,
    /// The daemon's log lines as they came.
    pub log: Arc<Mutex<Vec<(Instant, String)>>>,
    shown: usize,
    /// The daemon's standard input (keypad, scanner and bench buttons), for [`start_gate_typed`].
    stdin: Option<std::process::ChildStdin>,
}

impl Gate {
    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The config file.
    pub fn config(&self) -> PathBuf {
        self.dir.path().join("gate.toml")
    }

    /// Runs a command of the binary against this device's config; insists that it succeeds.
    pub fn cli(&self, args: &[&str], stdin: Option<&str>) -> std::process::Output {
        let out = facegate(Some(&self.config()), args, stdin);
        assert!(out.status.success(), "facegate {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        out
    }

    /// What the camera sees from now on (the replay folder is read again at every loop).
    pub fn show(&mut self, photos: &[PathBuf]) {
        self.shown += 1;
        super::show_in_replay(&self.dir.path().join("replay"), self.shown, photos);
    }

    /// The first log line holding `needle` since `since`, waiting up to `within`.
    pub fn wait_for_log(&self, needle: &str, since: Instant, within: Duration) -> Instant {
        let deadline = Instant::now() + within;
        loop {
            let found =
                self.log.lock().unwrap().iter().find(|(t, l)| *t >= since && l.contains(needle)).map(|(t, _)| *t);
            if let Some(t) = found {
                return t;
            }
            assert!(Instant::now() < deadline, "no {needle:?} in the daemon's log within {within:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Types a line on the daemon's standard input (a PIN entry, a pass, or a bench button such as `!guard`).
    pub fn type_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("start the gate with start_gate_typed");
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    /// Stops the daemon as systemd does (SIGTERM) and waits for it to exit; returns how it ended.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "the daemon did not stop within 20 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The last log line holding `needle`.
    pub fn last_log(&self, needle: &str) -> Option<String> {
        self.log.lock().unwrap().iter().rev().find(|(_, l)| l.contains(needle)).map(|(_, l)| l.clone())
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
    }
}

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Runs the binary with the test models (and `--config` when given), feeding `stdin`; returns its output.
pub fn facegate(config: Option<&Path>, args: &[&str], stdin: Option<&str>) -> std::process::Output {
    let mut command = Command::new(BIN);
    if let Some(config) = config {
        command.args(["--config", config.to_str().unwrap()]);
    }
    let mut child = command
        .args(["--models", super::models_dir().to_str().unwrap()])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_remove("FACEGATE_MASTER_PASSPHRASE")
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

/// Starts the daemon with its portal over a replay of `frames` (copied to a private folder).
pub fn start_gate(frames: &[PathBuf]) -> Gate {
    start_gate_with(frames, |_| String::new())
}

/// [`start_gate`], with more config: `extra` gets the device's folder (to put files there) and returns TOML
/// appended to the config (e.g. a `[compound]` section).
pub fn start_gate_with(frames: &[PathBuf], extra: impl FnOnce(&Path) -> String) -> Gate {
    launch(frames, extra, false, &[], None)
}

/// [`start_gate`], with the keypad, the scanner and the bench's buttons on standard input
/// ([`Gate::type_line`]).
pub fn start_gate_typed(frames: &[PathBuf], extra: impl FnOnce(&Path) -> String) -> Gate {
    launch(frames, extra, true, &[], None)
}

/// [`start_gate_typed`], with more environment for the daemon (e.g. libfaketime's).
pub fn start_gate_typed_env(frames: &[PathBuf], env: &[(&str, &str)]) -> Gate {
    launch(frames, |_| String::new(), true, env, None)
}

/// [`start_gate_typed`], with the daemon's models read from `models` (the commands still use the test models).
pub fn start_gate_typed_models(frames: &[PathBuf], models: &Path) -> Gate {
    launch(frames, |_| String::new(), true, &[], Some(models))
}

fn launch(
    frames: &[PathBuf],
    extra: impl FnOnce(&Path) -> String,
    typed: bool,
    env: &[(&str, &str)],
    models: Option<&Path>,
) -> Gate {
    let dir = tempfile::tempdir().unwrap();
    let replay = dir.path().join("replay");
    std::fs::create_dir_all(&replay).unwrap();
    for (i, f) in frames.iter().enumerate() {
        std::fs::copy(f, replay.join(format!("{i:03}.jpg"))).unwrap();
    }
    let port = free_port();
    let config = dir.path().join("gate.toml");
    std::fs::write(
        &config,
        format!(
            "[audit]\nsystem_places = false\n[store]\ndatabase = \"{d}/data/facegate.sqlite\"\nmaster_key = \"{d}/keys/master.key\"\n\
             [capture]\nsource = \"replay\"\nreplay_dir = \"{r}\"\nfps = 8\n\
             [gate]\nintent = \"always\"\n[hardware]\nbackend = \"simulated\"\nkeypad = \"{k}\"\nscanner = \"{k}\"\n\
             [portal]\nenabled = true\nlisten = \"127.0.0.1:{port}\"\noperator = \"Riverside Gardens management\"\n\
             contact = \"office@riverside.example\"\nutc_offset = \"+08:00\"\n",
            d = dir.path().display(),
            r = replay.display(),
            k = if typed { "stdin" } else { "none" },
        ) + &extra(dir.path()),
    )
    .unwrap();
    for ((name, password), role) in [(MANAGER, "manager"), (AUDITOR, "auditor")] {
        let out = facegate(Some(&config), &["account", "--name", name, "--role", role], Some(&format!("{password}\n")));
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let mut child = Command::new(BIN)
        .args(["--config", config.to_str().unwrap(), "--models"])
        .arg(models.map_or_else(super::models_dir, Path::to_path_buf))
        .arg("run")
        .env("FACEGATE_LOG", "info")
        .envs(env.iter().copied())
        .stdin(if typed { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take();
    let log: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
    let (stderr, lines) = (child.stderr.take().unwrap(), log.clone());
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("[daemon] {line}");
            lines.lock().unwrap().push((Instant::now(), line));
        }
    });
    let gate = Gate { child, dir, base: format!("https://localhost:{port}"), log, shown: 0, stdin };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if gate.dir.path().join("keys/portal-cert.pem").exists() {
            if let Ok(response) = client(&gate, true).get(format!("{}/", gate.base)).send() {
                assert_eq!(response.status(), StatusCode::OK);
                return gate;
            }
        }
        assert!(Instant::now() < deadline, "the portal did not come up on {}", gate.base);
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A browser-like client from its own loopback address (127.0.x.y), as another household's phone on the LAN
/// would be: the portal's per-address limits count it apart.
pub fn household_client(gate: &Gate) -> Client {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(256);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let ip = std::net::Ipv4Addr::new(127, 0, u8::try_from(n / 256 % 256).unwrap(), u8::try_from(n % 256).unwrap());
    client_builder(gate, false).local_address(std::net::IpAddr::V4(ip)).build().unwrap()
}

/// A browser-like client that trusts the gate's own certificate (and nothing else).
pub fn client(gate: &Gate, follow: bool) -> Client {
    client_builder(gate, follow).build().unwrap()
}

fn client_builder(gate: &Gate, follow: bool) -> reqwest::blocking::ClientBuilder {
    let pem = std::fs::read(gate.dir.path().join("keys/portal-cert.pem")).unwrap();
    Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .tls_built_in_root_certs(false)
        .cookie_store(true)
        .redirect(if follow { Policy::limited(5) } else { Policy::none() })
        .timeout(Duration::from_secs(30))
}
