//! NOTIFY (RFC 1996) to the secondaries in `dns.transfer_to` when the zones' serial changes:
//! one task on the async runtime reads `Names::serial` once a second (so at most one NOTIFY
//! per second per zone, however many leases change), and each (zone, secondary) gets its own
//! sender that retries until answered. Signed with the first `dns.transfer_keys` key when one
//! is configured. Never runs on the DHCP thread: the only thing it shares is the serial,
//! read under the names read lock, which is never held across `.await`.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::task::AbortHandle;
use tracing::{debug, info};

use crate::clock::Clock;
use crate::dns::names::SharedNames;
use crate::dns::tsig::{TsigKey, sign};
use crate::dns::xfr::notify_message;
use crate::dns::zone::LocalZone;

/// How often the serial is read: the coalescing interval.
const POLL: Duration = Duration::from_secs(1);
/// NOTIFYs sent per change before giving up (RFC 1996 §4.3: a few, with a timeout between).
const ATTEMPTS: u32 = 5;
/// How long each attempt waits for the answer.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);

/// What the notifier needs: the zones, who to tell, and how to sign.
pub struct Notifier {
    pub zones: Vec<Arc<LocalZone>>,
    pub secondaries: Vec<SocketAddr>,
    pub key: Option<TsigKey>,
    pub names: SharedNames,
    pub clock: Arc<dyn Clock>,
}

impl Notifier {
    /// Runs until aborted: a NOTIFY round at start (a restarted primary may have changed) and
    /// after every serial change, at most one round per `POLL`. A round for a zone replaces
    /// the retries still running for the previous one.
    pub async fn run(self) {
        if self.secondaries.is_empty() || self.zones.is_empty() {
            return;
        }
        let me = Arc::new(self);
        let mut running: HashMap<(usize, SocketAddr), AbortHandle> = HashMap::new();
        let mut last = None;
        let mut tick = tokio::time::interval(POLL);
        loop {
            tick.tick().await;
            let serial = me.serial();
            if last == Some(serial) {
                continue;
            }
            last = Some(serial);
            debug!(serial, "zone serial changed; notifying secondaries");
            for (z, zone) in me.zones.iter().enumerate() {
                for target in &me.secondaries {
                    let task = tokio::spawn(notify_one(me.clone(), zone.clone(), *target));
                    if let Some(old) = running.insert((z, *target), task.abort_handle()) {
                        old.abort();
                    }
                }
            }
        }
    }

    fn serial(&self) -> u32 {
        self.names.read().serial()
    }

    /// The NOTIFY bytes (signed if a key is configured) and the id to match the answer by.
    fn message(&self, zone: &LocalZone) -> Option<(u16, Vec<u8>)> {
        let id: u16 = rand_id();
        let bytes = notify_message(id, &zone.soa())?;
        match &self.key {
            None => Some((id, bytes)),
            Some(key) => sign(&bytes, key, self.clock.now().0)
                .ok()
                .map(|s| (id, s.bytes)),
        }
    }
}

/// Tell one secondary about one zone: up to `ATTEMPTS` NOTIFYs, until one is answered.
async fn notify_one(notifier: Arc<Notifier>, zone: Arc<LocalZone>, target: SocketAddr) {
    let local: SocketAddr = match target {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = match UdpSocket::bind(local).await {
        Ok(s) => s,
        Err(e) => {
            info!(error = %e, %target, "cannot send NOTIFY");
            return;
        }
    };
    let zone_name = zone.origin_name().to_string();
    for attempt in 1..=ATTEMPTS {
        let Some((id, bytes)) = notifier.message(&zone) else {
            return;
        };
        if let Err(e) = socket.send_to(&bytes, target).await {
            debug!(error = %e, %target, zone = %zone_name, "cannot send NOTIFY");
        } else if answered(&socket, target, id).await {
            debug!(%target, zone = %zone_name, attempt, "NOTIFY answered");
            return;
        }
    }
    info!(%target, zone = %zone_name, "NOTIFY not answered after {ATTEMPTS} attempts");
}

/// Whether `target` answers NOTIFY `id` (QR=1, opcode NOTIFY) within `ATTEMPT_TIMEOUT`.
async fn answered(socket: &UdpSocket, target: SocketAddr, id: u16) -> bool {
    let wait = async {
        let mut buf = [0u8; 1024];
        loop {
            let Ok((n, from)) = socket.recv_from(&mut buf).await else {
                return false;
            };
            let reply = &buf[..n];
            if from == target
                && n >= 12
                && u16::from_be_bytes([reply[0], reply[1]]) == id
                && reply[2] & 0x80 != 0
                && (reply[2] >> 3) & 0x0f == 4
            {
                return true;
            }
        }
    };
    tokio::time::timeout(ATTEMPT_TIMEOUT, wait)
        .await
        .unwrap_or(false)
}

/// A message id nobody can predict (answers are matched on it).
fn rand_id() -> u16 {
    let mut b = [0u8; 2];
    if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b).is_err() {
        return 0x4e4f;
    }
    u16::from_be_bytes(b)
}
