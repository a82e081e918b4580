//! Socket building for DHCP: one wildcard UDP socket with SO_BROADCAST and IP_PKTINFO, replies
//! sent out of the receiving interface, ARP entries for clients without an address, and the
//! host's interface list. Contains no protocol logic. The one module allowed `unsafe` (ioctl).

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, RawFd};

use nix::net::if_::{if_indextoname, if_nametoindex};
use nix::sys::socket::{
    ControlMessage, ControlMessageOwned, MsgFlags, SockaddrIn, recvmsg, sendmsg, sendto,
    setsockopt, sockopt,
};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::Interest;
use tokio::net::UdpSocket;

use crate::dhcp::Iface;
use crate::dhcp::dest::Dest;
use crate::lease::HwAddr;

/// Receive buffer asked for (bytes; the kernel doubles it for bookkeeping): about 8,000
/// typical requests, a few seconds of a busy network while a slow disk syncs.
const RECV_BUFFER: usize = 4 << 20;

/// What came with a received datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecvMeta {
    pub len: usize,
    pub src: SocketAddrV4,
    pub ifindex: u32,
}

/// The DHCP server socket: bound to 0.0.0.0, so it hears broadcasts on every interface, and
/// told by IP_PKTINFO which interface each datagram came in on.
pub struct DhcpSocket {
    sock: UdpSocket,
}

nix::ioctl_write_ptr_bad!(siocsarp, libc::SIOCSARP, libc::arpreq);

impl DhcpSocket {
    /// Bind 0.0.0.0:`port` with SO_REUSEADDR, SO_BROADCAST and IP_PKTINFO.
    /// Must be called inside a tokio runtime (the socket is registered with its reactor).
    pub fn bind(port: u16) -> io::Result<DhcpSocket> {
        let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
        s.set_reuse_address(true)?;
        s.set_broadcast(true)?;
        setsockopt(&s, sockopt::Ipv4PacketInfo, &true)?;
        // Requests keep arriving while a batch's fdatasync runs: room for a burst of them.
        // Root may exceed net.core.rmem_max (SO_RCVBUFFORCE); otherwise the kernel caps it.
        if setsockopt(&s, sockopt::RcvBufForce, &RECV_BUFFER).is_err() {
            let _ = s.set_recv_buffer_size(RECV_BUFFER);
        }
        s.set_nonblocking(true)?;
        s.bind(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port).into())?;
        let sock = UdpSocket::from_std(s.into())?;
        Ok(DhcpSocket { sock })
    }

    /// The same socket, registered with the current runtime's reactor instead of the one it was
    /// bound in (to serve it from another thread's runtime). Must be called inside a runtime.
    pub fn reregister(self) -> io::Result<DhcpSocket> {
        let std = self.sock.into_std()?;
        Ok(DhcpSocket {
            sock: UdpSocket::from_std(std)?,
        })
    }

    /// The port actually bound (useful after binding port 0).
    pub fn local_port(&self) -> io::Result<u16> {
        Ok(self.sock.local_addr()?.port())
    }

    /// Wait for a datagram.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<RecvMeta> {
        let fd = self.sock.as_raw_fd();
        self.sock
            .async_io(Interest::READABLE, || recv_now(fd, buf))
            .await
    }

    /// A datagram if one is ready now, without waiting (to drain a batch).
    ///
    /// This asks the kernel directly rather than tokio's cached readiness, so a datagram that
    /// arrived since the last poll is seen; a later `recv` still waits correctly, because
    /// tokio re-checks the socket before it sleeps.
    pub fn try_recv(&self, buf: &mut [u8]) -> io::Result<Option<RecvMeta>> {
        match recv_now(self.sock.as_raw_fd(), buf) {
            Ok(meta) => Ok(Some(meta)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Send a reply: `src` is the server address to send from, `client_port` is 68 normally.
    /// For `Dest::Direct` an ARP entry is written first (falling back to broadcast on failure).
    pub fn send(&self, buf: &[u8], dest: &Dest, src: Ipv4Addr, client_port: u16) -> io::Result<()> {
        let fd = self.sock.as_raw_fd();
        let broadcast = SocketAddrV4::new(Ipv4Addr::BROADCAST, client_port);
        match dest {
            Dest::Relay(to) | Dest::Unicast(to) => {
                sendto(fd, buf, &SockaddrIn::from(*to), MsgFlags::empty())?;
            }
            Dest::Broadcast { ifindex } => send_on(fd, buf, broadcast, *ifindex, src)?,
            Dest::Direct {
                ip,
                hwaddr,
                ifindex,
            } => match set_arp(fd, *ip, hwaddr, *ifindex) {
                Ok(()) => send_on(fd, buf, SocketAddrV4::new(*ip, client_port), *ifindex, src)?,
                Err(error) => {
                    tracing::debug!(%ip, %hwaddr, ifindex, %error, "no ARP entry; broadcasting");
                    send_on(fd, buf, broadcast, *ifindex, src)?;
                }
            },
        }
        Ok(())
    }
}

/// One nonblocking `recvmsg`, reading the receiving interface from IP_PKTINFO.
fn recv_now(fd: RawFd, buf: &mut [u8]) -> io::Result<RecvMeta> {
    let mut iov = [IoSliceMut::new(buf)];
    let mut cmsg = nix::cmsg_space!(libc::in_pktinfo);
    let msg = recvmsg::<SockaddrIn>(fd, &mut iov, Some(&mut cmsg), MsgFlags::MSG_DONTWAIT)?;
    let mut ifindex = 0;
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::Ipv4PacketInfo(pi) = c {
            ifindex = u32::try_from(pi.ipi_ifindex).unwrap_or(0);
        }
    }
    let src = msg
        .address
        .map(SocketAddrV4::from)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "datagram without source"))?;
    Ok(RecvMeta {
        len: msg.bytes,
        src,
        ifindex,
    })
}

