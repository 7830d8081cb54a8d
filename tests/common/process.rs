//! The real `weir` binary as a child process.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A running `weir` with its listen addresses, everything it logged so far (standard error)
/// and its access log (standard output).
pub struct WeirProcess {
    pub child: Child,
    pub http: SocketAddr,
    pub https: SocketAddr,
    pub admin: SocketAddr,
    log: Arc<Mutex<String>>,
    access: Arc<Mutex<String>>,
}

impl Drop for WeirProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl WeirProcess {
    /// Starts `weir --manifests DIR` on ephemeral ports plus `extra` flags, and waits until it
    /// says where it listens.
    pub fn start(manifests: &Path, extra: &[&str]) -> WeirProcess {
        let mut args = vec!["--manifests", manifests.to_str().unwrap()];
        args.extend_from_slice(extra);
        Self::spawn(&args)
    }

    /// Starts `weir ARGS` on ephemeral ports and waits until it says where it listens.
    pub fn spawn(args: &[&str]) -> WeirProcess {
        Self::spawn_with_env(args, &[("RUST_LOG", "info")])
    }

    /// Like [`WeirProcess::spawn`], with these environment variables.
    pub fn spawn_with_env(args: &[&str], env: &[(&str, &str)]) -> WeirProcess {
        Self::launch(Command::new(env!("CARGO_BIN_EXE_weir")), args, env)
    }

    /// Like [`WeirProcess::spawn`], with at most `files` open file descriptors (`prlimit`,
    /// util-linux).
    pub fn spawn_with_open_files(args: &[&str], files: u32) -> WeirProcess {
        let mut command = Command::new("prlimit");
        command
            .arg(format!("--nofile={files}:{files}"))
            .arg("--")
            .arg(env!("CARGO_BIN_EXE_weir"));
        Self::launch(command, args, &[("RUST_LOG", "info")])
    }

    fn launch(mut command: Command, args: &[&str], env: &[(&str, &str)]) -> WeirProcess {
        let mut child = command
            .args([
                "--http-addr",
                "127.0.0.1:0",
                "--https-addr",
                "127.0.0.1:0",
                "--admin-addr",
                "127.0.0.1:0",
            ])
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("weir starts");
        let access = Arc::new(Mutex::new(String::new()));
        let stdout = child.stdout.take().unwrap();
        let sink = access.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let mut access = sink.lock().unwrap();
                access.push_str(&line);
                access.push('\n');
            }
        });
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("weir listening") {
                    let _ = tx.send(line.clone());
                }
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("weir did not start: {}", log.lock().unwrap()));
        // `http=ADDR` in text logs, `"http":"ADDR"` in JSON logs.
        let field = |name: &str| -> SocketAddr {
            let (start, end) = match line.find(&format!("\"{name}\":\"")) {
                Some(at) => (at + name.len() + 4, '"'),
                None => {
                    let at = line.find(&format!("{name}=")).expect("address field");
                    (at + name.len() + 1, ' ')
                }
            };
            line[start..].split(end).next().unwrap().parse().unwrap()
        };
        WeirProcess {
            http: field("http"),
            https: field("https"),
            admin: field("admin"),
            child,
            log,
            access,
        }
    }

    /// Waits until `/readyz` answers 200 (30 s at most).
    pub async fn until_ready(&self) {
        let client = super::http1_client();
        let started = std::time::Instant::now();
        loop {
            if let Ok(answer) = super::try_get(&client, self.admin, "admin", "/readyz").await
                && answer.status == 200
            {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "weir never became ready:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Every access log line so far.
    pub fn access_log(&self) -> String {
        self.access.lock().unwrap().clone()
    }

    /// Waits until `count` access log lines satisfy `matches`; panics with the access log after
    /// `limit`.
    pub async fn wait_for_access_lines(
        &self,
        count: usize,
        limit: Duration,
        matches: impl Fn(&str) -> bool,
    ) -> Vec<String> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            let lines: Vec<String> = self
                .access_log()
                .lines()
                .filter(|l| matches(l))
                .map(str::to_owned)
                .collect();
            if lines.len() >= count {
                return lines;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "fewer than {count} matching access log lines within {limit:?}:\n{}",
                self.access_log()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Everything weir logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until a logged line satisfies `matches`, checking every few milliseconds; panics
    /// with the whole log after `limit`. (Lines reach the log through a pipe and a reader
    /// thread, so they may trail what weir already does.)
    pub async fn wait_for_line(
        &self,
        what: &str,
        limit: Duration,
        matches: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(line) = self.log().lines().find(|l| matches(l)) {
                return line.to_owned();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no log line {what} within {limit:?}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Resident memory and its peak (VmRSS, VmHWM) in KiB.
    pub fn memory_kib(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let field = |name: &str| -> u64 {
            let line = status.lines().find(|l| l.starts_with(name)).unwrap();
            line.split_whitespace().nth(1).unwrap().parse().unwrap()
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// Sends SIGTERM.
    pub fn sigterm(&self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits up to `limit` for the process to exit and returns its status.
    pub async fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "weir did not exit within {limit:?}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
