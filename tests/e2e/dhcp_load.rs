//! A raw DHCP client for many MACs on one UDP socket inside a namespace (bound by a helper thread
//! that entered it with setns): DISCOVER/REQUEST/RELEASE with the broadcast flag, every OFFER,
//! ACK and NAK seen is recorded and checked against the invariants as it arrives. Knows nothing
//! of leasedns.

use std::collections::HashMap;
use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow};
use dhcproto::v4::{DhcpOption, Flags, Message, MessageType, OptionCode};
use dhcproto::{Decodable, Encodable};
use nix::sched::CloneFlags;

use crate::netns::Host;

/// How long one exchange waits for its reply.
const REPLY_WAIT: Duration = Duration::from_millis(300);

pub type Mac = [u8; 6];

/// The last ACK a client received.
#[derive(Clone, Debug)]
pub struct Ack {
    pub ip: Ipv4Addr,
    pub lease_time: u32,
    /// Unix seconds when it arrived.
    pub at: u64,
}

/// `n` MACs of the form 02:1e:<lan>:00:<hi>:<lo>.
pub fn macs(lan_index: u8, n: usize) -> Vec<Mac> {
    (0..n)
        .map(|i| [2, 0x1e, lan_index, 0, (i >> 8) as u8, i as u8])
        .collect()
}

/// A UDP socket on `eth0`, bound to `bind` inside namespace `ns` (the thread that enters it
/// ends at once).
pub fn socket_in(ns: &str, bind: SocketAddr) -> Result<UdpSocket> {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || -> Result<UdpSocket> {
        use socket2::{Domain, Protocol, Socket, Type};
        let f = File::open(&path).with_context(|| format!("opening {path}"))?;
        nix::sched::setns(&f, CloneFlags::CLONE_NEWNET).context("setns")?;
        let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
        s.set_broadcast(true)?;
        // The limited broadcast has no route without a device.
        s.bind_device(Some(crate::netns::IFACE.as_bytes()))?;
        s.bind(&bind.into())
            .with_context(|| format!("binding {bind}"))?;
        Ok(s.into())
    })
    .join()
    .map_err(|_| anyhow!("socket thread panicked"))?
}

pub struct LoadClient {
    sock: UdpSocket,
    pub macs: Vec<Mac>,
    /// The latest ACK of every client that holds a lease.
    pub acked: HashMap<Mac, Ack>,
    /// Every address ACKed and not released, and to whom.
    owners: HashMap<Ipv4Addr, Mac>,
    /// The xid of each client's last RELEASE: ACKs to older requests arriving late are stale.
    released: HashMap<Mac, u32>,
    pub violations: Vec<String>,
    /// Several servers share one lease set (a lease database): an OFFER may name an address
    /// another server has just ACKed (offers are not arbitrated; the REQUEST for it is
    /// refused), and a server that has not yet seen another's change (milliseconds) may NAK a
    /// renewal (the client starts over; its lease is not touched): only conflicting ACKs count
    /// as violations, such NAKs are counted in `stale_naks`.
    pub offers_may_conflict: bool,
    pub stale_naks: u64,
    pub acks: u64,
    pub naks: u64,
    xid: u32,
}

impl LoadClient {
    /// A client on `host` (port 68, sending to the broadcast address) for these MACs.
    pub fn new(host: &Host, macs: Vec<Mac>) -> Result<LoadClient> {
        let sock = socket_in(&host.ns, "0.0.0.0:68".parse()?)?;
        sock.set_read_timeout(Some(Duration::from_millis(20)))?;
        Ok(LoadClient {
            sock,
            macs,
            acked: HashMap::new(),
            owners: HashMap::new(),
            released: HashMap::new(),
            violations: Vec::new(),
            offers_may_conflict: false,
            stale_naks: 0,
            acks: 0,
            naks: 0,
            xid: 0x5000_0000,
        })
    }

    /// One exchange for client `i`: renew (INIT-REBOOT REQUEST) when it holds a lease, else
    /// DISCOVER then REQUEST. True when it ended with an ACK.
    pub fn step(&mut self, i: usize) -> Result<bool> {
        let mac = self.macs[i];
        if let Some(ack) = self.acked.get(&mac) {
            let ip = ack.ip;
            let xid = self.send(MessageType::Request, mac, Some(ip), None)?;
            let reply = self.wait(xid)?;
            return Ok(reply.is_some_and(|m| m.opts().msg_type() == Some(MessageType::Ack)));
        }
        let xid = self.send(MessageType::Discover, mac, None, None)?;
        let Some(offer) = self.wait(xid)? else {
            return Ok(false);
        };
        let sid = match offer.opts().get(OptionCode::ServerIdentifier) {
            Some(DhcpOption::ServerIdentifier(ip)) => Some(*ip),
            _ => None,
        };
        let xid = self.send(MessageType::Request, mac, Some(offer.yiaddr()), sid)?;
        let reply = self.wait(xid)?;
        Ok(reply.is_some_and(|m| m.opts().msg_type() == Some(MessageType::Ack)))
    }

