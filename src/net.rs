//! Socket building for DHCP: one wildcard UDP socket with SO_BROADCAST and IP_PKTINFO, read a
//! batch at a time (recvmmsg), replies sent out of the receiving interface, ARP entries for
//! clients without an address, the DHCP thread's blocking wait (woken by `wake::Wake`, which
//! this module re-exports), and the host's interface list. Contains no protocol logic. The one
//! module allowed `unsafe` (ioctl, recvmmsg, poll).

use std::io::{self, IoSlice};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::time::Duration;

use nix::net::if_::{if_indextoname, if_nametoindex};
use nix::sys::socket::{
    ControlMessage, MsgFlags, SockaddrIn, sendmsg, sendto, setsockopt, sockopt,
};
use socket2::{Domain, Protocol, Socket, Type};

use crate::lease::HwAddr;
pub use crate::wake::Wake;

/// The interface a request came in on, as the engine sees it: plain data, no sockets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Iface {
    pub index: u32,
    pub name: String,
    /// IPv4 addresses of the interface with their prefix lengths.
    pub addrs: Vec<(Ipv4Addr, u8)>,
}

/// Where a reply goes: what `dhcp::dest` decides (RFC 2131 §4.1) and `DhcpSocket::send` does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dest {
    /// To the relay agent (giaddr) on the server port.
    Relay(SocketAddrV4),
    /// To a client that has an address (ciaddr) on the client port.
    Unicast(SocketAddrV4),
    /// To 255.255.255.255 on the client port, out of this interface.
    Broadcast { ifindex: u32 },
    /// To `ip` on the client port at `hwaddr`, after writing an ARP entry, out of this interface.
    Direct {
        ip: Ipv4Addr,
        hwaddr: HwAddr,
        ifindex: u32,
    },
}

/// Receive buffer asked for (bytes; the kernel doubles it for bookkeeping): about 8,000
/// typical requests, a few seconds of a busy network while a slow disk syncs.
const RECV_BUFFER: usize = 4 << 20;

/// Largest datagram read (longer ones are cut, and then fail to decode).
pub const DATAGRAM_MAX: usize = 1500;

/// What came with a received datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecvMeta {
    pub len: usize,
    pub src: SocketAddrV4,
    pub ifindex: u32,
}

/// The DHCP server socket: bound to 0.0.0.0, so it hears broadcasts on every interface, and
/// told by IP_PKTINFO which interface each datagram came in on. Nonblocking; the DHCP thread
/// waits on it with `wait` and reads what is ready with `recv_batch`.
pub struct DhcpSocket {
    sock: std::net::UdpSocket,
    /// Whether `Dest::Direct` writes an ARP entry and unicasts (false: broadcast at once,
    /// `arp_entries = false`, which runs without CAP_NET_ADMIN).
    arp: bool,
}

/// Room for a batch of datagrams and what came with each (`DhcpSocket::recv_batch`). The
/// headers point into the buffers, address and control areas: every vector is allocated once at
/// its full size and never resized, so the pointers stay valid when the batch is moved.
pub struct RecvBatch {
    bufs: Vec<[u8; DATAGRAM_MAX]>,
    addrs: Vec<libc::sockaddr_in>,
    cmsgs: Vec<[u64; CMSG_WORDS]>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    metas: Vec<RecvMeta>,
}

/// Control-message room for one IP_PKTINFO, in u64 words (so it is aligned for cmsghdr).
const CMSG_WORDS: usize = 8;

impl RecvBatch {
    /// Room for `n` datagrams (at least one).
    pub fn new(n: usize) -> RecvBatch {
        let n = n.max(1);
        // SAFETY: sockaddr_in is a plain C struct of integers, valid when all zero.
        let addr: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        let mut b = RecvBatch {
            bufs: vec![[0u8; DATAGRAM_MAX]; n],
            addrs: vec![addr; n],
            cmsgs: vec![[0u64; CMSG_WORDS]; n],
            iovs: Vec::with_capacity(n),
            hdrs: Vec::with_capacity(n),
            metas: Vec::with_capacity(n),
        };
        for buf in b.bufs.iter_mut() {
            b.iovs.push(libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: buf.len(),
            });
        }
        for i in 0..n {
            // SAFETY: msghdr is a plain C struct, valid when all zero; the pointers set here
            // point into the vectors above, which are never resized (see the type's comment).
            let mut hdr: libc::mmsghdr = unsafe { std::mem::zeroed() };
            hdr.msg_hdr.msg_name = (&raw mut b.addrs[i]).cast();
            hdr.msg_hdr.msg_iov = &raw mut b.iovs[i];
            hdr.msg_hdr.msg_iovlen = 1;
            hdr.msg_hdr.msg_control = b.cmsgs[i].as_mut_ptr().cast();
            b.hdrs.push(hdr);
        }
        b
    }

    /// The datagrams read by the last `recv_batch`, each with its metadata.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &RecvMeta)> {
        self.metas
            .iter()
            .zip(&self.bufs)
            .map(|(m, b)| (&b[..m.len.min(DATAGRAM_MAX)], m))
    }

    pub fn len(&self) -> usize {
        self.metas.len()
    }

    pub fn is_empty(&self) -> bool {
        self.metas.is_empty()
    }
}

