//! The `Lan` guard: a bridge namespace, a server namespace and client namespaces joined by veth
//! pairs created directly inside the namespaces. Owns their teardown (processes, namespaces,
//! /etc/netns files); must never create anything in, or change, the host's own namespace.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use nix::sys::signal::Signal;

use crate::proc::{run, run_ok, signal};

/// The interface name inside every host namespace (server and clients).
pub const IFACE: &str = "eth0";
/// Timeout for one `ip` or `sysctl` invocation.
const CMD: Duration = Duration::from_secs(10);

static SEQ: AtomicU32 = AtomicU32::new(0);

/// One namespace on the LAN with its interface `eth0`.
#[derive(Clone, Debug)]
pub struct Host {
    pub ns: String,
    pub mac: String,
}

impl Host {
    /// `ip netns exec NS program` (arguments still to add).
    pub fn exec(&self, program: &str) -> Command {
        netns_exec(&self.ns, program)
    }

    /// Adds a static `ip/24` on `eth0` (e.g. to run another server on the LAN).
    pub fn add_addr(&self, address: Ipv4Addr) -> Result<()> {
        let addr = format!("{address}/24");
        ip(&["-n", &self.ns, "addr", "add", &addr, "dev", IFACE])
    }

    /// The IPv4 address on `eth0`, if any.
    pub fn ipv4(&self) -> Result<Option<Ipv4Addr>> {
        let out = run_ok(
            Command::new("ip").args(["-n", &self.ns, "-4", "-o", "addr", "show", "dev", IFACE]),
            CMD,
        )?;
        Ok(parse_inet(&out.stdout))
    }
}

/// `ip netns exec NS program`.
pub fn netns_exec(ns: &str, program: &str) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns, program]);
    cmd
}

/// The first `inet A.B.C.D/N` address in `ip -o addr` output.
fn parse_inet(text: &str) -> Option<Ipv4Addr> {
    let mut words = text.split_whitespace();
    while let Some(w) = words.next() {
        if w == "inet" {
            return words.next()?.split('/').next()?.parse().ok();
        }
    }
    None
}

/// A LAN of namespaces for one test; dropping it tears everything down, even after a panic.
pub struct Lan {
    /// Unique prefix of every namespace name, `ld<id><suffix>`.
    pub name: String,
    /// The third-from-last octet selector: the LAN is 10.(50+index).0.0/24.
    pub index: u8,
    pub bridge_ns: String,
    pub server: Host,
    /// A host with the static address .2, to ask DNS from when clients have no address.
    pub probe: Host,
    pub clients: Vec<Host>,
    /// Scratch directory for configs, leases, logs and scripts (removed on drop).
    pub dir: tempfile::TempDir,
    /// Namespaces created so far, in creation order.
    created: Vec<String>,
    /// `/etc/netns/<ns>` directories written so far.
    etc_dirs: Vec<PathBuf>,
}

impl Lan {
    /// Builds the LAN `10.(50+index).0.0/24` with `clients` client namespaces; `id` is a short
    /// test tag (2-3 letters). The server's interface has `.1`.
    pub fn new(id: &str, index: u8, clients: usize) -> Result<Lan> {
        require_root()?;
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let name = format!("ld{id}{}{seq}", std::process::id() % 100_000);
        let dir = tempfile::Builder::new()
            .prefix(&format!("{name}-"))
            .tempdir()?;
        let host = |role: String, n: u8| Host {
            ns: format!("{name}-{role}"),
            mac: format!("02:1d:00:{:02x}:00:{n:02x}", index),
        };
        let mut lan = Lan {
            bridge_ns: format!("{name}-br"),
            server: host("srv".to_string(), 1),
            probe: host("probe".to_string(), 2),
            clients: (0..clients)
                .map(|i| host(format!("c{i}"), 0x10 + i as u8))
                .collect(),
            name,
            index,
            dir,
            created: Vec::new(),
            etc_dirs: Vec::new(),
        };
        lan.build()
            .with_context(|| format!("building LAN {}", lan.name))?;
        Ok(lan)
    }

