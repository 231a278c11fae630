//! A real SMTP server for the email tests: Python's aiosmtpd running tests/mail/smtp_sink.py,
//! which writes each message it accepts, parsed, as JSON into a folder of its own.
//! Without aiosmtpd the tests that need it are skipped, loudly, unless
//! LOWROUTER_REQUIRE_SDK=1 (CI sets it), which makes them fail instead.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub struct SmtpSink {
    pub port: u16,
    child: Child,
    dir: tempfile::TempDir,
}

fn aiosmtpd_available() -> bool {
    Command::new("python3")
        .args(["-c", "import aiosmtpd"])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

impl SmtpSink {
    /// Starts the sink, or `None` (skip the test) when aiosmtpd is not installed.
    pub fn start() -> Option<SmtpSink> {
        if !aiosmtpd_available() {
            assert!(
                std::env::var("LOWROUTER_REQUIRE_SDK").is_err(),
                "the SMTP sink needs aiosmtpd: python3 -m pip install aiosmtpd"
            );
            eprintln!(
                "\n*** SKIPPED: the aiosmtpd Python package is not installed, so the email \
                 verification tests that need a real SMTP server did not run \
                 (python3 -m pip install aiosmtpd) ***\n"
            );
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mail/smtp_sink.py");
        // A port taken by someone else between the probe and the bind: try another.
        for _ in 0..5 {
            let port = free_port();
            let mut child = Command::new("python3")
                .args([script, &port.to_string(), dir.path().to_str().unwrap()])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("python3 runs");
            let mut line = String::new();
            BufReader::new(child.stdout.take().unwrap())
                .read_line(&mut line)
                .unwrap();
            if line.trim() == "ready" {
                return Some(SmtpSink { port, child, dir });
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("the SMTP sink did not start");
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Every message received so far, oldest first.
    pub fn messages(&self) -> Vec<Value> {
        let mut names: Vec<_> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        names.sort();
        names
            .iter()
            .map(|p| serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap())
            .collect()
    }

    /// Waits (mail goes out in the background) until `n` messages arrived; returns them.
    pub async fn wait_for(&self, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let got = self.messages();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "expected {n} messages, the SMTP sink has {}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
