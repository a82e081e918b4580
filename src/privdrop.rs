//! Least privilege: the `user` and `group` config keys, and the drop from root to them at
//! start. While still root and before any other thread exists, `drop_privileges` binds every
//! socket on a fixed port (DHCP, DNS, HTTP: `take_*` hand them to the code that would otherwise
//! bind them), makes the lease files and their directory the user's (mode 0640 at most), then
//! switches uid, gid and groups and keeps only the capabilities still needed: CAP_NET_ADMIN for
//! the ARP entries of direct replies (`net`), CAP_NET_RAW when `ping_check` is on (a raw ICMP
//! socket per check). Nothing rebinds later (a reload keeps ports and addresses), so
//! CAP_NET_BIND_SERVICE goes. Threads started afterwards (the runtime, the DHCP thread)
//! inherit these credentials, so every thread ends with the same ones. No protocol logic.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use caps::{CapSet, Capability, CapsHashSet};
use nix::unistd::{Gid, Uid, User};
use socket2::{Domain, Protocol, Socket, Type};
use tracing::{info, warn};

use crate::config::{Config, RunAs};
use crate::net::DhcpSocket;

/// The user taken when the config names none, if it exists.
pub const DEFAULT_USER: &str = "leasedns";

/// Why the drop failed. Each names the step and the system's answer.
#[derive(Debug, thiserror::Error)]
pub enum DropError {
    #[error("user {0}: cannot read the account: {1}")]
    Account(String, String),
    #[error("dropping privileges needs a single thread, found {0}")]
    Threads(usize),
    #[error("binding {what} {addr} before dropping privileges: {source}")]
    Bind {
        what: &'static str,
        addr: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    State { path: PathBuf, message: String },
    #[error("{step}: {message}")]
    Switch { step: &'static str, message: String },
}

/// The account to switch to, resolved at start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

/// Who to become: the configured user, else `DEFAULT_USER` if it exists. None: stay as we
/// are (root by choice with `user = "root"`, or no such default user).
pub fn target(run_as: &RunAs) -> Result<Option<Target>, DropError> {
    let (name, user) = match &run_as.user {
        Some((name, _)) => (name.clone(), lookup(name)?),
        None => match lookup(DEFAULT_USER) {
            Ok(user) => (DEFAULT_USER.to_string(), user),
            Err(_) => return Ok(None),
        },
    };
    if user.uid.is_root() {
        return Ok(None);
    }
    let gid = run_as.group.as_ref().map_or(user.gid.as_raw(), |g| g.1);
    Ok(Some(Target {
        name,
        uid: user.uid.as_raw(),
        gid,
    }))
}

fn lookup(name: &str) -> Result<User, DropError> {
    match User::from_name(name) {
        Ok(Some(u)) => Ok(u),
        Ok(None) => Err(DropError::Account(name.into(), "no such user".into())),
        Err(e) => Err(DropError::Account(name.into(), e.to_string())),
    }
}

/// The capabilities kept after the drop: CAP_NET_ADMIN with `arp_entries` (ARP entries for
/// direct replies are written whenever a local client without an address asks) and CAP_NET_RAW
/// with the ping check; none without either.
pub fn kept_capabilities(cfg: &Config) -> CapsHashSet {
    let mut keep = HashSet::new();
    if cfg.start.arp_entries {
        keep.insert(Capability::CAP_NET_ADMIN);
    }
    if cfg.dhcp.ping_check {
        keep.insert(Capability::CAP_NET_RAW);
    }
    keep
}

/// At start, before the runtime. As root with a target user: bind the fixed-port sockets,
/// hand the state files to the user and switch to it. Not root but with capabilities (systemd's
/// `AmbientCapabilities=`): bind, then keep only the capabilities still needed. Returns who we
/// became (None: the ids did not change; one warning when that means staying root).
pub fn drop_privileges(cfg: &Config) -> Result<Option<Target>, DropError> {
    let target = target(&cfg.start.run_as)?;
    if !Uid::effective().is_root() {
        if let Some(t) = target.filter(|t| t.uid != Uid::effective().as_raw())
            && cfg.start.run_as.user.is_some()
        {
            let message = format!(
                "not root (uid {}): cannot become {}",
                Uid::effective(),
                t.name
            );
            return Err(DropError::Switch {
                step: "user",
                message,
            });
        }
        trim(cfg)?;
        return Ok(None);
    }
    let Some(target) = target else {
        if cfg.start.run_as.user.is_none() {
            warn!(
                "running as root: no user `{DEFAULT_USER}` exists (create it, or set `user` in {})",
                cfg.path.display()
            );
        }
        return Ok(None);
    };
    single_thread()?;
    prebind(cfg)?;
    for path in state_files(cfg) {
        hand_over(&path, &target)?;
    }
    let keep = kept_capabilities(cfg);
    switch(&target, &keep)?;
    info!(user = %target.name, uid = target.uid, gid = target.gid, capabilities = %names(&keep),
        "dropped privileges");
    Ok(Some(target))
}

/// Not root: if we hold capabilities, bind the fixed ports with them, then keep only those
/// still needed (of those we have); nothing ambient or inheritable, no_new_privs.
fn trim(cfg: &Config) -> Result<(), DropError> {
    let fail = |step: &'static str| {
        move |e: caps::errors::CapsError| DropError::Switch {
            step,
            message: e.to_string(),
        }
    };
    let permitted = caps::read(None, CapSet::Permitted).map_err(fail("capget"))?;
    if permitted.is_empty() {
        return Ok(());
    }
    single_thread()?;
    prebind(cfg)?;
    let keep: CapsHashSet = kept_capabilities(cfg)
        .intersection(&permitted)
        .copied()
        .collect();
    caps::clear(None, CapSet::Ambient).map_err(fail("ambient"))?;
    caps::set(None, CapSet::Effective, &keep).map_err(fail("capset effective"))?;
    caps::set(None, CapSet::Permitted, &keep).map_err(fail("capset permitted"))?;
    caps::clear(None, CapSet::Inheritable).map_err(fail("capset inheritable"))?;
    nix::sys::prctl::set_no_new_privs().map_err(|e| DropError::Switch {
        step: "no_new_privs",
        message: e.to_string(),
    })?;
    info!(capabilities = %names(&keep), "bound; dropped the capabilities no longer needed");
    Ok(())
}

fn names(set: &CapsHashSet) -> String {
    let mut names: Vec<String> = set.iter().map(|c| c.to_string()).collect();
    names.sort();
    names.join(",")
}

/// Capabilities are per thread: the change must happen while this is the only one.
fn single_thread() -> Result<(), DropError> {
    match thread_count() {
        1 => Ok(()),
        n => Err(DropError::Threads(n)),
    }
}

/// The threads of this process (from /proc/self/status; 0 if unreadable).
fn thread_count() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// setgroups, setresgid, setresuid with KEEPCAPS, then exactly `keep` as permitted and
/// effective; inheritable and ambient empty (we never exec), the bounding set cut to `keep`,
/// no_new_privs set.
fn switch(target: &Target, keep: &CapsHashSet) -> Result<(), DropError> {
    let fail = |step: &'static str| {
        move |e: &dyn std::fmt::Display| DropError::Switch {
            step,
            message: e.to_string(),
        }
    };
    nix::sys::prctl::set_keepcaps(true).map_err(|e| fail("keepcaps")(&e))?;
    // Only the capabilities this kernel knows: dropping an unknown one fails.
    for cap in caps::runtime::thread_all_supported().difference(keep) {
        caps::drop(None, CapSet::Bounding, *cap).map_err(|e| fail("bounding set")(&e))?;
    }
    let (uid, gid) = (Uid::from_raw(target.uid), Gid::from_raw(target.gid));
    nix::unistd::setgroups(&[gid]).map_err(|e| fail("setgroups")(&e))?;
    nix::unistd::setresgid(gid, gid, gid).map_err(|e| fail("setresgid")(&e))?;
    nix::unistd::setresuid(uid, uid, uid).map_err(|e| fail("setresuid")(&e))?;
    caps::set(None, CapSet::Permitted, keep).map_err(|e| fail("capset permitted")(&e))?;
    caps::set(None, CapSet::Effective, keep).map_err(|e| fail("capset effective")(&e))?;
    caps::clear(None, CapSet::Inheritable).map_err(|e| fail("capset inheritable")(&e))?;
    caps::clear(None, CapSet::Ambient).map_err(|e| fail("ambient")(&e))?;
    nix::sys::prctl::set_keepcaps(false).map_err(|e| fail("keepcaps")(&e))?;
    nix::sys::prctl::set_no_new_privs().map_err(|e| fail("no_new_privs")(&e))?;
    let ids = nix::unistd::getresuid().map_err(|e| fail("getresuid")(&e))?;
    let permitted = caps::read(None, CapSet::Permitted).map_err(|e| fail("capget")(&e))?;
    if [ids.real, ids.effective, ids.saved] != [uid; 3] || &permitted != keep {
        let message = format!("ended as {ids:?} with {permitted:?}");
        return Err(DropError::Switch {
            step: "verify",
            message,
        });
    }
    Ok(())
}

