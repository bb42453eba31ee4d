//! entrypoint: runs the test with its output teed to the process log, ends it at the timeout
//! (SIGINT to its process group, SIGKILL after the grace period), and writes its exit code to
//! the marker file the sidecar waits for. With `--copy-mode-only` it only copies itself to
//! `/tools/entrypoint` (the `place-entrypoint` init container).

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt as _;
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use prow_api::decorate::options::{EntrypointOptions, ENTRYPOINT_OPTIONS};
use prow_api::decorate::ENTRYPOINT_PATH;

use crate::report::{env_json, termination_message};

/// The exit code recorded when the wrapper itself failed (upstream's InternalErrorCode).
pub const INTERNAL_ERROR: i32 = 127;

/// The last termination signal the wrapper received (0: none).
static SIGNALLED: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(signal: libc::c_int) {
    SIGNALLED.store(signal, Ordering::SeqCst);
}

/// How the test ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ending {
    /// It exited with this code.
    Exited(i32),
    /// It outlived its timeout.
    TimedOut,
    /// The pod was stopped (SIGTERM/SIGINT to the wrapper).
    Interrupted,
}

/// Copies the running binary to `dst` (executable).
fn copy_self(dst: &str) -> anyhow::Result<ExitCode> {
    let me = std::env::current_exe().context("finding this binary")?;
    if let Some(dir) = std::path::Path::new(dst).parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::copy(&me, dst).with_context(|| format!("copying {} to {dst}", me.display()))?;
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(dst, std::fs::Permissions::from_mode(0o755))?;
    Ok(ExitCode::SUCCESS)
}

fn go_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s}s"),
        _ => format!("{h}h{m}m{s}s"),
    }
}

/// Sends `signal` to the test's process group.
fn signal_group(pid: u32, signal: libc::c_int) {
    // SAFETY: kill only sends a signal; a group that is gone makes it return ESRCH.
    unsafe {
        libc::kill(-(pid as libc::pid_t), signal);
    }
}

