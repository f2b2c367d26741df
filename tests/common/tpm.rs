//! A software TPM 2.0 (Debian's `swtpm`) on loopback, one per "board": each has its own storage seed, so a
//! key sealed by one is refused by another, as between two physical modules.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `swtpm`, stopped on drop.
pub struct SoftTpm {
    child: Child,
    port: u16,
    _state: tempfile::TempDir,
}

/// Where `swtpm` is; fails with the package to install.
pub fn swtpm() -> PathBuf {
    for dir in ["/usr/bin", "/usr/local/bin"] {
        let path = PathBuf::from(dir).join("swtpm");
        if path.is_file() {
            return path;
        }
    }
    panic!("swtpm is missing: run `bash deploy/dev-setup.sh` (Debian packages swtpm, swtpm-tools, libtss2-dev)")
}

/// Two free loopback ports in a row (the server's and the control channel's).
fn free_port_pair() -> u16 {
    for _ in 0..50 {
        let first = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = first.local_addr().unwrap().port();
        if port < u16::MAX && TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
    panic!("no two free loopback ports in a row")
}

impl SoftTpm {
    /// A fresh TPM (new seeds), started and answering.
    pub fn start() -> Self {
        let state = tempfile::tempdir().unwrap();
        let port = free_port_pair();
        let child = Command::new(swtpm())
            .args(["socket", "--tpm2", "--tpmstate"])
            .arg(format!("dir={}", state.path().display()))
            .args(["--server", &format!("type=tcp,port={port},bindaddr=127.0.0.1")])
            .args(["--ctrl", &format!("type=tcp,port={},bindaddr=127.0.0.1", port + 1)])
            .args(["--flags", "not-need-init,startup-clear"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start swtpm: {e}"));
        let tpm = Self { child, port, _state: state };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "swtpm did not listen on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        tpm
    }

    /// The TCTI string for `[keys] tpm_tcti`.
    pub fn tcti(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }
}

impl Drop for SoftTpm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