/// Sockets bound before the drop, each waiting for the code that would otherwise bind it. A
/// process-wide list because that code (the DHCP service, `DnsServer`, `HttpServer`) runs after
/// the drop inside the runtime; a Mutex because those binds run on runtime threads. Only start
/// touches it: each entry is taken once.
static PREBOUND: Mutex<Vec<Prebound>> = Mutex::new(Vec::new());

enum Prebound {
    Dhcp(u16, DhcpSocket),
    Udp(SocketAddr, std::net::UdpSocket),
    Tcp(SocketAddr, std::net::TcpListener),
}

/// Bind the DHCP port, every DNS listen address (UDP and TCP) and every HTTP listen address
/// that names a port (port 0 needs no privilege and is bound later as usual).
fn prebind(cfg: &Config) -> Result<(), DropError> {
    let mut list = Vec::new();
    let dhcp = DhcpSocket::bind(cfg.start.dhcp_port).map_err(|source| DropError::Bind {
        what: "DHCP port",
        addr: cfg.start.dhcp_port.to_string(),
        source,
    })?;
    list.push(Prebound::Dhcp(cfg.start.dhcp_port, dhcp));
    let fixed = |a: &&SocketAddr| a.port() != 0;
    for addr in cfg.start.dns.listen.iter().filter(fixed) {
        list.push(Prebound::Udp(
            *addr,
            bind(*addr, Type::DGRAM, "DNS udp")?.into(),
        ));
        list.push(Prebound::Tcp(
            *addr,
            bind(*addr, Type::STREAM, "DNS tcp")?.into(),
        ));
    }
    for addr in cfg.start.dns.http.listen.iter().filter(fixed) {
        list.push(Prebound::Tcp(
            *addr,
            bind(*addr, Type::STREAM, "HTTP")?.into(),
        ));
    }
    PREBOUND
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .extend(list);
    Ok(())
}

