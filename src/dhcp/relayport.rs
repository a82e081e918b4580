//! Leases per relay agent port (issue 14): the relay agent information (option 82, RFC 3046)
//! names the port a relayed client sits behind: the circuit id (sub-option 1, meaningful per
//! relay, so keyed with giaddr) and the remote id (sub-option 2, e.g. a subscriber's modem).
//! `RelayPorts` remembers which addresses were offered or granted through which port, so that
//! the engine can refuse a new client once a port already holds `max_leases_per_relay_port`
//! live leases. Pure: time is passed in; the lease table says which entries still hold.
//! Memory: each address sits under at most one circuit and one remote id, so entries are
//! bounded by the addresses handed out. Not journaled: after a restart the counts start from
//! the leases granted through each port since then.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use crate::clock::UnixTime;
use crate::lease::table::LeaseTable;
use crate::lease::{ClientId, LeaseState};

/// One relay agent port.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PortKey {
    /// Circuit id as given by the relay at `giaddr`.
    Circuit(Ipv4Addr, Box<[u8]>),
    /// Remote id, wherever it was relayed from.
    Remote(Box<[u8]>),
}

impl std::fmt::Display for PortKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        match self {
            PortKey::Circuit(relay, id) => write!(f, "circuit-id {} via {relay}", hex(id)),
            PortKey::Remote(id) => write!(f, "remote-id {}", hex(id)),
        }
    }
}

/// The ports in option 82's value `info` from the relay at `giaddr` (a malformed sub-option
/// ends the walk; what came before counts).
pub fn ports(giaddr: Ipv4Addr, info: &[u8]) -> Vec<PortKey> {
    let mut out = Vec::new();
    let mut rest = info;
    while let [code, len, tail @ ..] = rest {
        let Some((value, next)) = tail.split_at_checked(usize::from(*len)) else {
            break;
        };
        match code {
            1 if !value.is_empty() => out.push(PortKey::Circuit(giaddr, value.into())),
            2 if !value.is_empty() => out.push(PortKey::Remote(value.into())),
            _ => {}
        }
        rest = next;
    }
    out
}

/// Which addresses went out through which port.
#[derive(Debug, Default)]
pub struct RelayPorts {
    /// Per port, the (address, client) pairs offered or granted through it.
    by_port: HashMap<PortKey, Vec<(Ipv4Addr, ClientId)>>,
    /// Per address, the ports it is listed under (so a new grant moves it).
    by_ip: HashMap<Ipv4Addr, Vec<PortKey>>,
}

impl RelayPorts {
    /// The first port named by option 82's `info` (from the relay at `giaddr`) that already
    /// holds `max` live offers or leases at `now` (None: room everywhere, or no port named).
    pub fn full_port(
        &mut self,
        table: &LeaseTable,
        now: UnixTime,
        giaddr: Ipv4Addr,
        info: &[u8],
        max: u32,
    ) -> Option<PortKey> {
        let holds = |ip: Ipv4Addr, client: &ClientId| {
            table.get(ip).is_some_and(|l| {
                &l.client == client && l.expires > now && l.state != LeaseState::Declined
            })
        };
        let max = usize::try_from(max).unwrap_or(usize::MAX);
        ports(giaddr, info)
            .into_iter()
            .find(|port| self.count(port, holds) >= max)
    }

    /// `ip` went to `client` through the ports option 82's `info` names (none named: it stays
    /// where it was listed, as for a unicast renewal).
    pub fn note(&mut self, giaddr: Ipv4Addr, info: &[u8], ip: Ipv4Addr, client: &ClientId) {
        let ports = ports(giaddr, info);
        if !ports.is_empty() {
            self.record(ip, client, &ports);
        }
    }