    fn build(&mut self) -> Result<()> {
        let bridge = self.bridge_ns.clone();
        self.add_ns(&bridge)?;
        ip(&[
            "-n",
            &bridge,
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "forward_delay",
            "0",
        ])?;
        ip(&["-n", &bridge, "link", "set", "br0", "up"])?;
        let hosts: Vec<Host> = [self.server.clone(), self.probe.clone()]
            .into_iter()
            .chain(self.clients.clone())
            .collect();
        for (i, h) in hosts.iter().enumerate() {
            self.add_ns(&h.ns)?;
            let port = format!("p{i}");
            // Both ends are created inside their namespaces: nothing appears on the host.
            ip(&[
                "link", "add", IFACE, "address", &h.mac, "netns", &h.ns, "type", "veth", "peer",
                "name", &port, "netns", &bridge,
            ])?;
            ip(&["-n", &bridge, "link", "set", &port, "master", "br0", "up"])?;
            ip(&["-n", &h.ns, "link", "set", IFACE, "up"])?;
            self.write_resolv_conf(&h.ns)?;
        }
        let server_addr = format!("{}/24", self.server_ip());
        ip(&[
            "-n",
            &self.server.ns,
            "addr",
            "add",
            &server_addr,
            "dev",
            IFACE,
        ])?;
        let probe_addr = format!("{}/24", self.addr(2));
        ip(&[
            "-n",
            &self.probe.ns,
            "addr",
            "add",
            &probe_addr,
            "dev",
            IFACE,
        ])?;
        Ok(())
    }

    /// Creates a namespace with loopback up and IPv6 off; records it for teardown first.
    fn add_ns(&mut self, ns: &str) -> Result<()> {
        ip(&["netns", "add", ns])?;
        self.created.push(ns.to_string());
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
        run_ok(
            netns_exec(ns, "sysctl").args([
                "-q",
                "-w",
                "net.ipv6.conf.all.disable_ipv6=1",
                "net.ipv6.conf.default.disable_ipv6=1",
            ]),
            CMD,
        )?;
        Ok(())
    }

    /// `/etc/netns/<ns>/resolv.conf` pointing at the server, so `ip netns exec` hides the host's.
    fn write_resolv_conf(&mut self, ns: &str) -> Result<()> {
        let dir = PathBuf::from("/etc/netns").join(ns);
        self.etc_dirs.push(dir.clone());
        // Another test may remove an empty /etc/netns between our two calls: retry once.
        if std::fs::create_dir_all(&dir).is_err() {
            std::fs::create_dir_all(&dir)?;
        }
        std::fs::write(
            dir.join("resolv.conf"),
            format!("nameserver {}\n", self.server_ip()),
        )?;
        Ok(())
    }

    /// `10.(50+index).0`, the first three octets.
    pub fn net(&self) -> [u8; 3] {
        [10, 50u8.saturating_add(self.index), 0]
    }

    pub fn addr(&self, last: u8) -> Ipv4Addr {
        let [a, b, c] = self.net();
        Ipv4Addr::new(a, b, c, last)
    }

    pub fn server_ip(&self) -> Ipv4Addr {
        self.addr(1)
    }

    pub fn network(&self) -> String {
        format!("{}/24", self.addr(0))
    }

    /// The dynamic pool every server in these tests hands out: .100 to .199.
    pub fn pool(&self) -> (Ipv4Addr, Ipv4Addr) {
        (self.addr(100), self.addr(199))
    }

    pub fn in_pool(&self, ip: Ipv4Addr) -> bool {
        let (start, end) = self.pool();
        ip >= start && ip <= end
    }

