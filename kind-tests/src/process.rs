//! The operator and webhook binaries run as real processes in tests, stopped when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;

/// A binary of this workspace, built beside the test executable (`cargo build --bins` first).
pub fn binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    // Tests run from target/<profile>/deps/, binaries (benchmarks) from target/<profile>/.
    let mut dir = exe.parent().context("executable has no directory")?;
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir = dir.parent().context("deps has no parent")?;
    }
    let path = dir.join(name);
    anyhow::ensure!(
        path.exists(),
        "{} is not built: run `cargo build --bins` first",
        path.display()
    );
    Ok(path)
}

/// A child process killed when dropped.
pub struct Running {
    child: Child,
    /// Address of its health server.
    pub health: String,
}

impl Running {
    /// Starts `binary` with `args`, pointed at `kubeconfig`, with its health server on a free
    /// loopback port, and waits until `/readyz` answers 200.
    pub fn start(
        binary_name: &str,
        kubeconfig: &std::path::Path,
        args: &[&str],
    ) -> anyhow::Result<Self> {
        let mut running = Self::start_unready(binary_name, kubeconfig, args)?;
        running.wait_for(Duration::from_secs(30), "/readyz")?;
        Ok(running)
    }

    /// Starts `binary` like [`Running::start`] but waits only for `/healthz`: alive, maybe not
    /// ready (a standby replica).
    pub fn start_unready(
        binary_name: &str,
        kubeconfig: &std::path::Path,
        args: &[&str],
    ) -> anyhow::Result<Self> {
        Self::spawn(&binary(binary_name)?, kubeconfig, args)
    }

    /// Starts the binary at `path` (a release build, say) and waits until it is ready.
    pub fn start_binary(
        path: &std::path::Path,
        kubeconfig: &std::path::Path,
        args: &[&str],
    ) -> anyhow::Result<Self> {
        let mut running = Self::spawn(path, kubeconfig, args)?;
        running.wait_for(Duration::from_secs(120), "/readyz")?;
        Ok(running)
    }

    /// The process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Starts `binary` with its plain-HTTP probes on `probe_flag` (the webhook serves
    /// admission over TLS on `--listen`, probes on `--probe-listen`) and waits until ready.
    pub fn start_with_probes(
        binary_name: &str,
        probe_flag: &str,
        kubeconfig: &std::path::Path,
        args: &[&str],
    ) -> anyhow::Result<Self> {
        let mut running = Self::spawn_with(&binary(binary_name)?, probe_flag, kubeconfig, args)?;
        running.wait_for(Duration::from_secs(30), "/readyz")?;
        Ok(running)
    }

    /// [`Running::start_with_probes`], waiting only until it is alive (`/healthz`).
    pub fn start_with_probes_unready(
        binary_name: &str,
        probe_flag: &str,
        kubeconfig: &std::path::Path,
        args: &[&str],
    ) -> anyhow::Result<Self> {
        Self::spawn_with(&binary(binary_name)?, probe_flag, kubeconfig, args)
    }

    /// [`Running::start_with_probes`] with the process's open-file limit set to `files`.
    pub fn start_with_probes_and_file_limit(
        binary_name: &str,
        probe_flag: &str,
        kubeconfig: &std::path::Path,
        args: &[&str],
        files: u64,
    ) -> anyhow::Result<Self> {
        let mut running = Self::spawn_limited(
            &binary(binary_name)?,
            probe_flag,
            kubeconfig,
            args,
            Some(files),
        )?;
        running.wait_for(Duration::from_secs(30), "/readyz")?;
        Ok(running)
    }

    fn spawn(
        path: &std::path::Path,
        kubeconfig: &std::path::Path,
        args: &[&str],
    ) -> anyhow::Result<Self> {
        Self::spawn_with(path, "--listen", kubeconfig, args)
    }

    fn spawn_with(
        path: &std::path::Path,
        probe_flag: &str,
        kubeconfig: &std::path::Path,
        args: &[&str],
    ) -> anyhow::Result<Self> {
        Self::spawn_limited(path, probe_flag, kubeconfig, args, None)
    }

    fn spawn_limited(
        path: &std::path::Path,
        probe_flag: &str,
        kubeconfig: &std::path::Path,
        args: &[&str],
        files: Option<u64>,
    ) -> anyhow::Result<Self> {
        use std::os::unix::process::CommandExt;
        let binary_name = path.display().to_string();
        let port = free_port()?;
        let health = format!("127.0.0.1:{port}");
        let mut command = Command::new(path);
        command
            .arg(format!("{probe_flag}={health}"))
            .arg(format!("--kubeconfig={}", kubeconfig.display()))
            .args(args)
            .stdin(Stdio::null());
        if let Some(files) = files {
            let limit = libc::rlimit {
                rlim_cur: files,
                rlim_max: files,
            };
            // SAFETY: setrlimit is async-signal-safe and touches only the child's limits.
            unsafe {
                command.pre_exec(move || {
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let child = command
            .spawn()
            .with_context(|| format!("starting {binary_name}"))?;
        let mut running = Self { child, health };
        running.wait_for(Duration::from_secs(30), "/healthz")?;
        Ok(running)
    }

    fn wait_for(&mut self, within: Duration, path: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                anyhow::bail!("exited before it was ready: {status}");
            }
            if http_status(&self.health, path).ok() == Some(200) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        anyhow::bail!("{path} not 200 within {within:?}")
    }

    /// Sends SIGTERM and waits for the process to exit; returns whether it exited cleanly.
    pub fn terminate(self) -> anyhow::Result<bool> {
        self.signal_term()?;
        self.exited_within(Duration::from_secs(10))
    }

    /// Sends SIGTERM, and returns at once.
    pub fn signal_term(&self) -> anyhow::Result<()> {
        let pid = self.child.id().to_string();
        anyhow::ensure!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()?
                .success(),
            "kill -TERM {pid} failed"
        );
        Ok(())
    }

    /// Waits at most `within` for the process to exit; returns whether it exited cleanly.
    pub fn exited_within(mut self, within: Duration) -> anyhow::Result<bool> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status.success());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        anyhow::bail!("did not exit within {within:?}")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits up to 2 s for the process serving `address` to say on `/readyz` that it is shutting
/// down (503): how a process shows it saw SIGTERM while it still serves through its delay.
pub fn shutting_down(address: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut last = None;
    while Instant::now() < deadline {
        let (status, why) = http_get(address, "/readyz")?;
        if status == 503 && why.contains("shutting down") {
            return Ok(());
        }
        last = Some((status, why));
        std::thread::sleep(Duration::from_millis(20));
    }
    anyhow::bail!("/readyz did not say it is shutting down within 2 s: {last:?}")
}

/// Runs `command` to its end; its stdout, or an error with its stderr naming it as `what`.
pub fn stdout_of(mut command: Command, what: &str) -> anyhow::Result<String> {
    let out = command
        .output()
        .with_context(|| format!("running {what}"))?;
    anyhow::ensure!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A free TCP port on the loopback interface.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// The status code of a plain-HTTP GET.
pub fn http_status(address: &str, path: &str) -> anyhow::Result<u16> {
    Ok(http_get(address, path)?.0)
}

/// Status code and body of a plain-HTTP GET, without an HTTP client dependency.
pub fn http_get(address: &str, path: &str) -> anyhow::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address)?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply)?;
    let code = reply
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .context("no status line")?;
    let body = reply
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((code, body))
}