/// `sendmsg` to `dst` out of interface `ifindex`, from `src` (0.0.0.0: the kernel chooses).
fn send_on(
    fd: RawFd,
    buf: &[u8],
    dst: SocketAddrV4,
    ifindex: u32,
    src: Ipv4Addr,
) -> io::Result<()> {
    let pi = libc::in_pktinfo {
        ipi_ifindex: libc::c_int::try_from(ifindex)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "ifindex out of range"))?,
        ipi_spec_dst: libc::in_addr {
            s_addr: u32::from_ne_bytes(src.octets()),
        },
        ipi_addr: libc::in_addr { s_addr: 0 },
    };
    let iov = [IoSlice::new(buf)];
    let cmsgs = [ControlMessage::Ipv4PacketInfo(&pi)];
    sendmsg(
        fd,
        &iov,
        &cmsgs,
        MsgFlags::empty(),
        Some(&SockaddrIn::from(dst)),
    )?;
    Ok(())
}

/// Copy bytes into a C `char` array (the kernel's sockaddr data and device name fields).
fn fill(dst: &mut [libc::c_char], src: &[u8]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d = *s as libc::c_char;
    }
}

/// Write a complete ARP entry `ip` -> `hwaddr` on interface `ifindex` (SIOCSARP), so a unicast
/// reaches a client that has no address yet. Needs CAP_NET_ADMIN and an Ethernet address.
fn set_arp(fd: RawFd, ip: Ipv4Addr, hwaddr: &HwAddr, ifindex: u32) -> io::Result<()> {
    if hwaddr.htype != 1 || hwaddr.bytes().len() != 6 {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "not an Ethernet address",
        ));
    }
    let dev = if_indextoname(ifindex)?;
    // SAFETY: `arpreq` is a plain C struct of integers and byte arrays, for which all-zero
    // bytes are a valid value (and the value the kernel expects for unused fields).
    let mut req: libc::arpreq = unsafe { std::mem::zeroed() };
    // arp_pa holds a sockaddr_in: family, then port (2 bytes, zero), then the address.
    req.arp_pa.sa_family = libc::AF_INET as libc::sa_family_t;
    fill(&mut req.arp_pa.sa_data[2..6], &ip.octets());
    req.arp_ha.sa_family = libc::ARPHRD_ETHER;
    fill(&mut req.arp_ha.sa_data, hwaddr.bytes());
    req.arp_flags = libc::ATF_COM;
    // Leave the last byte zero: the name must stay NUL-terminated.
    let name = dev.as_bytes();
    let room = req.arp_dev.len() - 1;
    fill(&mut req.arp_dev[..room], name);
    // SAFETY: `fd` is an open AF_INET socket owned by the caller for the duration of the call,
    // and `req` is a fully initialised `arpreq` that outlives the call; SIOCSARP only reads it.
    unsafe { siocsarp(fd, &req) }?;
    Ok(())
}