    /// A path inside the scratch directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Adds one more host on the LAN's bridge, namespace `<name>-<role>`, with the static
    /// address `.last` on `eth0` (a second server, a database).
    pub fn add_host(&mut self, role: &str, last: u8) -> Result<Host> {
        let host = Host {
            ns: format!("{}-{role}", self.name),
            mac: format!("02:1d:00:{:02x}:01:{last:02x}", self.index),
        };
        self.add_ns(&host.ns)?;
        let port = format!("q{last}");
        ip(&[
            "link",
            "add",
            IFACE,
            "address",
            &host.mac,
            "netns",
            &host.ns,
            "type",
            "veth",
            "peer",
            "name",
            &port,
            "netns",
            &self.bridge_ns,
        ])?;
        ip(&[
            "-n",
            &self.bridge_ns,
            "link",
            "set",
            &port,
            "master",
            "br0",
            "up",
        ])?;
        ip(&["-n", &host.ns, "link", "set", IFACE, "up"])?;
        self.write_resolv_conf(&host.ns)?;
        let addr = format!("{}/24", self.addr(last));
        ip(&["-n", &host.ns, "addr", "add", &addr, "dev", IFACE])?;
        Ok(host)
    }

    /// PIDs of every process living in one of our namespaces.
    pub fn pids(&self) -> Vec<u32> {
        let mut pids = Vec::new();
        for ns in &self.created {
            if let Ok(out) = run(Command::new("ip").args(["netns", "pids", ns]), CMD) {
                pids.extend(
                    out.stdout
                        .split_whitespace()
                        .filter_map(|p| p.parse::<u32>().ok()),
                );
            }
        }
        pids
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        // Processes first (TERM, a moment, then KILL), so nothing holds a namespace.
        let pids = self.pids();
        for &pid in &pids {
            let _ = signal(pid, Signal::SIGTERM);
        }
        if !pids.is_empty() {
            std::thread::sleep(Duration::from_millis(200));
            for pid in self.pids() {
                let _ = signal(pid, Signal::SIGKILL);
            }
        }
        for ns in self.created.iter().rev() {
            let _ = run(Command::new("ip").args(["netns", "del", ns]), CMD);
        }
        for dir in &self.etc_dirs {
            let _ = std::fs::remove_dir_all(dir);
        }
        // Leave /etc/netns if other tests still use it; remove_dir fails when not empty.
        let _ = std::fs::remove_dir("/etc/netns");
    }
}

/// A second LAN behind a router namespace: the router's `eth0` is on the main LAN with
/// `10.(50+index).0.254`, its `eth1` is on this segment's bridge with `.1` of
/// `10.(50+index).<sub>.0/24`, and the server namespace routes the segment via the router.
#[derive(Clone, Debug)]
pub struct Segment {
    /// The third octet of the segment's network.
    pub sub: u8,
    pub bridge_ns: String,
    pub router: Host,
    pub clients: Vec<Host>,
}

/// The router's interface on the segment.
pub const ROUTER_DOWN: &str = "eth1";

impl Segment {
    /// `10.(50+index).<sub>.<last>`.
    pub fn addr(&self, lan: &Lan, last: u8) -> Ipv4Addr {
        let [a, b, _] = lan.net();
        Ipv4Addr::new(a, b, self.sub, last)
    }

    /// The router's address on the segment (the relay's giaddr): `.1`.
    pub fn gateway(&self, lan: &Lan) -> Ipv4Addr {
        self.addr(lan, 1)
    }

    pub fn network(&self, lan: &Lan) -> String {
        format!("{}/24", self.addr(lan, 0))
    }
}

impl Lan {
    /// The router's address on the main LAN.
    pub fn router_ip(&self) -> Ipv4Addr {
        self.addr(254)
    }