/// A non-blocking socket bound to `addr` as tokio's `bind` would make it (TCP: SO_REUSEADDR,
/// listening with a backlog of 1024).
fn bind(addr: SocketAddr, ty: Type, what: &'static str) -> Result<Socket, DropError> {
    let err = |source| DropError::Bind {
        what,
        addr: addr.to_string(),
        source,
    };
    let proto = if ty == Type::STREAM {
        Protocol::TCP
    } else {
        Protocol::UDP
    };
    let s = Socket::new(Domain::for_address(addr), ty, Some(proto)).map_err(err)?;
    if ty == Type::STREAM {
        s.set_reuse_address(true).map_err(err)?;
    }
    s.bind(&addr.into()).map_err(err)?;
    if ty == Type::STREAM {
        s.listen(1024).map_err(err)?;
    }
    s.set_nonblocking(true).map_err(err)?;
    Ok(s)
}

fn take<T>(pick: impl Fn(&Prebound) -> bool, get: impl FnOnce(Prebound) -> Option<T>) -> Option<T> {
    let mut list = PREBOUND
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let at = list.iter().position(pick)?;
    get(list.remove(at))
}

/// The DHCP socket bound before the drop, if any.
pub fn take_dhcp(port: u16) -> Option<DhcpSocket> {
    take(
        |p| matches!(p, Prebound::Dhcp(at, _) if *at == port),
        |p| match p {
            Prebound::Dhcp(_, s) => Some(s),
            _ => None,
        },
    )
}

/// The UDP socket bound to `addr` before the drop, if any.
pub fn take_udp(addr: SocketAddr) -> Option<std::net::UdpSocket> {
    take(
        |p| matches!(p, Prebound::Udp(at, _) if *at == addr),
        |p| match p {
            Prebound::Udp(_, s) => Some(s),
            _ => None,
        },
    )
}

