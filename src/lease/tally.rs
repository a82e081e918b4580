//! Bound and declined leases counted per subnet, kept up to date by `LeaseTable` on every
//! insert and removal (O(subnets) per change, no allocation), so `/metrics` never scans the
//! table. Pure data: no clock, no I/O.

use std::net::Ipv4Addr;

use crate::lease::{Lease, LeaseState};

/// The netmask of a prefix length as a number (`/24`: 0xffff_ff00; 0: 0; over 32: as 32).
pub fn prefix_mask(prefix_len: u8) -> u32 {
    if prefix_len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix_len.min(32)))
    }
}

#[derive(Clone, Debug, Default)]
pub struct Tally {
    /// (network, mask) per subnet, in config order.
    nets: Vec<(u32, u32)>,
    /// (bound, declined) per subnet, same order.
    counts: Vec<(u64, u64)>,
}

impl Tally {
    /// Count per these subnets (network, prefix length) from now on; counts start at zero.
    pub fn new(subnets: &[(Ipv4Addr, u8)]) -> Tally {
        let nets = subnets
            .iter()
            .map(|(net, len)| {
                let mask = prefix_mask(*len);
                (u32::from(*net) & mask, mask)
            })
            .collect();
        Tally {
            nets,
            counts: vec![(0, 0); subnets.len()],
        }
    }

    /// Count `l` in (`added`) or out of its subnet; offers and addresses outside every subnet
    /// are not counted.
    pub fn count(&mut self, l: &Lease, added: bool) {
        let ip = u32::from(l.ip);
        let Some(i) = self.nets.iter().position(|(net, mask)| ip & mask == *net) else {
            return;
        };
        let Some((bound, declined)) = self.counts.get_mut(i) else {
            return;
        };
        let n = match l.state {
            LeaseState::Bound => bound,
            LeaseState::Declined => declined,
            LeaseState::Offered => return,
        };
        *n = if added { *n + 1 } else { n.saturating_sub(1) };
    }

    /// (bound, declined) per subnet, in the order given to `new`.
    pub fn counts(&self) -> &[(u64, u64)] {
        &self.counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::UnixTime;
    use crate::lease::{ClientId, HwAddr};

    fn lease(ip: [u8; 4], state: LeaseState) -> Lease {
        Lease {
            ip: ip.into(),
            client: ClientId::new(&[1, 2]),
            hwaddr: HwAddr::ethernet([1; 6]),
            hostname: None,
            expires: UnixTime(100),
            state,
        }
    }

    #[test]
    fn counts_by_subnet_and_state() {
        let mut t = Tally::new(&[([10, 0, 0, 0].into(), 24), ([10, 0, 1, 0].into(), 24)]);
        t.count(&lease([10, 0, 0, 5], LeaseState::Bound), true);
        t.count(&lease([10, 0, 0, 6], LeaseState::Bound), true);
        t.count(&lease([10, 0, 1, 6], LeaseState::Declined), true);
        t.count(&lease([10, 0, 1, 7], LeaseState::Offered), true);
        t.count(&lease([192, 0, 2, 1], LeaseState::Bound), true);
        assert_eq!(t.counts(), &[(2, 0), (0, 1)]);
        t.count(&lease([10, 0, 0, 5], LeaseState::Bound), false);
        t.count(&lease([10, 0, 1, 6], LeaseState::Declined), false);
        t.count(&lease([10, 0, 1, 6], LeaseState::Declined), false);
        assert_eq!(t.counts(), &[(1, 0), (0, 0)], "never below zero");
    }
}