/// The host's interfaces with their IPv4 addresses (interfaces without one are listed too).
pub fn interfaces() -> io::Result<Vec<Iface>> {
    let mut out: Vec<Iface> = Vec::new();
    for ifa in nix::ifaddrs::getifaddrs()? {
        let pos = match out.iter().position(|i| i.name == ifa.interface_name) {
            Some(pos) => pos,
            None => {
                // An interface that vanished since getifaddrs has no index; skip it.
                let Ok(index) = if_nametoindex(ifa.interface_name.as_str()) else {
                    continue;
                };
                out.push(Iface {
                    index,
                    name: ifa.interface_name.clone(),
                    addrs: Vec::new(),
                });
                out.len() - 1
            }
        };
        let addr = ifa
            .address
            .as_ref()
            .and_then(|a| a.as_sockaddr_in())
            .map(|a| a.ip());
        let mask = ifa
            .netmask
            .as_ref()
            .and_then(|a| a.as_sockaddr_in())
            .map(|a| a.ip());
        if let (Some(addr), Some(mask), Some(iface)) = (addr, mask, out.get_mut(pos)) {
            let prefix = u8::try_from(u32::from(mask).count_ones()).unwrap_or(32);
            iface.addrs.push((addr, prefix));
        }
    }
    out.sort_by_key(|i| i.index);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;
    use std::time::Duration;

    const WAIT: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn loopback_recv_reports_source_and_lo_then_unicast_reply_arrives() {
        let server = DhcpSocket::bind(0).expect("bind");
        let port = server.local_port().expect("port");
        assert_ne!(port, 0);
        let mut buf = [0u8; 1500];
        assert_eq!(
            server.try_recv(&mut buf).expect("try_recv"),
            None,
            "nothing sent yet"
        );

        let client = std::net::UdpSocket::bind("127.0.0.1:0").expect("client bind");
        client.set_read_timeout(Some(WAIT)).expect("timeout");
        let client_addr = match client.local_addr() {
            Ok(std::net::SocketAddr::V4(a)) => a,
            other => panic!("unexpected client address {other:?}"),
        };
        client
            .send_to(b"discover", ("127.0.0.1", port))
            .expect("send");

        let meta = tokio::time::timeout(WAIT, server.recv(&mut buf))
            .await
            .expect("in time");
        let meta = meta.expect("recv");
        let lo = if_nametoindex("lo").expect("lo exists");
        assert_eq!(
            meta,
            RecvMeta {
                len: 8,
                src: client_addr,
                ifindex: lo
            }
        );
        assert_eq!(&buf[..meta.len], b"discover");

        server
            .send(
                b"offer",
                &Dest::Unicast(client_addr),
                Ipv4Addr::LOCALHOST,
                68,
            )
            .expect("send unicast");
        let mut got = [0u8; 64];
        let (n, from) = client.recv_from(&mut got).expect("client got the reply");
        assert_eq!(&got[..n], b"offer");
        assert_eq!(from.port(), port);

        // try_recv drains what is waiting, then reports None again.
        client
            .send_to(b"request", ("127.0.0.1", port))
            .expect("send");
        let deadline = std::time::Instant::now() + WAIT;
        let meta = loop {
            if let Some(meta) = server.try_recv(&mut buf).expect("try_recv") {
                break meta;
            }
            assert!(std::time::Instant::now() < deadline, "datagram never seen");
            std::thread::sleep(Duration::from_millis(5));
        };
        assert_eq!((meta.len, meta.ifindex), (7, lo));
        assert_eq!(server.try_recv(&mut buf).expect("try_recv"), None);
    }

    #[test]
    fn interfaces_lists_loopback_with_its_prefix() {
        let ifs = interfaces().expect("getifaddrs");
        let lo = ifs.iter().find(|i| i.name == "lo").expect("lo listed");
        assert_eq!(lo.index, if_nametoindex("lo").expect("lo index"));
        assert!(lo.addrs.contains(&(Ipv4Addr::LOCALHOST, 8)), "{lo:?}");
    }

    #[test]
    fn arp_refuses_non_ethernet_addresses() {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let hw = HwAddr::new(6, &[1, 2, 3, 4, 5, 6]);
        let err = set_arp(s.as_raw_fd(), Ipv4Addr::new(127, 0, 0, 9), &hw, 1).expect_err("refused");
        assert_eq!(err.kind(), io::ErrorKind::Unsupported);
    }

    /// Two network namespaces joined by a veth pair; deleted (with the pair) on drop.
    /// The server side is `veth-s` 10.77.0.1/24; the client side `veth-c` 10.77.0.2/24 has a
    /// fixed MAC. The timeline turns the client's ARP off before the direct reply, so unicast
    /// to it works only through the ARP entry the server writes.
    struct NetnsPair {
        srv: String,
        cli: String,
    }

    const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x77, 0x02];

    fn ip(args: &[&str]) -> String {
        let out = Command::new("ip").args(args).output().expect("run ip");
        assert!(
            out.status.success(),
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    impl NetnsPair {
        fn new() -> NetnsPair {
            let pid = std::process::id();
            let pair = NetnsPair {
                srv: format!("leasedns-net-{pid}-srv"),
                cli: format!("leasedns-net-{pid}-cli"),
            };
            let (s, c) = (pair.srv.as_str(), pair.cli.as_str());
            ip(&["netns", "add", s]);
            ip(&["netns", "add", c]);
            ip(&[
                "-n", s, "link", "add", "veth-s", "type", "veth", "peer", "name", "veth-c",
            ]);
            ip(&["-n", s, "link", "set", "veth-c", "netns", c]);
            ip(&["-n", s, "addr", "add", "10.77.0.1/24", "dev", "veth-s"]);
            ip(&["-n", c, "addr", "add", "10.77.0.2/24", "dev", "veth-c"]);
            ip(&[
                "-n",
                c,
                "link",
                "set",
                "veth-c",
                "address",
                "02:00:00:00:77:02",
            ]);
            for (ns, dev) in [(s, "lo"), (s, "veth-s"), (c, "lo"), (c, "veth-c")] {
                ip(&["-n", ns, "link", "set", dev, "up"]);
            }
            pair
        }
    }

    impl Drop for NetnsPair {
        fn drop(&mut self) {
            for ns in [&self.srv, &self.cli] {
                let _ = Command::new("ip")
                    .args(["netns", "del", ns.as_str()])
                    .status();
            }
        }
    }

    /// Move the calling thread into a named network namespace (sockets it creates live there).
    fn enter_netns(name: &str) {
        let f = std::fs::File::open(format!("/run/netns/{name}")).expect("open netns");
        // SAFETY: `f` is an open namespace file for the duration of the call; setns only changes
        // the calling thread's network namespace, and this thread is a test's own thread.
        let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", io::Error::last_os_error());
    }

    /// A client socket on 0.0.0.0:`port` in the current thread's namespace, tied to `veth-c`.
    fn client_socket(port: u16) -> std::net::UdpSocket {
        let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).expect("socket");
        s.set_broadcast(true).expect("broadcast");
        s.bind_device(Some(b"veth-c")).expect("bind_device");
        s.bind(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port).into())
            .expect("bind");
        s.set_read_timeout(Some(WAIT)).expect("timeout");
        s.into()
    }

    fn expect_datagram(client: &std::net::UdpSocket, want: &[u8]) -> std::net::SocketAddr {
        let mut buf = [0u8; 128];
        let (n, from) = client
            .recv_from(&mut buf)
            .expect("datagram arrives at the client");
        assert_eq!(&buf[..n], want);
        from
    }

    #[test]
    fn netns_broadcast_and_direct_replies_leave_the_right_interface() {
        if nix::unistd::geteuid().as_raw() != 0 {
            eprintln!("skipping: network namespaces need root");
            return;
        }
        let pair = NetnsPair::new();
        let (srv, cli) = (pair.srv.clone(), pair.cli.clone());
        let body = std::thread::spawn(move || {
            enter_netns(&cli);
            let client = client_socket(6868);
            enter_netns(&srv);
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            rt.expect("runtime")
                .block_on(netns_timeline(client, &srv, &cli));
        });
        let result = body.join();
        drop(pair);
        if let Err(panic) = result {
            std::panic::resume_unwind(panic);
        }
    }

    async fn netns_timeline(client: std::net::UdpSocket, srv: &str, cli: &str) {
        let server = DhcpSocket::bind(6767).expect("bind in netns");
        let veth_s = if_nametoindex("veth-s").expect("veth-s index");
        let server_ip = Ipv4Addr::new(10, 77, 0, 1);
        let client_ip = Ipv4Addr::new(10, 77, 0, 2);

        // t0: the client broadcasts; the server hears it on veth-s.
        client
            .send_to(b"discover", (Ipv4Addr::BROADCAST, 6767))
            .expect("client broadcast");
        let mut buf = [0u8; 1500];
        let meta = tokio::time::timeout(WAIT, server.recv(&mut buf))
            .await
            .expect("in time");
        let meta = meta.expect("recv");
        assert_eq!(meta.ifindex, veth_s);
        assert_eq!(meta.src, SocketAddrV4::new(client_ip, 6868));

        // t1: a broadcast reply leaves veth-s from the server address.
        let bcast = Dest::Broadcast { ifindex: veth_s };
        server
            .send(b"offer", &bcast, server_ip, 6868)
            .expect("broadcast send");
        let from = expect_datagram(&client, b"offer");
        assert_eq!(from, SocketAddrV4::new(server_ip, 6767).into());

        // t2: the client stops answering ARP (a client without an address cannot answer), and
        // the server has no neighbour entry for it; a direct reply writes one, then unicasts.
        ip(&["-n", cli, "link", "set", "veth-c", "arp", "off"]);
        let neigh = ip(&["-n", srv, "neigh", "show", "10.77.0.2", "dev", "veth-s"]);
        assert_eq!(
            neigh.trim(),
            "",
            "no neighbour entry before the direct reply"
        );
        let hwaddr = HwAddr::ethernet(CLIENT_MAC);
        let direct = Dest::Direct {
            ip: client_ip,
            hwaddr,
            ifindex: veth_s,
        };
        server
            .send(b"ack", &direct, server_ip, 6868)
            .expect("direct send");
        expect_datagram(&client, b"ack");
        let neigh = ip(&["-n", srv, "neigh", "show", "10.77.0.2", "dev", "veth-s"]);
        assert!(
            neigh.contains("lladdr 02:00:00:00:77:02"),
            "neighbour table: {neigh:?}"
        );

        // t3: a direct reply for a non-Ethernet address falls back to broadcast.
        let odd = HwAddr::new(6, &[1, 2, 3, 4, 5, 6]);
        let direct = Dest::Direct {
            ip: Ipv4Addr::new(10, 77, 0, 3),
            hwaddr: odd,
            ifindex: veth_s,
        };
        server
            .send(b"nak", &direct, server_ip, 6868)
            .expect("fallback send");
        expect_datagram(&client, b"nak");
        let neigh = ip(&["-n", srv, "neigh", "show", "10.77.0.3", "dev", "veth-s"]);
        assert_eq!(neigh.trim(), "", "no ARP entry for the fallback");
    }
}