    /// How many of `port`'s entries still hold (`holds(ip, client)`: the client still has a
    /// live offer or lease on ip); the others are forgotten.
    pub fn count(&mut self, port: &PortKey, holds: impl Fn(Ipv4Addr, &ClientId) -> bool) -> usize {
        let Some(list) = self.by_port.get_mut(port) else {
            return 0;
        };
        let mut gone = Vec::new();
        list.retain(|(ip, client)| {
            let keep = holds(*ip, client);
            if !keep {
                gone.push(*ip);
            }
            keep
        });
        let n = list.len();
        if n == 0 {
            self.by_port.remove(port);
        }
        for ip in gone {
            self.unlist(ip, port);
        }
        n
    }

    /// `ip` now goes to `client` through `ports` (it leaves whatever ports listed it before).
    pub fn record(&mut self, ip: Ipv4Addr, client: &ClientId, ports: &[PortKey]) {
        if let Some(old) = self.by_ip.remove(&ip) {
            for port in old {
                if let Some(list) = self.by_port.get_mut(&port) {
                    list.retain(|(i, _)| *i != ip);
                    if list.is_empty() {
                        self.by_port.remove(&port);
                    }
                }
            }
        }
        if ports.is_empty() {
            return;
        }
        for port in ports {
            let list = self.by_port.entry(port.clone()).or_default();
            list.push((ip, client.clone()));
        }
        self.by_ip.insert(ip, ports.to_vec());
    }

    fn unlist(&mut self, ip: Ipv4Addr, port: &PortKey) {
        if let Some(ports) = self.by_ip.get_mut(&ip) {
            ports.retain(|p| p != port);
            if ports.is_empty() {
                self.by_ip.remove(&ip);
            }
        }
    }

    /// Entries held (for tests: the memory bound).
    pub fn entries(&self) -> usize {
        self.by_port.values().map(Vec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RELAY: Ipv4Addr = Ipv4Addr::new(192, 168, 5, 1);

    fn client(n: u8) -> ClientId {
        ClientId::from(vec![1, 2, 0, 0, 0, 0, n])
    }

    #[test]
    fn circuit_and_remote_ids_are_read_and_junk_is_skipped() {
        let info = [1, 3, b'p', b'o', b'1', 9, 1, 0, 2, 2, 0xaa, 0xbb];
        assert_eq!(
            ports(RELAY, &info),
            vec![
                PortKey::Circuit(RELAY, b"po1"[..].into()),
                PortKey::Remote([0xaa, 0xbb][..].into())
            ]
        );
        // A sub-option running past the end ends the walk; empty ids are no port.
        assert_eq!(ports(RELAY, &[1, 9, b'x']), vec![]);
        assert_eq!(
            ports(RELAY, &[1, 0, 2, 1, 7]),
            vec![PortKey::Remote([7][..].into())]
        );
        let other = Ipv4Addr::new(192, 168, 6, 1);
        assert_ne!(
            ports(RELAY, &info[..5]),
            ports(other, &info[..5]),
            "per relay"
        );
    }

    #[test]
    fn entries_that_no_longer_hold_are_forgotten_and_an_address_moves_between_ports() {
        let mut r = RelayPorts::default();
        let a = ports(RELAY, &[1, 1, b'a']);
        let b = ports(RELAY, &[1, 1, b'b']);
        let ip = |n| Ipv4Addr::new(192, 168, 5, n);
        r.record(ip(100), &client(1), &a);
        r.record(ip(101), &client(2), &a);
        assert_eq!(r.count(&a[0], |_, _| true), 2);
        // Client 2's lease ended: it no longer counts, and is forgotten.
        assert_eq!(r.count(&a[0], |i, _| i == ip(100)), 1);
        assert_eq!(r.entries(), 1);
        // The address goes to another client through port b: port a loses it.
        r.record(ip(100), &client(3), &b);
        assert_eq!(r.count(&a[0], |_, _| true), 0);
        assert_eq!(r.count(&b[0], |_, _| true), 1);
        // Given out without a port: listed nowhere.
        r.record(ip(100), &client(3), &[]);
        assert_eq!(r.entries(), 0);
        assert!(r.by_ip.is_empty() && r.by_port.is_empty());
    }
}
