//! Zone transfers to secondaries: AXFR (RFC 5936) of the local domain and the reverse zones
//! over TCP, and IXFR answered the way RFC 1995 §4 allows a server that keeps no journal of
//! differences (the whole zone, AXFR-style; only the SOA when the secondary is up to date).
//! Allowed by source address (`dns.transfer_to`) or by a TSIG key named in
//! `dns.transfer_keys`; a signed transfer is signed back per RFC 8945 §5.3.1 (every message,
//! each later one over the prior MAC). Anyone else falls through to the handler, which
//! REFUSES. Builds message bytes from the zones' own answers: no sockets, time passed in.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use hickory_server::proto::op::{Message, OpCode, Query, ResponseCode};
use hickory_server::proto::rr::{DNSClass, LowerName, Name, RData, Record, RecordType};
use hickory_server::proto::serialize::binary::{BinEncodable, BinEncoder};
use tracing::{debug, info};

use crate::dns::tsig::{Check, Keyring, Verified};
use crate::dns::zone::{LocalZone, ZoneKind};

/// Records are packed into messages of about this many bytes (before name compression), so a
/// large zone goes out as several messages, each well under the 64 KiB of a TCP frame.
const MESSAGE_BUDGET: usize = 16_384;

/// Who may transfer which zones.
pub struct Transfers {
    /// The local domain and the reverse zones (not the overrides zone).
    zones: Vec<Arc<LocalZone>>,
    /// `dns.transfer_to`: secondaries allowed by source address (NOTIFY goes to these).
    secondaries: Vec<SocketAddr>,
    /// `dns.transfer_keys`, as key names (lowercase, fully qualified).
    keys: Vec<Name>,
}

/// Why a transfer is allowed.
enum Allowed {
    Address,
    Key(Verified),
}

impl Transfers {
    pub fn new(zones: &[Arc<LocalZone>], secondaries: Vec<SocketAddr>, keys: &[String]) -> Self {
        Transfers {
            zones: zones
                .iter()
                .filter(|z| z.kind() != ZoneKind::Overrides)
                .cloned()
                .collect(),
            secondaries,
            keys: keys
                .iter()
                .filter_map(|k| Name::from_ascii(format!("{k}.")).ok())
                .map(|n| n.to_lowercase())
                .collect(),
        }
    }

    /// Whether any secondary or key is configured (otherwise every transfer is REFUSED).
    pub fn enabled(&self) -> bool {
        !self.secondaries.is_empty() || !self.keys.is_empty()
    }

    /// The responses to an allowed AXFR or IXFR over TCP for one of our zones; None for any
    /// other message, a zone we do not serve, or a client not allowed (then the handler
    /// answers: REFUSED, or NOTAUTH for a bad signature). A valid signature with a key that
    /// may not transfer gets a signed REFUSED here.
    pub fn answer(
        &self,
        q: &[u8],
        client: IpAddr,
        keyring: &Keyring,
        now: u64,
    ) -> Option<Vec<Vec<u8>>> {
        if !self.enabled() {
            return None;
        }
        let request = Message::from_vec(q).ok()?;
        let [query] = request.queries.as_slice() else {
            return None;
        };
        let is_transfer = matches!(query.query_type(), RecordType::AXFR | RecordType::IXFR);
        if request.metadata.op_code != OpCode::Query
            || !is_transfer
            || query.query_class() != DNSClass::IN
        {
            return None;
        }
        let origin = LowerName::new(query.name());
        let zone = self.zones.iter().find(|z| *z.origin_name() == origin)?;
        let allowed = match self.allowed(q, client, keyring, now) {
            Ok(allowed) => allowed?,
            Err(v) => {
                info!(%client, zone = %origin, "zone transfer with a key not in dns.transfer_keys: REFUSED");
                let refused = response(&request, ResponseCode::Refused, Vec::new());
                return Some(sign_all(vec![refused], Some(&v), keyring, now));
            }
        };
        let soa = zone.soa();
        let up_to_date = query.query_type() == RecordType::IXFR
            && client_serial(&request).is_some_and(|s| !serial_lt(s, serial(&soa)));
        let records = if up_to_date {
            vec![soa]
        } else {
            // The closing SOA is the opening one: a change made while the names are walked
            // reaches the secondary with the next NOTIFY.
            let mut records =
                zone.transfer_records(|n| self.best_zone(n).is_some_and(|b| Arc::ptr_eq(b, zone)))?;
            records.push(records.first()?.clone());
            records
        };
        info!(%client, zone = %origin, records = records.len(), kind = %query.query_type(), "zone transfer");
        let key = match &allowed {
            Allowed::Key(v) => Some(v),
            Allowed::Address => None,
        };
        let messages = pack(&request, records);
        Some(sign_all(messages, key, keyring, now))
    }

