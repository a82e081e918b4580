//! Running commands with timeouts and long-running daemons with captured logs; knows nothing about
//! namespaces or DHCP. Every wait here is bounded, so a hang fails fast instead of stalling tests.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// What a finished command printed and how it ended.
#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// stdout and stderr together, for messages and for searching.
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// Runs `cmd` to completion, killing it (and failing) after `timeout`. Output goes through
/// anonymous files, not pipes, so a daemon that keeps a descriptor open cannot block us.
pub fn run(cmd: &mut Command, timeout: Duration) -> Result<Output> {
    let mut out = tempfile::tempfile()?;
    let mut err = tempfile::tempfile()?;
    let desc = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(err.try_clone()?)
        .spawn()
        .with_context(|| format!("spawning {desc}"))?;
    let status = match wait_timeout(&mut child, timeout)? {
        Some(status) => status,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "{desc} did not finish within {timeout:?}: {}",
                read_back(&mut out, &mut err)
            );
        }
    };
    Ok(Output {
        status,
        stdout: read_file(&mut out)?,
        stderr: read_file(&mut err)?,
    })
}

/// Like `run`, but a non-zero exit is an error carrying the command's output.
pub fn run_ok(cmd: &mut Command, timeout: Duration) -> Result<Output> {
    let desc = format!("{cmd:?}");
    let output = run(cmd, timeout)?;
    if !output.status.success() {
        bail!("{desc} failed ({}): {}", output.status, output.all());
    }
    Ok(output)
}

fn read_file(f: &mut File) -> Result<String> {
    let mut s = String::new();
    f.seek(SeekFrom::Start(0))?;
    f.read_to_string(&mut s)?;
    Ok(s)
}

fn read_back(out: &mut File, err: &mut File) -> String {
    format!(
        "{}{}",
        read_file(out).unwrap_or_default(),
        read_file(err).unwrap_or_default()
    )
}

/// Waits for `child` up to `timeout`; `None` if it is still running.
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Result<Option<ExitStatus>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        sleep(Duration::from_millis(20));
    }
}

/// Polls `check` until it returns `Some`, or fails after `timeout` with the last error seen.
pub fn poll<T>(timeout: Duration, mut check: impl FnMut() -> Result<Option<T>>) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        let last = check();
        match last {
            Ok(Some(v)) => return Ok(v),
            Ok(None) if Instant::now() >= deadline => bail!("condition not met within {timeout:?}"),
            Err(e) if Instant::now() >= deadline => {
                return Err(e.context(format!("condition not met within {timeout:?}")));
            }
            _ => sleep(Duration::from_millis(100)),
        }
    }
}

/// Sends `sig` to one process we started.
pub fn signal(pid: u32, sig: Signal) -> Result<()> {
    let raw = i32::try_from(pid).map_err(|_| anyhow!("pid {pid} out of range"))?;
    kill(Pid::from_raw(raw), sig).with_context(|| format!("sending {sig} to {pid}"))
}

/// A long-running process with stdout and stderr appended to a log file.
pub struct Daemon {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Daemon {
    /// Starts `cmd` (already fully built, e.g. `ip netns exec NS prog ...`) logging to `log`.
    pub fn spawn(name: &str, cmd: &mut Command, log: &Path) -> Result<Daemon> {
        let file = OpenOptions::new().create(true).append(true).open(log)?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("spawning {name}: {cmd:?}"))?;
        Ok(Daemon {
            name: name.to_string(),
            child: Some(child),
            log: log.to_path_buf(),
        })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Everything the daemon logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log contains `needle`; fails (with the log) if the process exits first
    /// or `timeout` passes.
    pub fn wait_for_log(&mut self, needle: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.log().contains(needle) {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                self.child = None;
                bail!(
                    "{} exited ({status}) before logging {needle:?}; log:\n{}",
                    self.name,
                    self.log()
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} did not log {needle:?} within {timeout:?}; log:\n{}",
                    self.name,
                    self.log()
                );
            }
            sleep(Duration::from_millis(50));
        }
    }

    /// Fails (with the log) if the process has exited.
    pub fn check_running(&mut self) -> Result<()> {
        match self.child.as_mut().map(Child::try_wait).transpose()? {
            Some(None) => Ok(()),
            Some(Some(status)) => bail!("{} exited ({status}); log:\n{}", self.name, self.log()),
            None => bail!("{} is not running", self.name),
        }
    }

    /// Sends `sig`; the process must still be running.
    pub fn signal(&self, sig: Signal) -> Result<()> {
        let pid = self
            .pid()
            .ok_or_else(|| anyhow!("{} is not running", self.name))?;
        signal(pid, sig)
    }

    /// SIGKILL and wait for the exit.
    pub fn kill(&mut self) -> Result<ExitStatus> {
        let Some(mut child) = self.child.take() else {
            bail!("{} is not running", self.name);
        };
        signal(child.id(), Signal::SIGKILL)?;
        Ok(child.wait()?)
    }

    /// SIGTERM, then waits up to `timeout` for the exit (SIGKILL after that, and an error).
    pub fn terminate(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let Some(mut child) = self.child.take() else {
            bail!("{} is not running", self.name);
        };
        signal(child.id(), Signal::SIGTERM)?;
        match wait_timeout(&mut child, timeout)? {
            Some(status) => Ok(status),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "{} ignored SIGTERM for {timeout:?}; log:\n{}",
                    self.name,
                    self.log()
                )
            }
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