    /// Adds a segment `10.(50+index).<sub>.0/24` with `clients` client namespaces behind a new
    /// router namespace (forwarding on), and a route to it from the server namespace.
    pub fn add_segment(&mut self, sub: u8, clients: usize) -> Result<Segment> {
        let prefix = format!("{}-s{sub}", self.name);
        let index = self.index;
        let mac = move |n: u8| format!("02:1d:{sub:02x}:{index:02x}:00:{n:02x}");
        let seg = Segment {
            sub,
            bridge_ns: format!("{prefix}br"),
            router: Host {
                ns: format!("{prefix}rt"),
                mac: mac(0xfe),
            },
            clients: (0..clients)
                .map(|i| Host {
                    ns: format!("{prefix}c{i}"),
                    mac: mac(0x10 + i as u8),
                })
                .collect(),
        };
        self.add_ns(&seg.bridge_ns)?;
        ip(&[
            "-n",
            &seg.bridge_ns,
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "forward_delay",
            "0",
        ])?;
        ip(&["-n", &seg.bridge_ns, "link", "set", "br0", "up"])?;
        // The router: eth0 on the main LAN, eth1 on the segment.
        let rt = seg.router.clone();
        self.add_ns(&rt.ns)?;
        self.write_resolv_conf(&rt.ns)?;
        self.plug(
            &rt.ns,
            IFACE,
            &rt.mac,
            &self.bridge_ns.clone(),
            &format!("r{sub}"),
        )?;
        self.plug(&rt.ns, ROUTER_DOWN, &mac(0xfd), &seg.bridge_ns, "uplink")?;
        let up = format!("{}/24", self.router_ip());
        ip(&["-n", &rt.ns, "addr", "add", &up, "dev", IFACE])?;
        let down = format!("{}/24", seg.gateway(self));
        ip(&["-n", &rt.ns, "addr", "add", &down, "dev", ROUTER_DOWN])?;
        run_ok(
            netns_exec(&rt.ns, "sysctl").args(["-q", "-w", "net.ipv4.ip_forward=1"]),
            CMD,
        )?;
        let via = self.router_ip().to_string();
        ip(&[
            "-n",
            &self.server.ns,
            "route",
            "add",
            &seg.network(self),
            "via",
            &via,
        ])?;
        for (i, h) in seg.clients.iter().enumerate() {
            self.add_ns(&h.ns)?;
            self.write_resolv_conf(&h.ns)?;
            self.plug(&h.ns, IFACE, &h.mac, &seg.bridge_ns, &format!("p{i}"))?;
        }
        Ok(seg)
    }

    /// A veth pair: `iface` (with `mac`) in `ns`, `port` enslaved to `br0` in `bridge_ns`.
    fn plug(&self, ns: &str, iface: &str, mac: &str, bridge_ns: &str, port: &str) -> Result<()> {
        ip(&[
            "link", "add", iface, "address", mac, "netns", ns, "type", "veth", "peer", "name",
            port, "netns", bridge_ns,
        ])?;
        ip(&["-n", bridge_ns, "link", "set", port, "master", "br0", "up"])?;
        ip(&["-n", ns, "link", "set", iface, "up"])
    }

    /// Unplugs `host`'s `eth0` from its LAN and plugs a new `eth0` with the same MAC into
    /// `seg`'s bridge: the client moved to another network, keeping its lease files.
    pub fn move_to_segment(&self, host: &Host, seg: &Segment) -> Result<()> {
        ip(&["-n", &host.ns, "link", "del", IFACE])?;
        let port = format!("m{}", host.mac.rsplit(':').next().unwrap_or("0"));
        self.plug(&host.ns, IFACE, &host.mac, &seg.bridge_ns, &port)
    }

    /// Gives client `i` another MAC address (e.g. one matching a class's prefix).
    pub fn set_mac(&mut self, i: usize, mac: &str) -> Result<()> {
        let host = self.clients.get_mut(i).context("no such client")?;
        ip(&["-n", &host.ns, "link", "set", IFACE, "address", mac])?;
        host.mac = mac.to_string();
        Ok(())
    }
}

/// `ip ARGS...`, failing with its output on a non-zero exit.
pub fn ip(args: &[&str]) -> Result<()> {
    run_ok(Command::new("ip").args(args), CMD).map(|_| ())
}

fn require_root() -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!(
            "the e2e tests build network namespaces: run them as root (CAP_NET_ADMIN, CAP_SYS_ADMIN)"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_inet_reads_the_address_of_ip_o_addr() {
        let line = "2: eth0    inet 10.51.0.123/24 brd 10.51.0.255 scope global eth0\\       valid_lft forever";
        assert_eq!(parse_inet(line), Some(Ipv4Addr::new(10, 51, 0, 123)));
        assert_eq!(parse_inet(""), None);
    }
}
