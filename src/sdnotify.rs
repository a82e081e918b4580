//! systemd's readiness protocol (sd_notify(3)) without libsystemd: datagrams such as `READY=1`
//! sent to the Unix socket named by `$NOTIFY_SOCKET` (a path, or `@name` for the abstract
//! namespace), and the watchdog interval from `$WATCHDOG_USEC` (for this process when
//! `$WATCHDOG_PID` names it or is unset). Owns that socket; knows nothing of DHCP or DNS.
//! Without `$NOTIFY_SOCKET` (not started by systemd) every call does nothing.

use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

use tracing::{debug, warn};

/// Where to send state changes, if anywhere.
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
}

impl Notifier {
    /// From `$NOTIFY_SOCKET`. A socket that cannot be reached is logged once and ignored:
    /// readiness reporting must never stop the daemon.
    pub fn from_env() -> Notifier {
        let Some(name) = std::env::var_os("NOTIFY_SOCKET") else {
            return Notifier { target: None };
        };
        let target = match open(&name.to_string_lossy()) {
            Ok(target) => Some(target),
            Err(e) => {
                warn!("NOTIFY_SOCKET {name:?}: {e}; not reporting to systemd");
                None
            }
        };
        Notifier { target }
    }

    /// Send one state datagram (e.g. "READY=1\nSTATUS=..."); errors are logged, not returned.
    pub fn notify(&self, state: &str) {
        let Some((sock, addr)) = &self.target else {
            return;
        };
        match sock.send_to_addr(state.as_bytes(), addr) {
            Ok(_) => debug!(state = %state.replace('\n', " "), "sd_notify"),
            Err(e) => warn!("sd_notify {state:?}: {e}"),
        }
    }

    /// `READY=1` with a status line.
    pub fn ready(&self, status: &str) {
        self.notify(&format!("READY=1\nSTATUS={status}"));
    }

    /// `RELOADING=1` with the monotonic time systemd needs for `Type=notify-reload`.
    pub fn reloading(&self) {
        let usec = monotonic_usec();
        self.notify(&format!("RELOADING=1\nMONOTONIC_USEC={usec}"));
    }

    pub fn stopping(&self) {
        self.notify("STOPPING=1");
    }

    pub fn watchdog(&self) {
        self.notify("WATCHDOG=1");
    }

    /// How often to send `WATCHDOG=1`: half of `$WATCHDOG_USEC`, when the watchdog is on and
    /// meant for this process.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.target.as_ref()?;
        let pid = std::env::var("WATCHDOG_PID").ok();
        let usec = std::env::var("WATCHDOG_USEC").ok();
        watchdog_interval(pid.as_deref(), usec.as_deref(), std::process::id())
    }
}

/// The watchdog rule: `usec` must be a positive integer, and `pid` (when set) our own pid.
fn watchdog_interval(pid: Option<&str>, usec: Option<&str>, me: u32) -> Option<Duration> {
    if let Some(pid) = pid
        && pid.parse::<u32>().ok() != Some(me)
    {
        return None;
    }
    let usec: u64 = usec?.parse().ok().filter(|u| *u > 0)?;
    Some(Duration::from_micros(usec / 2))
}

/// An unbound datagram socket and the address of `$NOTIFY_SOCKET`.
fn open(name: &str) -> io::Result<(UnixDatagram, SocketAddr)> {
    let addr = match name.strip_prefix('@') {
        Some(abstract_name) => SocketAddr::from_abstract_name(abstract_name.as_bytes())?,
        None if name.starts_with('/') => SocketAddr::from_pathname(name)?,
        None => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "neither an absolute path nor @abstract",
            ));
        }
    };
    Ok((UnixDatagram::unbound()?, addr))
}

/// CLOCK_MONOTONIC in microseconds.
fn monotonic_usec() -> u64 {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC);
    t.map(|t| (t.tv_sec() as u64) * 1_000_000 + (t.tv_nsec() as u64) / 1_000)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchdog_interval_is_half_the_period_and_only_for_us() {
        assert_eq!(
            watchdog_interval(None, Some("2000000"), 7),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            watchdog_interval(Some("7"), Some("300000"), 7),
            Some(Duration::from_millis(150))
        );
        assert_eq!(watchdog_interval(Some("8"), Some("300000"), 7), None);
        assert_eq!(watchdog_interval(None, Some("0"), 7), None);
        assert_eq!(watchdog_interval(None, Some("soon"), 7), None);
        assert_eq!(watchdog_interval(None, None, 7), None);
    }

    #[test]
    fn states_arrive_on_a_path_socket_and_an_abstract_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify");
        let server = UnixDatagram::bind(&path).expect("bind");
        let n = Notifier {
            target: Some(open(path.to_str().expect("utf-8")).expect("open")),
        };
        n.ready("serving");
        n.reloading();
        let mut buf = [0u8; 256];
        let len = server.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..len], b"READY=1\nSTATUS=serving");
        let len = server.recv(&mut buf).expect("recv");
        let text = std::str::from_utf8(&buf[..len]).expect("utf-8");
        assert!(text.starts_with("RELOADING=1\nMONOTONIC_USEC="), "{text}");

        let name = format!("leasedns-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).expect("addr");
        let server = UnixDatagram::bind_addr(&addr).expect("bind abstract");
        let n = Notifier {
            target: Some(open(&format!("@{name}")).expect("open")),
        };
        n.stopping();
        let len = server.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..len], b"STOPPING=1");
        assert!(open("relative/path").is_err());
    }
}