    /// Ok(Some) for an allowed client, Ok(None) for one not allowed (or a signature that does
    /// not verify: the handler answers it), Err for a good signature with a key that may not
    /// transfer.
    fn allowed(
        &self,
        q: &[u8],
        client: IpAddr,
        keyring: &Keyring,
        now: u64,
    ) -> Result<Option<Allowed>, Verified> {
        let by_address = self.secondaries.iter().any(|s| s.ip() == client);
        if !crate::dns::wire::is_signed(q) {
            return Ok(by_address.then_some(Allowed::Address));
        }
        match keyring.check(q, now) {
            Check::Valid(v) => {
                let name = keyring.key(v.key).map(|k| k.name.clone());
                if name.is_some_and(|n| self.keys.contains(&n)) || by_address {
                    Ok(Some(Allowed::Key(v)))
                } else {
                    Err(v)
                }
            }
            other => {
                debug!(%client, ?other, "signed zone transfer that does not verify");
                Ok(None)
            }
        }
    }

    /// The most specific of our zones that holds `name`.
    fn best_zone(&self, name: &LowerName) -> Option<&Arc<LocalZone>> {
        self.zones
            .iter()
            .filter(|z| z.origin_name().zone_of(name))
            .max_by_key(|z| z.origin_name().num_labels())
    }
}

fn serial(soa: &Record) -> u32 {
    match &soa.data {
        RData::SOA(soa) => soa.serial,
        _ => 0,
    }
}

/// The serial of the SOA an IXFR request carries in its authority section (RFC 1995 §3).
fn client_serial(request: &Message) -> Option<u32> {
    request.authorities.iter().find_map(|r| match &r.data {
        RData::SOA(soa) => Some(soa.serial),
        _ => None,
    })
}

/// Serial number arithmetic (RFC 1982): whether `a` comes before `b`.
fn serial_lt(a: u32, b: u32) -> bool {
    a != b && b.wrapping_sub(a) < 0x8000_0000
}

/// A response to `request` with `records` as answers; the question only in the first
/// message of a transfer (RFC 5936 §2.2.1 lets later ones leave it out).
fn response(request: &Message, rcode: ResponseCode, records: Vec<Record>) -> Message {
    let mut msg = Message::response(request.metadata.id, OpCode::Query);
    msg.metadata.authoritative = rcode == ResponseCode::NoError;
    msg.metadata.response_code = rcode;
    msg.queries = request.queries.clone();
    msg.answers = records;
    msg
}

/// `records` in as many messages as their size needs (each about `MESSAGE_BUDGET` bytes).
fn pack(request: &Message, records: Vec<Record>) -> Vec<Message> {
    let mut messages = Vec::new();
    let mut current: Vec<Record> = Vec::new();
    let mut size = 0;
    for record in records {
        let len = encoded_len(&record);
        if !current.is_empty() && size + len > MESSAGE_BUDGET {
            messages.push(std::mem::take(&mut current));
            size = 0;
        }
        size += len;
        current.push(record);
    }
    messages.push(current);
    messages
        .into_iter()
        .enumerate()
        .map(|(i, records)| {
            let mut msg = response(request, ResponseCode::NoError, records);
            if i > 0 {
                msg.queries.clear();
            }
            msg
        })
        .collect()
}

/// The uncompressed wire length of a record (an upper bound of what it costs in a message).
fn encoded_len(record: &Record) -> usize {
    let mut bytes = Vec::with_capacity(64);
    let mut encoder = BinEncoder::new(&mut bytes);
    match record.emit(&mut encoder) {
        Ok(()) => bytes.len(),
        Err(_) => MESSAGE_BUDGET,
    }
}

/// Encode every message; with a key, sign the first over the request MAC and each later one
/// over the prior MAC (RFC 8945 §5.3.1). A message that cannot be encoded ends the transfer
/// (the secondary sees it cut short and retries).
fn sign_all(
    messages: Vec<Message>,
    key: Option<&Verified>,
    keyring: &Keyring,
    now: u64,
) -> Vec<Vec<u8>> {
    let mut out = Vec::with_capacity(messages.len());
    let mut prior: Option<Vec<u8>> = None;
    for mut msg in messages {
        let Ok(unsigned) = msg.to_vec() else {
            debug!("cannot encode a zone transfer message");
            break;
        };
        let Some(v) = key else {
            out.push(unsigned);
            continue;
        };
        let record = match &prior {
            None => keyring.sign_response(v, &unsigned, now, None),
            Some(mac) => keyring.sign_continuation(v, mac, &unsigned, now),
        };
        let Some(record) = record else {
            debug!("cannot sign a zone transfer message");
            break;
        };
        prior = Some(record.data.mac.clone());
        msg.signature = Some(Box::new(record));
        match msg.to_vec() {
            Ok(bytes) => out.push(bytes),
            Err(_) => break,
        }
    }
    out
}

/// A NOTIFY (RFC 1996 §3.7) for `zone` with its current SOA in the answer section.
pub fn notify_message(id: u16, soa: &Record) -> Option<Vec<u8>> {
    let mut msg = Message::new(
        id,
        hickory_server::proto::op::MessageType::Query,
        OpCode::Notify,
    );
    msg.metadata.authoritative = true;
    msg.add_query(Query::query(soa.name.clone(), RecordType::SOA));
    msg.add_answer(soa.clone());
    msg.to_vec().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_arithmetic_wraps() {
        assert!(serial_lt(1, 2));
        assert!(!serial_lt(2, 2));
        assert!(!serial_lt(3, 2));
        assert!(serial_lt(u32::MAX, 1), "1 comes after a wrap");
        assert!(!serial_lt(1, u32::MAX));
    }
}