/// What `DhcpSocket::wait` saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ready {
    /// The socket has a datagram.
    pub socket: bool,
    /// The wake-up descriptor was signalled.
    pub woken: bool,
}

nix::ioctl_write_ptr_bad!(siocsarp, libc::SIOCSARP, libc::arpreq);

impl DhcpSocket {
    /// Bind 0.0.0.0:`port` with SO_REUSEADDR, SO_BROADCAST and IP_PKTINFO.
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
        Ok(DhcpSocket {
            sock: s.into(),
            arp: true,
        })
    }

    /// `arp_entries`: with false, replies that would go to a client without an address by
    /// unicast (after writing an ARP entry) are broadcast on its interface instead.
    pub fn set_arp_entries(&mut self, arp: bool) {
        self.arp = arp;
    }

    /// The port actually bound (useful after binding port 0).
    pub fn local_port(&self) -> io::Result<u16> {
        Ok(self.sock.local_addr()?.port())
    }

    /// Block until a datagram is ready, `wake` is signalled, or `timeout` passes (rounded up to
    /// a millisecond; `None` waits for ever). An interrupted wait returns nothing ready.
    pub fn wait(&self, wake: &Wake, timeout: Option<Duration>) -> io::Result<Ready> {
        let ms = timeout.map_or(-1, |t| {
            let ms = t.as_micros().div_ceil(1000);
            libc::c_int::try_from(ms).unwrap_or(libc::c_int::MAX)
        });
        let mut fds = [
            libc::pollfd {
                fd: self.sock.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: wake.as_fd().as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: `fds` is a valid array of two pollfd for the duration of the call, and both
        // descriptors stay open (owned by `self` and `wake`, borrowed here).
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), 2, ms) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::Interrupted => Ok(Ready::default()),
                _ => Err(e),
            };
        }
        let hit = |p: &libc::pollfd| p.revents & (libc::POLLIN | libc::POLLERR) != 0;
        Ok(Ready {
            socket: hit(&fds[0]),
            woken: hit(&fds[1]),
        })
    }

    /// Read every datagram ready now, up to the batch's room, in one recvmmsg without waiting;
    /// returns how many (0 when none is ready).
    pub fn recv_batch(&self, batch: &mut RecvBatch) -> io::Result<usize> {
        batch.metas.clear();
        let n = batch.hdrs.len();
        // The kernel shortens these to what it wrote: give each header its full room again.
        for hdr in batch.hdrs.iter_mut() {
            hdr.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            hdr.msg_hdr.msg_controllen = std::mem::size_of::<[u64; CMSG_WORDS]>() as _;
            hdr.msg_hdr.msg_flags = 0;
            hdr.msg_len = 0;
        }
        let vlen = libc::c_uint::try_from(n).unwrap_or(libc::c_uint::MAX);
        // SAFETY: `hdrs` holds `n` initialised mmsghdr whose buffers, addresses and control
        // areas live in `batch` (never resized) for the whole call; MSG_DONTWAIT makes it
        // return at once.
        let rc = unsafe {
            libc::recvmmsg(
                self.sock.as_raw_fd(),
                batch.hdrs.as_mut_ptr(),
                vlen,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if rc < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
                _ => Err(e),
            };
        }
        let got = usize::try_from(rc).unwrap_or(0).min(n);
        for i in 0..got {
            let hdr = &batch.hdrs[i];
            let addr = &batch.addrs[i];
            let src = SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(addr.sin_addr.s_addr)),
                u16::from_be(addr.sin_port),
            );
            batch.metas.push(RecvMeta {
                len: (hdr.msg_len as usize).min(DATAGRAM_MAX),
                src,
                ifindex: pktinfo_ifindex(&hdr.msg_hdr),
            });
        }
        Ok(got)
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
            Dest::Broadcast { ifindex } | Dest::Direct { ifindex, .. } if !self.arp => {
                send_on(fd, buf, broadcast, *ifindex, src)?
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

/// The receiving interface from a received message's IP_PKTINFO (0 when absent).
fn pktinfo_ifindex(msg: &libc::msghdr) -> u32 {
    // SAFETY: `msg` was filled by recvmmsg: its control pointer and the length the kernel set
    // describe the control area it wrote, and the CMSG_* helpers stay inside that area.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::IPPROTO_IP && (*c).cmsg_type == libc::IP_PKTINFO {
                let pi = libc::CMSG_DATA(c)
                    .cast::<libc::in_pktinfo>()
                    .read_unaligned();
                return u32::try_from(pi.ipi_ifindex).unwrap_or(0);
            }
            c = libc::CMSG_NXTHDR(msg, c);
        }
    }
    0
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

    /// Wait for one datagram on `server` and read it (with whatever else is ready).
    fn recv_one(server: &DhcpSocket, batch: &mut RecvBatch) -> RecvMeta {
        let wake = Wake::new().expect("eventfd");
        let ready = server.wait(&wake, Some(WAIT)).expect("wait");
        assert!(ready.socket, "a datagram within {WAIT:?}");
        assert_eq!(server.recv_batch(batch).expect("recv_batch"), 1);
        *batch.iter().next().expect("one datagram").1
    }

    #[test]
    fn loopback_recv_reports_source_and_lo_then_unicast_reply_arrives() {
        let server = DhcpSocket::bind(0).expect("bind");
        let port = server.local_port().expect("port");
        assert_ne!(port, 0);
        let mut batch = RecvBatch::new(8);
        assert_eq!(server.recv_batch(&mut batch).expect("nothing yet"), 0);
        assert!(batch.is_empty());

        let client = std::net::UdpSocket::bind("127.0.0.1:0").expect("client bind");
        client.set_read_timeout(Some(WAIT)).expect("timeout");
        let client_addr = match client.local_addr() {
            Ok(std::net::SocketAddr::V4(a)) => a,
            other => panic!("unexpected client address {other:?}"),
        };
        client
            .send_to(b"discover", ("127.0.0.1", port))
            .expect("send");

        let meta = recv_one(&server, &mut batch);
        let lo = if_nametoindex("lo").expect("lo exists");
        assert_eq!(
            meta,
            RecvMeta {
                len: 8,
                src: client_addr,
                ifindex: lo
            }
        );
        assert_eq!(batch.iter().next().expect("datagram").0, b"discover");

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

        // Three datagrams waiting are one batch, in order; then nothing is ready.
        for msg in [&b"one"[..], b"two", b"three"] {
            client.send_to(msg, ("127.0.0.1", port)).expect("send");
        }
        let wake = Wake::new().expect("eventfd");
        assert!(server.wait(&wake, Some(WAIT)).expect("wait").socket);
        assert_eq!(server.recv_batch(&mut batch).expect("batch"), 3);
        let got: Vec<(&[u8], u32)> = batch.iter().map(|(b, m)| (b, m.ifindex)).collect();
        assert_eq!(got, [(&b"one"[..], lo), (b"two", lo), (b"three", lo)]);
        assert_eq!(server.recv_batch(&mut batch).expect("drained"), 0);

        // A batch smaller than what waits takes its room, the rest stays for the next read.
        for msg in [&b"a"[..], b"b", b"c"] {
            client.send_to(msg, ("127.0.0.1", port)).expect("send");
        }
        let mut two = RecvBatch::new(2);
        assert!(server.wait(&wake, Some(WAIT)).expect("wait").socket);
        assert_eq!(server.recv_batch(&mut two).expect("batch"), 2);
        assert_eq!(server.recv_batch(&mut two).expect("batch"), 1);
        assert_eq!(two.iter().next().expect("c").0, b"c");
    }

    #[test]
    fn wait_returns_on_a_wake_from_another_thread_or_the_timeout() {
        let server = DhcpSocket::bind(0).expect("bind");
        let wake = std::sync::Arc::new(Wake::new().expect("eventfd"));
        let t0 = std::time::Instant::now();
        let ready = server
            .wait(&wake, Some(Duration::from_millis(30)))
            .expect("wait");
        assert_eq!(ready, Ready::default(), "timed out with nothing ready");
        assert!(t0.elapsed() >= Duration::from_millis(30));

        let waker = wake.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            waker.wake();
        });
        let ready = server.wait(&wake, Some(WAIT)).expect("wait");
        assert_eq!(
            ready,
            Ready {
                socket: false,
                woken: true
            }
        );
        assert!(t0.elapsed() < WAIT);
        t.join().expect("waker thread");
        wake.reset();
        let ready = server
            .wait(&wake, Some(Duration::from_millis(10)))
            .expect("wait");
        assert!(!ready.woken, "reset forgets the wake-up");
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
            // The kernel marks a veth operationally up a little later (its link watch runs
            // deferred, later still on a busy machine); a datagram sent before that is dropped.
            for (ns, dev) in [(s, "veth-s"), (c, "veth-c")] {
                let deadline = std::time::Instant::now() + Duration::from_secs(30);
                while !ip(&["-n", ns, "link", "show", "dev", dev]).contains("state UP") {
                    assert!(std::time::Instant::now() < deadline, "{dev} never came up");
                    std::thread::sleep(Duration::from_millis(20));
                }
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
            netns_timeline(client, &srv, &cli);
        });
        let result = body.join();
        drop(pair);
        if let Err(panic) = result {
            std::panic::resume_unwind(panic);
        }
    }

    fn netns_timeline(client: std::net::UdpSocket, srv: &str, cli: &str) {
        let server = DhcpSocket::bind(6767).expect("bind in netns");
        let veth_s = if_nametoindex("veth-s").expect("veth-s index");
        let server_ip = Ipv4Addr::new(10, 77, 0, 1);
        let client_ip = Ipv4Addr::new(10, 77, 0, 2);

        // t0: the client broadcasts; the server hears it on veth-s.
        client
            .send_to(b"discover", (Ipv4Addr::BROADCAST, 6767))
            .expect("client broadcast");
        let meta = recv_one(&server, &mut RecvBatch::new(4));
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