    /// Client `i` releases its lease (no reply expected).
    pub fn release(&mut self, i: usize) -> Result<()> {
        let mac = self.macs[i];
        let Some(ack) = self.acked.remove(&mac) else {
            return Ok(());
        };
        self.owners.remove(&ack.ip);
        let mut msg = self.message(MessageType::Release, mac);
        msg.set_ciaddr(ack.ip);
        self.released.insert(mac, msg.xid());
        self.sock
            .send_to(&msg.to_vec()?, "255.255.255.255:67")
            .context("sending RELEASE")?;
        Ok(())
    }

    /// Read every reply still queued (late ACKs count too).
    pub fn drain(&mut self) {
        let deadline = Instant::now() + Duration::from_millis(100);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.recv_one() {
                continue;
            }
        }
    }

    fn message(&mut self, msg_type: MessageType, mac: Mac) -> Message {
        self.xid = self.xid.wrapping_add(1);
        let un = Ipv4Addr::UNSPECIFIED;
        let mut msg = Message::new_with_id(self.xid, un, un, un, un, &mac);
        msg.set_flags(Flags::default().set_broadcast());
        msg.opts_mut().insert(DhcpOption::MessageType(msg_type));
        msg
    }

    fn send(
        &mut self,
        msg_type: MessageType,
        mac: Mac,
        requested: Option<Ipv4Addr>,
        sid: Option<Ipv4Addr>,
    ) -> Result<u32> {
        let mut msg = self.message(msg_type, mac);
        let name = format!("c{}", u16::from_be_bytes([mac[4], mac[5]]));
        msg.opts_mut().insert(DhcpOption::Hostname(name));
        if let Some(ip) = requested {
            msg.opts_mut().insert(DhcpOption::RequestedIpAddress(ip));
        }
        if let Some(ip) = sid {
            msg.opts_mut().insert(DhcpOption::ServerIdentifier(ip));
        }
        self.sock
            .send_to(&msg.to_vec()?, "255.255.255.255:67")
            .context("sending to the DHCP server")?;
        Ok(msg.xid())
    }

    /// Replies until the one for `xid` (OFFER, ACK or NAK) or REPLY_WAIT.
    fn wait(&mut self, xid: u32) -> Result<Option<Message>> {
        let deadline = Instant::now() + REPLY_WAIT;
        while Instant::now() < deadline {
            if let Some(msg) = self.recv_one()?
                && msg.xid() == xid
            {
                return Ok(Some(msg));
            }
        }
        Ok(None)
    }

    /// One reply, observed; `None` on timeout or for a datagram that is not ours.
    fn recv_one(&mut self) -> Result<Option<Message>> {
        let mut buf = [0u8; 1500];
        let n = match self.sock.recv(&mut buf) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        };
        let Ok(msg) = Message::from_bytes(&buf[..n]) else {
            return Ok(None);
        };
        if msg.chaddr().len() < 6 || msg.opcode() != dhcproto::v4::Opcode::BootReply {
            return Ok(None);
        }
        self.observe(&msg);
        Ok(Some(msg))
    }

    /// Whether `owner`'s ACKed lease time is up by `now` (within a second): the server may then
    /// reclaim the address and grant it to another client (a client not stepped for a whole
    /// lease time, as on a busy machine between rounds).
    fn lease_over(&self, owner: &Mac, now: u64) -> bool {
        self.acked
            .get(owner)
            .is_some_and(|a| now + 1 >= a.at + u64::from(a.lease_time))
    }

    /// Check an OFFER or ACK against every address granted so far, and record ACKs.
    fn observe(&mut self, msg: &Message) {
        let mut mac = [0u8; 6];
        mac.copy_from_slice(&msg.chaddr()[..6]);
        let ip = msg.yiaddr();
        let kind = msg.opts().msg_type();
        if kind == Some(MessageType::Nak) {
            self.naks += 1;
            if self.acked.contains_key(&mac) && self.offers_may_conflict {
                self.stale_naks += 1;
            } else if self.acked.contains_key(&mac) {
                self.violations
                    .push(format!("NAK for {mac:02x?}, which holds an ACKed lease"));
            }
            return;
        }
        let stale = self.released.get(&mac).is_some_and(|x| msg.xid() < *x);
        if !matches!(kind, Some(MessageType::Offer | MessageType::Ack))
            || ip.is_unspecified()
            || stale
        {
            return;
        }
        let offer_only = self.offers_may_conflict && kind == Some(MessageType::Offer);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        if let Some(owner) = self.owners.get(&ip)
            && *owner != mac
            && !offer_only
            && !self.lease_over(owner, now)
        {
            self.violations.push(format!(
                "{kind:?} of {ip} to {mac:02x?}, but it was ACKed to {owner:02x?}"
            ));
        }
        if kind != Some(MessageType::Ack) {
            return;
        }
        let lease_time = match msg.opts().get(OptionCode::AddressLeaseTime) {
            Some(DhcpOption::AddressLeaseTime(t)) => *t,
            _ => 0,
        };
        let at = now;
        if let Some(old) = self.acked.get(&mac)
            && old.ip != ip
        {
            self.owners.remove(&old.ip);
        }
        self.owners.insert(ip, mac);
        self.acked.insert(mac, Ack { ip, lease_time, at });
        self.acks += 1;
    }
}