/// The TCP listener bound to `addr` before the drop, if any.
pub fn take_tcp(addr: SocketAddr) -> Option<std::net::TcpListener> {
    take(
        |p| matches!(p, Prebound::Tcp(at, _) if *at == addr),
        |p| match p {
            Prebound::Tcp(_, s) => Some(s),
            _ => None,
        },
    )
}

/// The files leasedns writes: the lease journal, the DNS update journal, the DDNS queue.
/// Their snapshots and temporaries share these names as prefixes.
fn state_files(cfg: &Config) -> Vec<PathBuf> {
    let mut files = vec![cfg.start.lease_file.clone()];
    files.push(cfg.start.dns.update_journal.clone());
    if !cfg.start.ddns.zones.is_empty() {
        files.push(cfg.start.ddns.queue_file.clone());
    }
    files
}

/// Make `path`'s directory writable by the user and every existing file named `path*` in it
/// the user's, mode 0640 at most. Symbolic links are refused, never followed. The directory is
/// changed only when it holds nothing but such files and is not shared (world-writable).
fn hand_over(path: &Path, target: &Target) -> Result<(), DropError> {
    let state = |p: &Path, message: String| DropError::State {
        path: p.to_path_buf(),
        message,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let prefix = path.file_name().unwrap_or_default().to_string_lossy();
    if std::fs::symlink_metadata(&dir).is_err() {
        // The journal would create it: create it here, the user's (its parent must exist).
        std::fs::create_dir(&dir).map_err(|e| state(&dir, format!("creating: {e}")))?;
        let meta = std::fs::symlink_metadata(&dir).map_err(|e| state(&dir, e.to_string()))?;
        return own(&dir, &meta, target, 0o750);
    }
    let entries = std::fs::read_dir(&dir).map_err(|e| state(&dir, e.to_string()))?;
    let mut only_ours = true;
    for entry in entries {
        let entry = entry.map_err(|e| state(&dir, e.to_string()))?;
        let name = entry.file_name();
        if !name.to_string_lossy().starts_with(prefix.as_ref()) {
            only_ours = false;
            continue;
        }
        let file = entry.path();
        let meta = std::fs::symlink_metadata(&file).map_err(|e| state(&file, e.to_string()))?;
        if meta.file_type().is_symlink() {
            return Err(state(
                &file,
                "is a symbolic link; refusing to hand it over".into(),
            ));
        }
        own(&file, &meta, target, 0o640)?;
    }
    let meta = std::fs::symlink_metadata(&dir).map_err(|e| state(&dir, e.to_string()))?;
    if writable_by(&meta, target) {
        return Ok(());
    }
    if !only_ours || meta.mode() & 0o002 != 0 || meta.file_type().is_symlink() {
        let message = format!(
            "directory not writable by user {} and holds other files: give the lease files \
             a directory of their own owned by {0} (e.g. /var/lib/leasedns)",
            target.name
        );
        return Err(state(&dir, message));
    }
    own(&dir, &meta, target, 0o750)
}

/// chown to the target (without following links) and clear mode bits outside `max`.
fn own(path: &Path, meta: &std::fs::Metadata, target: &Target, max: u32) -> Result<(), DropError> {
    let state = |message: String| DropError::State {
        path: path.to_path_buf(),
        message,
    };
    std::os::unix::fs::lchown(path, Some(target.uid), Some(target.gid))
        .map_err(|e| state(format!("chown to {}: {e}", target.name)))?;
    let mode = meta.mode() & 0o7777;
    if mode & !max != 0 {
        use std::os::unix::fs::PermissionsExt;
        let perms = std::fs::Permissions::from_mode(mode & max);
        std::fs::set_permissions(path, perms).map_err(|e| state(format!("chmod: {e}")))?;
    }
    Ok(())
}

/// Whether the target can create files in a directory with this owner and mode.
fn writable_by(meta: &std::fs::Metadata, target: &Target) -> bool {
    let mode = meta.mode();
    (meta.uid() == target.uid && mode & 0o300 == 0o300)
        || (meta.gid() == target.gid && mode & 0o030 == 0o030)
        || mode & 0o003 == 0o003
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(extra: &str) -> String {
        format!(
            "domain = \"lan\"\nlease_file = \"/tmp/x\"\n{extra}\n[[subnet]]\n\
             network = \"10.0.0.0/24\"\npool_start = \"10.0.0.10\"\npool_end = \"10.0.0.20\"\n"
        )
    }

    fn cfg(extra: &str) -> Config {
        Config::parse(&text(extra), Path::new("t.toml")).expect("valid")
    }

    #[test]
    fn user_and_group_resolve_and_unknown_names_are_config_errors() {
        let c = cfg("user = \"root\"\ngroup = \"root\"");
        assert_eq!(c.start.run_as.user, Some(("root".into(), 0)));
        assert_eq!(c.start.run_as.group, Some(("root".into(), 0)));
        assert_eq!(
            target(&c.start.run_as).expect("resolves"),
            None,
            "root means no drop"
        );
        let bad = text("user = \"no-such-user-ld\"");
        let err = Config::parse(&bad, Path::new("t.toml")).expect_err("unknown user");
        assert_eq!(
            err.to_string(),
            "t.toml:3: user = \"no-such-user-ld\": no such user"
        );
        let bad = text("group = \"no-such-group-ld\"");
        let err = Config::parse(&bad, Path::new("t.toml")).expect_err("unknown group");
        assert_eq!(
            err.to_string(),
            "t.toml:3: group = \"no-such-group-ld\": no such group"
        );
    }

    #[test]
    fn the_ping_check_keeps_net_raw_arp_entries_keep_net_admin_and_neither_keeps_none() {
        let plain = kept_capabilities(&cfg(""));
        assert_eq!(plain, HashSet::from([Capability::CAP_NET_ADMIN]));
        let ping = kept_capabilities(&cfg("ping_check = true"));
        assert_eq!(
            ping,
            HashSet::from([Capability::CAP_NET_ADMIN, Capability::CAP_NET_RAW])
        );
        let broadcast = kept_capabilities(&cfg("arp_entries = false"));
        assert_eq!(broadcast, HashSet::new());
        let ping_only = kept_capabilities(&cfg("arp_entries = false\nping_check = true"));
        assert_eq!(ping_only, HashSet::from([Capability::CAP_NET_RAW]));
    }

    #[test]
    fn prebound_sockets_are_taken_once_by_address() {
        let addr: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        let s = bind(addr, Type::STREAM, "test").expect("bind");
        let real = s.local_addr().expect("addr").as_socket().expect("inet");
        PREBOUND
            .lock()
            .expect("lock")
            .push(Prebound::Tcp(real, s.into()));
        assert!(
            take_udp(real).is_none(),
            "a TCP listener is not a UDP socket"
        );
        let got = take_tcp(real).expect("taken");
        assert_eq!(got.local_addr().expect("addr"), real);
        assert!(take_tcp(real).is_none(), "taken once");
    }

    #[test]
    fn a_shared_directory_is_refused_and_a_dedicated_one_is_handed_over() {
        let me = Target {
            name: "me".into(),
            uid: Uid::effective().as_raw(),
            gid: Gid::effective().as_raw(),
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let lease = dir.path().join("leases.journal");
        std::fs::write(&lease, b"x").expect("write");
        std::fs::write(dir.path().join("leases.journal.snapshot"), b"x").expect("write");
        use std::os::unix::fs::PermissionsExt;
        let loose = std::fs::Permissions::from_mode(0o644);
        std::fs::set_permissions(&lease, loose).expect("chmod");
        hand_over(&lease, &me).expect("ours");
        let mode = std::fs::metadata(&lease).expect("stat").mode() & 0o777;
        assert_eq!(mode, 0o640, "others lose read");
        let link = dir.path().join("leases.journal.tmp");
        std::os::unix::fs::symlink("/etc/passwd", &link).expect("symlink");
        let err = hand_over(&lease, &me).expect_err("link refused");
        assert!(err.to_string().contains("symbolic link"), "{err}");
        // A missing directory is created (one level), 0750.
        let fresh = dir.path().join("state");
        hand_over(&fresh.join("leases.journal"), &me).expect("created");
        let mode = std::fs::metadata(&fresh).expect("stat").mode() & 0o777;
        assert_eq!(mode & !0o750, 0, "mode {mode:o}");
        let deep = dir.path().join("a/b/leases.journal");
        assert!(hand_over(&deep, &me).is_err(), "two levels missing");
    }
}