/// Runs the test as `options` say, writing its output to `out` as well as the log.
pub fn wrap(
    options: &EntrypointOptions,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<(Ending, i32)> {
    let wrapper = &options.wrapper;
    let (program, args) = wrapper
        .args
        .split_first()
        .context("ENTRYPOINT_OPTIONS has no args: the container has no command")?;
    if !options.artifact_dir.is_empty() {
        std::fs::create_dir_all(&options.artifact_dir)
            .with_context(|| format!("creating {}", options.artifact_dir))?;
    }
    let log = Arc::new(Mutex::new(
        File::create(&wrapper.process_log)
            .with_context(|| format!("creating {}", wrapper.process_log))?,
    ));
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    // The test, not the wrapper, is what the kernel kills when the container runs out of
    // memory: a killed wrapper would write no marker, and the sidecar would wait for it until
    // the pod's running timeout. Raising a score needs no privilege; children inherit it.
    // And the test gets SIGINT and SIGTERM as signals it can handle: an ignored disposition
    // is inherited through exec (a wrapper started in the background of a shell has SIGINT
    // ignored), and a shell cannot trap a signal ignored at its start, so the timeout's SIGINT
    // would give the test no chance to clean up.
    // SAFETY: between fork and exec this only calls open, write, close and signal, which are
    // async-signal-safe, on a static path, and allocates nothing.
    unsafe {
        command.pre_exec(|| {
            let fd = libc::open(c"/proc/self/oom_score_adj".as_ptr(), libc::O_WRONLY);
            if fd >= 0 {
                libc::write(fd, b"1000".as_ptr().cast(), 4);
                libc::close(fd);
            }
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            libc::signal(libc::SIGTERM, libc::SIG_DFL);
            Ok(())
        });
    }
    let mut child = command
        .spawn()
        .with_context(|| format!("starting {program}"))?;
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    let mut readers = Vec::new();
    for mut pipe in [
        Box::new(child.stdout.take().expect("piped")) as Box<dyn Read + Send>,
        Box::new(child.stderr.take().expect("piped")),
    ] {
        let tx = tx.clone();
        readers.push(std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        }));
    }
    drop(tx);
    let writer_log = Arc::clone(&log);
    // The output goes to the log file as it comes, so the sidecar can stream it.
    let (out_tx, out_rx) = std::sync::mpsc::channel::<Vec<u8>>();
    let writer = std::thread::spawn(move || {
        for chunk in rx {
            if let Ok(mut f) = writer_log.lock() {
                let _ = f.write_all(&chunk);
                let _ = f.flush();
            }
            let _ = out_tx.send(chunk);
        }
    });

    let timeout = Duration::from_nanos(options.timeout);
    let grace = Duration::from_nanos(options.grace_period);
    let started = Instant::now();
    let mut stopping: Option<(Instant, Ending)> = None;
    let status = loop {
        for chunk in out_rx.try_iter() {
            let _ = out.write_all(&chunk);
        }
        let _ = out.flush();
        if let Some(status) = child.try_wait().context("waiting for the test")? {
            break status;
        }
        match stopping.as_ref() {
            None if options.timeout > 0 && started.elapsed() >= timeout => {
                signal_group(pid, libc::SIGINT);
                stopping = Some((Instant::now(), Ending::TimedOut));
            }
            None if SIGNALLED.load(Ordering::SeqCst) != 0 => {
                signal_group(pid, libc::SIGINT);
                stopping = Some((Instant::now(), Ending::Interrupted));
            }
            Some((since, _)) if since.elapsed() >= grace => signal_group(pid, libc::SIGKILL),
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // What is left of the group goes too, so nothing holds the pipes open.
    signal_group(pid, libc::SIGKILL);
    for reader in readers {
        let _ = reader.join();
    }
    let _ = writer.join();
    for chunk in out_rx.try_iter() {
        let _ = out.write_all(&chunk);
    }
    use std::os::unix::process::ExitStatusExt as _;
    let code = status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    let ending = match stopping {
        Some((_, ending)) => ending,
        None => Ending::Exited(code),
    };
    let note = match ending {
        Ending::TimedOut => Some(format!(
            "Process did not finish before {} timeout: sent SIGINT, then SIGKILL after the {} grace period\n",
            go_duration(timeout),
            go_duration(grace)
        )),
        Ending::Interrupted => Some("Process was interrupted: the pod is stopping\n".to_string()),
        Ending::Exited(_) => None,
    };
    if let Some(note) = note {
        if let Ok(mut f) = log.lock() {
            let _ = f.write_all(note.as_bytes());
        }
        let _ = out.write_all(note.as_bytes());
    }
    let recorded = match ending {
        Ending::Exited(code) => code,
        _ => {
            if code == 0 {
                1
            } else {
                code
            }
        }
    };
    Ok((ending, recorded))
}

/// The role.
/// The file the wrapper of `marker` holds locked while it lives.
pub fn alive_path(marker: &str) -> String {
    format!("{marker}.alive")
}

/// Takes the wrapper's lock (`flock`, released by the kernel when the process ends, however it
/// ends); None where it cannot be taken (the sidecar then waits for the marker alone).
fn hold_alive_lock(marker: &str) -> Option<std::fs::File> {
    use std::os::fd::AsRawFd;
    let file = std::fs::File::create(alive_path(marker)).ok()?;
    // SAFETY: flock on a descriptor this function owns.
    let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0;
    locked.then_some(file)
}

/// Whether the wrapper of `marker` ended without writing it: its lock file exists, nobody
/// holds it, and still no marker.
pub fn died_without_marker(marker: &str) -> bool {
    use std::os::fd::AsRawFd;
    if std::path::Path::new(marker).exists() {
        return false;
    }
    let Ok(file) = std::fs::OpenOptions::new()
        .read(true)
        .open(alive_path(marker))
    else {
        return false;
    };
    // SAFETY: flock on a descriptor this function owns; the lock goes with `file`.
    let free = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
    free && !std::path::Path::new(marker).exists()
}

pub fn run(copy_mode_only: bool) -> anyhow::Result<ExitCode> {
    let options: Option<EntrypointOptions> = if copy_mode_only {
        env_json(ENTRYPOINT_OPTIONS).ok()
    } else {
        Some(env_json(ENTRYPOINT_OPTIONS)?)
    };
    if copy_mode_only || options.as_ref().is_some_and(|o| o.copy_mode_only) {
        let dst = options
            .map(|o| o.copy_dst)
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| ENTRYPOINT_PATH.to_string());
        return copy_self(&dst);
    }
    let options = options.expect("read above");
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
    }
    let marker = &options.wrapper.marker_file;
    // Held until this process ends: a sidecar that finds it free with no marker knows the
    // wrapper died without writing one (the kernel's OOM killer can take it with the test).
    let _alive = hold_alive_lock(marker);
    let (ending, code) = match wrap(&options, &mut std::io::stdout()) {
        Ok(result) => result,
        Err(e) => {
            let message = format!("{e:#}");
            let _ = std::fs::write(&options.wrapper.process_log, format!("{message}\n"));
            let _ = std::fs::write(marker, INTERNAL_ERROR.to_string());
            termination_message(&message);
            return Err(e);
        }
    };
    std::fs::write(marker, code.to_string()).with_context(|| format!("writing {marker}"))?;
    match ending {
        Ending::TimedOut => termination_message(&format!(
            "timed out after {}: the test got SIGINT, then SIGKILL after the {} grace period",
            go_duration(Duration::from_nanos(options.timeout)),
            go_duration(Duration::from_nanos(options.grace_period))
        )),
        Ending::Interrupted => termination_message("interrupted: the pod was stopped"),
        Ending::Exited(0) => {}
        Ending::Exited(code) => termination_message(&format!("the test exited with code {code}")),
    }
    if options.always_zero {
        return Ok(ExitCode::SUCCESS);
    }
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_wrapper_that_died_without_its_marker_is_told_apart_from_a_living_one() {
        let dir = std::env::temp_dir().join(format!("prow-alive-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let marker = dir.join("marker-file.txt").to_string_lossy().into_owned();
        assert!(
            !died_without_marker(&marker),
            "no wrapper yet: nothing to tell"
        );
        let held = hold_alive_lock(&marker).expect("locked");
        assert!(!died_without_marker(&marker), "alive: its lock is held");
        drop(held);
        assert!(died_without_marker(&marker), "gone without a marker");
        std::fs::write(&marker, "137").unwrap();
        assert!(
            !died_without_marker(&marker),
            "a marker: it ended as wrappers do"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    use super::*;
    use prow_api::decorate::options::WrapperOptions;

    fn options(
        dir: &std::path::Path,
        script: &str,
        timeout: Duration,
        grace: Duration,
    ) -> EntrypointOptions {
        EntrypointOptions {
            timeout: timeout.as_nanos() as u64,
            grace_period: grace.as_nanos() as u64,
            artifact_dir: dir.join("artifacts").to_string_lossy().into_owned(),
            wrapper: WrapperOptions {
                args: vec!["sh".into(), "-c".into(), script.into()],
                process_log: dir.join("process-log.txt").to_string_lossy().into_owned(),
                marker_file: dir.join("marker-file.txt").to_string_lossy().into_owned(),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn tmp(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("entrypoint-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn the_tests_output_goes_to_the_log_and_its_code_is_kept() {
        let dir = tmp("code");
        let o = options(
            &dir,
            "echo out; echo err >&2; exit 3",
            Duration::from_secs(60),
            Duration::from_secs(1),
        );
        let mut out = Vec::new();
        let (ending, code) = wrap(&o, &mut out).expect("wrap");
        assert_eq!((ending, code), (Ending::Exited(3), 3));
        let log = std::fs::read_to_string(dir.join("process-log.txt")).unwrap();
        assert!(log.contains("out\n") && log.contains("err\n"), "{log}");
        assert_eq!(String::from_utf8(out).unwrap().len(), log.len());
        assert!(dir.join("artifacts").is_dir());
    }

    #[test]
    fn a_test_past_its_timeout_gets_sigint_then_sigkill_after_the_grace_period() {
        let dir = tmp("timeout");
        let trapped = dir.join("trapped");
        // Traps SIGINT, writes a file, then ignores further signals: only SIGKILL ends it.
        let script = format!(
            "trap 'echo trapped > {}; trap \"\" INT; while :; do sleep 1; done' INT; echo started; while :; do sleep 0.1; done",
            trapped.display()
        );
        let o = options(
            &dir,
            &script,
            Duration::from_millis(500),
            Duration::from_millis(700),
        );
        let started = Instant::now();
        let (ending, code) = wrap(&o, &mut Vec::new()).expect("wrap");
        let took = started.elapsed();
        assert_eq!(ending, Ending::TimedOut);
        assert_ne!(code, 0);
        assert!(trapped.exists(), "the script's SIGINT trap ran");
        assert!(
            took >= Duration::from_millis(1200),
            "killed only after the grace period: {took:?}"
        );
        let log = std::fs::read_to_string(dir.join("process-log.txt")).unwrap();
        assert!(
            log.contains("started") && log.contains("did not finish before"),
            "{log}"
        );
    }

    #[test]
    fn the_test_is_the_one_the_kernel_kills_when_memory_runs_out() {
        let dir = tmp("oom");
        let o = options(
            &dir,
            "cat /proc/self/oom_score_adj",
            Duration::from_secs(5),
            Duration::from_secs(1),
        );
        let mut out = Vec::new();
        wrap(&o, &mut out).expect("wrap");
        assert_eq!(String::from_utf8(out).unwrap().trim(), "1000");
    }

    #[test]
    fn a_command_that_does_not_exist_is_an_error_naming_it() {
        let dir = tmp("missing");
        let mut o = options(&dir, "", Duration::from_secs(5), Duration::from_secs(1));
        o.wrapper.args = vec!["/no/such/test".into()];
        let e = wrap(&o, &mut Vec::new()).expect_err("no program");
        assert!(format!("{e:#}").contains("/no/such/test"), "{e:#}");
    }
}
