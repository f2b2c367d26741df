//! The compound's test bench: Debian's `nats-server` as the broker (restartable on its durable store), a
//! loopback relay per gate that the test can cut like a cable, and gates as real `facegate run` processes
//! whose log lines the test reads.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::daemon::BIN;

pub const COMPOUND: &str = "maple-court";
pub const FACE_OPENED: &str = "passage method=\"face\" outcome=\"opened\"";
pub const PIN_OPENED: &str = "passage method=\"pin\" outcome=\"opened\"";
pub const OFFLINE_LIMIT_S: u64 = 3;

pub fn nats_server() -> PathBuf {
    let found = ["/usr/sbin/nats-server", "/usr/bin/nats-server", "/usr/local/bin/nats-server"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file());
    found.unwrap_or_else(|| {
        panic!(
            "nats-server is not installed: this test needs Debian's nats-server (`apt-get install nats-server`; \
             deploy/dev-setup.sh and .ci/run install it)"
        )
    })
}

/// Runs the binary and insists that it succeeds.
pub fn facegate(args: &[&str], stdin: Option<&str>) -> std::process::Output {
    let out = super::daemon::facegate(None, args, stdin);
    assert!(out.status.success(), "facegate {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// The broker, restartable on the same durable store.
pub struct Broker {
    pub conf: PathBuf,
    pub port: u16,
    pub child: Option<Child>,
}

impl Broker {
    pub fn start(&mut self) {
        // The broker's log (permission violations among it) beside its configuration, for the test to read.
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log()).unwrap();
        let child = Command::new(nats_server())
            .args(["-c", self.conf.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
            let _ = child.wait();
        }
    }

    /// Kills the broker at once (SIGKILL: a power cut, the OOM killer), whatever it was doing.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Where the broker logs.
    pub fn log(&self) -> PathBuf {
        self.conf.with_file_name("nats-server.log")
    }

    /// Reloads the configuration file, as `systemctl reload nats-server` does.
    pub fn reload(&self) {
        let pid = self.child.as_ref().unwrap().id().to_string();
        assert!(Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A loopback relay between one gate and the broker that the test can cut and restore.
pub struct Relay {
    pub port: u16,
    cut: Arc<AtomicBool>,
    live: Arc<Mutex<Vec<TcpStream>>>,
}

impl Relay {
    pub fn new(target: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let live: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (cut2, live2) = (cut.clone(), live.clone());
        std::thread::spawn(move || {
            for inbound in listener.incoming().map_while(Result::ok) {
                if cut2.load(Ordering::SeqCst) {
                    continue; // dropped: the cable is cut
                }
                let Ok(outbound) = TcpStream::connect(("127.0.0.1", target)) else { continue };
                let mut live = live2.lock().unwrap();
                live.push(inbound.try_clone().unwrap());
                live.push(outbound.try_clone().unwrap());
                for (mut from, mut to) in [
                    (inbound.try_clone().unwrap(), outbound.try_clone().unwrap()),
                    (outbound.try_clone().unwrap(), inbound.try_clone().unwrap()),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = from.shutdown(Shutdown::Both);
                        let _ = to.shutdown(Shutdown::Both);
                    });
                }
            }
        });
        Self { port, cut, live }
    }

    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for stream in self.live.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

/// One gate: its folder, its process, its log lines as they came.
pub struct Gate {
    pub name: &'static str,
    pub dir: PathBuf,
    pub child: Option<Child>,
    stdin: Option<ChildStdin>,
    pub log: Arc<Mutex<Vec<(Instant, String)>>>,
    shown: usize,
}

impl Gate {
    pub fn new(root: &Path, name: &'static str, compound_dir: &Path, broker_port: u16) -> Self {
        let dir = root.join(name);
        std::fs::create_dir_all(dir.join("replay")).unwrap();
        std::fs::create_dir_all(dir.join("keys")).unwrap();
        let bundle = compound_dir.join("gates").join(name);
        let dest = dir.join("keys/compound");
        std::fs::create_dir_all(&dest).unwrap();
        for file in ["ca.pem", "gate.pem", "gate.key", "compound.key"] {
            std::fs::copy(bundle.join(file), dest.join(file)).unwrap();
        }
        std::fs::write(
            dir.join("gate.toml"),
            format!(
                "[audit]\nsystem_places = false\n[store]\ndatabase = \"{d}/data/facegate.sqlite\"\nmaster_key = \"{d}/keys/master.key\"\n\
                 [capture]\nsource = \"replay\"\nreplay_dir = \"{d}/replay\"\nfps = 6\n\
                 [gate]\nintent = \"always\"\nface_cooldown_ms = 500\n\
                 [hardware]\nbackend = \"simulated\"\nkeypad = \"stdin\"\n\
                 [compound]\nname = \"{COMPOUND}\"\ngate = \"{name}\"\ngates = [\"gate-a\", \"gate-b\", \"gate-c\"]\n\
                 broker = \"tls://127.0.0.1:{broker_port}\"\noffline_limit = \"{OFFLINE_LIMIT_S}s\"\ncounts_every = \"2s\"\n",
                d = dir.display()
            ),
        )
        .unwrap();
        Self { name, dir, child: None, stdin: None, log: Arc::default(), shown: 0 }
    }

    pub fn config(&self) -> String {
        self.dir.join("gate.toml").display().to_string()
    }

    pub fn cli(&self, args: &[&str], stdin: Option<&str>) -> std::process::Output {
        let config = self.config();
        let mut all = vec!["--config", config.as_str()];
        all.extend_from_slice(args);
        facegate(&all, stdin)
    }

    /// What the camera sees from now on (the replay folder is read again at every loop).
    pub fn show(&mut self, photos: &[PathBuf]) {
        self.shown += 1;
        super::show_in_replay(&self.dir.join("replay"), self.shown, photos);
    }

    pub fn start(&mut self) {
        let mut child = Command::new(BIN)
            .args(["--config", &self.config(), "--models", super::models_dir().to_str().unwrap(), "run"])
            .env("FACEGATE_LOG", "info")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        self.stdin = child.stdin.take();
        let stderr = child.stderr.take().unwrap();
        let (log, name) = (self.log.clone(), self.name);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("WARN") || line.contains("ERROR") || line.contains("compound") {
                    eprintln!("[{name}] {line}");
                }
                log.lock().unwrap().push((Instant::now(), line));
            }
        });
        self.child = Some(child);
    }

    pub fn stop(&mut self) {
        self.stdin = None;
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
            let _ = child.wait();
        }
    }

    pub fn lines_since(&self, needle: &str, since: Instant) -> Vec<Instant> {
        self.log.lock().unwrap().iter().filter(|(t, l)| *t >= since && l.contains(needle)).map(|(t, _)| *t).collect()
    }

    pub fn wait_for(&self, needle: &str, since: Instant, within: Duration) -> Instant {
        let deadline = Instant::now() + within;
        loop {
            if let Some(&t) = self.lines_since(needle, since).first() {
                return t;
            }
            assert!(Instant::now() < deadline, "{}: no {needle:?} within {within:?}", self.name);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn type_keys(&mut self, keys: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{keys}").unwrap();
        stdin.flush().unwrap();
    }

    /// Types the PIN and waits for the keypad admission.
    pub fn pin_opens(&mut self) {
        let since = Instant::now();
        self.type_keys("340112#4071#");
        self.wait_for(PIN_OPENED, since, Duration::from_secs(10));
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Messages as the stream stored them: (subject, payload).
pub type Captured = Arc<std::sync::Mutex<Vec<(String, Vec<u8>)>>>;

/// Someone who copied gate A's certificate, key and the compound's secret from its SD card, with a client of
/// their own: everything a gate's certificate lets them do on the broker.
pub struct Thief {
    pub runtime: tokio::runtime::Runtime,
    pub client: async_nats::Client,
    pub js: async_nats::jetstream::Context,
    /// Every message of the stream, as it was stored: (subject, payload).
    seen: Captured,
}

impl Thief {
    pub fn connect(bundle: &Path, port: u16, inbox: &str) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let client = runtime.block_on(async {
            async_nats::ConnectOptions::new()
                .add_root_certificates(bundle.join("ca.pem"))
                .add_client_certificate(bundle.join("gate.pem"), bundle.join("gate.key"))
                .require_tls(true)
                .custom_inbox_prefix(inbox)
                .request_timeout(Some(Duration::from_secs(2)))
                .connect(format!("tls://127.0.0.1:{port}"))
                .await
                .unwrap()
        });
        let js = runtime.block_on(async { async_nats::jetstream::new(client.clone()) });
        Self { runtime, client, js, seen: Arc::default() }
    }

    /// Reads the stream from its first message on, as any gate may, keeping what it reads.
    pub fn capture(&self, stream: &str) {
        let (js, seen, stream) = (self.js.clone(), self.seen.clone(), stream.to_owned());
        self.runtime.spawn(async move {
            use futures_util::StreamExt;
            let stream = js.get_stream(stream).await.unwrap();
            let config = async_nats::jetstream::consumer::pull::OrderedConfig::default();
            let mut messages = stream.create_consumer(config).await.unwrap().messages().await.unwrap();
            while let Some(Ok(message)) = messages.next().await {
                seen.lock().unwrap().push((message.subject.to_string(), message.payload.to_vec()));
            }
        });
    }

    /// What was stored on `subject`, oldest first.
    pub fn captured_on(&self, subject: &str) -> Vec<Vec<u8>> {
        self.seen.lock().unwrap().iter().filter(|(s, _)| s == subject).map(|(_, p)| p.clone()).collect()
    }

    /// Publishes to the stream and waits for the broker's acknowledgement.
    pub fn publish(&self, subject: &str, payload: Vec<u8>) -> Result<u64, String> {
        self.runtime.block_on(async {
            let ack = tokio::time::timeout(Duration::from_secs(3), async {
                self.js
                    .publish(subject.to_owned(), payload.into())
                    .await
                    .map_err(|e| e.to_string())?
                    .await
                    .map_err(|e| e.to_string())
            })
            .await;
            ack.map_err(|_| "no acknowledgement".to_owned())?.map(|ack| ack.sequence)
        })
    }
}

/// A gate's view of the compound (`facegate compound status --json`).
pub fn compound_status(gate: &Gate) -> serde_json::Value {
    serde_json::from_slice(&gate.cli(&["compound", "status", "--json"], None).stdout).unwrap()
}

/// Waits until `gate` has applied the stream up to `sequence`.
pub fn wait_applied(gate: &Gate, sequence: u64) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while compound_status(gate)["applied_sequence"].as_u64().unwrap_or(0) < sequence {
        assert!(Instant::now() < deadline, "{}: never applied the stream up to {sequence}", gate.name);
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The resident's state in a gate's database, as `facegate residents --json` lists it.
pub fn template_version(gate: &Gate, resident: &str) -> Option<u64> {
    let out = gate.cli(&["residents", "--json"], None);
    let text = String::from_utf8(out.stdout).unwrap();
    text.lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|r| r["resident"] == resident)
        .and_then(|r| r["template_version"].as_u64())
}

/// Gates named `names` on the broker at `port`, the first `running` of them started and matching faces (the
/// rest made but not started).
pub fn gates_started(root: &Path, compound: &Path, port: u16, names: &[&'static str], running: usize) -> Vec<Gate> {
    let mut gates: Vec<Gate> = names.iter().map(|name| Gate::new(root, name, compound, port)).collect();
    let started = Instant::now();
    for gate in &mut gates[..running] {
        gate.start();
    }
    for gate in &gates[..running] {
        gate.wait_for("face matching on", started, Duration::from_secs(60));
    }
    gates
}
