//! The front door: every DNS datagram and TCP connection comes in here, in-process.
//! Owns the UDP and TCP loops, the order in which a query is tried (lease fast path, answer
//! cache, then the request handler with the client's real address), the caps that keep one
//! sender from starving the rest (slow queries per source, TCP connections in all and per
//! source, idle timeouts, accept back-off) and the counters. Must not decide answers itself:
//! that is `fast`, `forward` and the handler in `server`.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_server::net::NetError;
use hickory_server::net::runtime::TokioTime;
use hickory_server::net::xfer::Protocol;
use hickory_server::proto::op::{Message, Query, ResponseCode};
use hickory_server::proto::rr::{LowerName, RData, Record, RecordType};
use hickory_server::proto::serialize::binary::BinEncoder;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponse;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::time::timeout;
use tracing::debug;

use crate::dns::batch::{self, BATCH, Batch, Got};
use crate::dns::fast::FastPath;
use crate::dns::server::Front;
use crate::dns::tsig::Check;
use crate::dns::wire::{self, QuestionText};

/// Queries in the request handler (not answered by the fast path or the cache) at once, in
/// all and from one source address; more are dropped, as a busy server drops UDP.
const MAX_SLOW: usize = 1024;
const MAX_SLOW_PER_SOURCE: u32 = 64;
/// Open TCP connections, in all and from one source address; more are closed at once.
const MAX_TCP: usize = 256;
const MAX_TCP_PER_SOURCE: u32 = 16;
/// A TCP client that sends nothing (or does not take our answer) for this long is dropped.
const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(5);
/// After a failed accept (out of file descriptors, say), wait this long before the next.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// What the DNS server did, for the metrics endpoint: atomics any thread may read.
#[derive(Debug, Default)]
pub struct Counters {
    /// Responses sent (every kind, from every path).
    pub answered: AtomicU64,
    /// Of those, answered from the forwarding cache.
    pub cached: AtomicU64,
    /// Queries the request handler sent upstream (cache misses).
    pub forwarded: AtomicU64,
    /// Responses with rcode REFUSED.
    pub refused: AtomicU64,
    /// Datagrams, messages and connections dropped unanswered: malformed, QR set, over a cap.
    pub dropped: AtomicU64,
}

impl Counters {
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Count one response about to be sent.
    fn answered(&self, reply: &[u8]) {
        Counters::bump(&self.answered);
        if reply.get(3).is_some_and(|b| b & 0x0f == 5) {
            Counters::bump(&self.refused);
        }
    }
}

/// Slots per source address: at most `per_source` held at once by one address.
struct SourceLimit {
    /// std Mutex: held only to bump or drop a count, never across `.await`.
    held: Mutex<HashMap<IpAddr, u32>>,
    per_source: u32,
}

/// One held slot; gives it back on drop.
struct Slot {
    limit: Arc<SourceLimit>,
    ip: IpAddr,
    _global: tokio::sync::OwnedSemaphorePermit,
}

impl SourceLimit {
    fn new(per_source: u32) -> Arc<SourceLimit> {
        Arc::new(SourceLimit {
            held: Mutex::new(HashMap::new()),
            per_source,
        })
    }

    fn take(self: &Arc<Self>, ip: IpAddr, global: &Arc<tokio::sync::Semaphore>) -> Option<Slot> {
        let permit = global.clone().try_acquire_owned().ok()?;
        let mut held = self.lock();
        let n = held.entry(ip).or_insert(0);
        if *n >= self.per_source {
            return None;
        }
        *n += 1;
        Some(Slot {
            limit: self.clone(),
            ip,
            _global: permit,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, u32>> {
        // Counts only; a panic elsewhere cannot leave them half-changed.
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut held = self.limit.lock();
        if let Some(n) = held.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                held.remove(&self.ip);
            }
        }
    }
}

/// Everything the listeners share.
pub struct Door {
    pub front: Front,
    pub fast: Arc<FastPath>,
    pub fast_on: bool,
    pub counters: Arc<Counters>,
    slow: Arc<tokio::sync::Semaphore>,
    slow_sources: Arc<SourceLimit>,
    tcp: Arc<tokio::sync::Semaphore>,
    tcp_sources: Arc<SourceLimit>,
}

impl Door {
    pub fn new(front: Front, fast: Arc<FastPath>, fast_on: bool, counters: Arc<Counters>) -> Door {
        Door {
            front,
            fast,
            fast_on,
            counters,
            slow: Arc::new(tokio::sync::Semaphore::new(MAX_SLOW)),
            slow_sources: SourceLimit::new(MAX_SLOW_PER_SOURCE),
            tcp: Arc::new(tokio::sync::Semaphore::new(MAX_TCP)),
            tcp_sources: SourceLimit::new(MAX_TCP_PER_SOURCE),
        }
    }

    fn drop_one(&self, client: SocketAddr, why: &str) {
        Counters::bump(&self.counters.dropped);
        debug!(%client, why, "DNS message dropped");
    }

    /// The answer the fast path or the cache gives at once, into `out`.
    fn quick(&self, q: &[u8], client: SocketAddr, tcp: bool, out: &mut Vec<u8>) -> bool {
        let recursion = self.front.may_recurse(client.ip());
        if self.fast_on && self.fast.answer(q, out) {
            if recursion {
                out[3] |= 0x80;
            }
            return true;
        }
        if recursion
            && let Some(forwarder) = self.front.forwarder()
            && forwarder.answer_cached(q, tcp, out)
        {
            Counters::bump(&self.counters.cached);
            return true;
        }
        false
    }

    /// The request handler's responses to `q` (none if it is malformed), each fitted to what
    /// the client can take.
    async fn slow(&self, q: Vec<u8>, client: SocketAddr, protocol: Protocol) -> Vec<Vec<u8>> {
        // A zone transfer walks the whole index: off the async worker (block_in_place).
        if protocol == Protocol::Tcp
            && wire::is_transfer(&q)
            && let Some(replies) =
                crate::dns::dynamic::off_async(|| self.front.transfer(&q, client.ip()))
        {
            return replies;
        }
        let edns = wire::client_edns(&q);
        let limit = match protocol {
            Protocol::Udp => wire::udp_limit(edns),
            _ => usize::from(u16::MAX),
        };
        let request = match Request::from_bytes(q, client, protocol) {
            Ok(request) => request,
            Err(e) => {
                Counters::bump(&self.counters.dropped);
                debug!(%client, error = %e, "malformed DNS message dropped");
                return Vec::new();
            }
        };
        let collector = Collector {
            out: Arc::new(Mutex::new(Vec::new())),
            limit,
            recursion: self.front.may_recurse(client.ip()),
            dnssec_ok: edns.is_some_and(|e| e.dnssec_ok),
        };
        let tsig = self.front.query_tsig(request.as_slice());
        match &tsig {
            Some(Check::Rejected(rejected)) => {
                self.front
                    .reject_tsig(&request, rejected, collector.clone())
                    .await
            }
            _ => {
                self.front
                    .handle_request::<_, TokioTime>(&request, collector.clone())
                    .await
            }
        };
        let mut replies = std::mem::take(&mut *collector.lock());
        if collector.recursion
            && let [reply] = replies.as_mut_slice()
            && let Some(chased) = self.chase(reply, limit).await
        {
            *reply = chased;
        }
        if let Some(Check::Valid(v)) = &tsig {
            // RFC 8945 §5.3: the answer to a signed query is signed with its key.
            replies = replies
                .into_iter()
                .map(|r| {
                    let signed = self.front.sign_reply(v, r.clone());
                    match wire::truncated(&r) {
                        // The signature pushed it past the client's size: TC, then signed.
                        Some(tc) if signed.len() > limit => self.front.sign_reply(v, tc),
                        _ => signed,
                    }
                })
                .collect();
        }
        replies
    }

    /// A local answer that ends in a CNAME to a name outside our zones, with the target's
    /// records forwarded and appended (so stub resolvers such as glibc's get an address).
    async fn chase(&self, reply: &[u8], limit: usize) -> Option<Vec<u8>> {
        let authoritative_answer = reply[2] & 0x04 != 0 && reply[3] & 0x0f == 0;
        if !authoritative_answer || wire::count(reply, 6) == 0 {
            return None;
        }
        let mut msg = Message::from_vec(reply).ok()?;
        let query = msg.queries.first()?.clone();
        if matches!(query.query_type(), RecordType::CNAME | RecordType::ANY) {
            return None;
        }
        let RData::CNAME(target) = &msg.answers.last()?.data else {
            return None;
        };
        let target = target.0.clone();
        if !self.front.is_foreign_name(&LowerName::new(&target)) {
            return None;
        }
        let forwarder = self.front.forwarder()?;
        Counters::bump(&self.counters.forwarded);
        let answer = forwarder
            .resolve(&Query::query(target, query.query_type()))
            .await
            .ok()?;
        msg.answers.extend(answer.answers);
        if answer.rcode == ResponseCode::NXDomain {
            // RFC 6604 §3: the rcode of the last name in the chain.
            msg.metadata.response_code = ResponseCode::NXDomain;
        }
        Some(wire::fit(msg.to_vec().ok()?, limit))
    }
}

/// Collects the request handler's responses as bytes: RA set for clients we forward for, the
/// DO bit copied, too-long UDP answers replaced by a well-formed truncated reply.
#[derive(Clone)]
struct Collector {
    /// std Mutex: pushed to once per response, never held across `.await`.
    out: Arc<Mutex<Vec<Vec<u8>>>>,
    limit: usize,
    recursion: bool,
    dnssec_ok: bool,
}

impl Collector {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Vec<u8>>> {
        self.out.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait::async_trait]
impl ResponseHandler for Collector {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        let mut bytes = Vec::with_capacity(512);
        let mut encoder = BinEncoder::new(&mut bytes);
        encoder.set_max_size(u16::MAX);
        let info = response.destructive_emit(&mut encoder)?;
        if !wire::is_signed(&bytes) {
            if self.recursion {
                bytes[3] |= 0x80;
            }
            if self.dnssec_ok {
                wire::copy_dnssec_ok(&mut bytes);
            }
        }
        let bytes = wire::fit(bytes, self.limit);
        self.lock().push(bytes);
        Ok(info)
    }
}

/// hickory's rule: no answers to port 0, the unspecified or the broadcast address.
fn can_answer(client: SocketAddr) -> bool {
    let ip = client.ip();
    client.port() != 0 && !ip.is_unspecified() && !matches!(ip, IpAddr::V4(v4) if v4.is_broadcast())
}

/// One UDP listener. Runs until aborted.
pub async fn serve_udp(door: Arc<Door>, socket: Arc<UdpSocket>) {
    let mut batch = Batch::default();
    let mut replies: Vec<(Vec<u8>, SocketAddr)> = Vec::with_capacity(BATCH);
    // Reply buffers come back here once sent, so a busy loop allocates none.
    let mut spare: Vec<Vec<u8>> = Vec::with_capacity(BATCH);
    loop {
        if let Err(e) = socket.readable().await {
            debug!(error = %e, "DNS socket gone; UDP listener stopped");
            return;
        }
        loop {
            let n = match batch.recv(&socket) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    debug!(error = %e, "cannot read DNS queries");
                    break;
                }
            };
            for i in 0..n {
                let (got, q) = batch.datagram(i);
                udp_one(&door, &socket, got, q, &mut replies, &mut spare);
            }
            flush(&socket, &mut replies, &mut spare).await;
            if n < BATCH {
                break;
            }
            // A full batch: let the other tasks (DHCP, TCP, slow queries) run.
            tokio::task::yield_now().await;
        }
    }
}

/// One datagram: dropped, answered at once (the reply queued in `replies`), or handed to a
/// task of its own for the request handler.
fn udp_one(
    door: &Arc<Door>,
    socket: &Arc<UdpSocket>,
    got: Got,
    q: &[u8],
    replies: &mut Vec<(Vec<u8>, SocketAddr)>,
    spare: &mut Vec<Vec<u8>>,
) {
    let Some(client) = got.from else {
        Counters::bump(&door.counters.dropped);
        return;
    };
    if got.truncated || !wire::is_query(q) || !can_answer(client) {
        door.drop_one(client, "not a query");
        return;
    }
    debug!(%client, question = %QuestionText(q), "udp query");
    let mut out = spare.pop().unwrap_or_else(|| Vec::with_capacity(512));
    if door.quick(q, client, false, &mut out) {
        door.counters.answered(&out);
        replies.push((out, client));
        return;
    }
    spare.push(out);
    let Some(slot) = door.slow_sources.take(client.ip(), &door.slow) else {
        door.drop_one(client, "too many queries in progress");
        return;
    };
    let (door, socket, q) = (door.clone(), socket.clone(), q.to_vec());
    tokio::spawn(async move {
        let _slot = slot;
        for reply in door.slow(q, client, Protocol::Udp).await {
            door.counters.answered(&reply);
            send_to(&socket, &reply, client).await;
        }
    });
}

/// Send the queued replies (one sendmmsg, then one by one for any the socket would not take)
/// and keep their buffers.
async fn flush(
    socket: &UdpSocket,
    replies: &mut Vec<(Vec<u8>, SocketAddr)>,
    spare: &mut Vec<Vec<u8>>,
) {
    let sent = batch::send(socket, replies);
    for (bytes, to) in &replies[sent..] {
        send_to(socket, bytes, *to).await;
    }
    spare.extend(replies.drain(..).map(|(mut bytes, _)| {
        bytes.clear();
        bytes
    }));
    spare.truncate(BATCH);
}

async fn send_to(socket: &UdpSocket, bytes: &[u8], to: SocketAddr) {
    let sent = match socket.try_send_to(bytes, to) {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => socket.send_to(bytes, to).await,
        other => other,
    };
    if let Err(e) = sent {
        debug!(error = %e, %to, "cannot send a DNS answer");
    }
}

/// One TCP listener: each connection gets a task, within the caps. Runs until aborted.
pub async fn serve_tcp(door: Arc<Door>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, client)) => match door.tcp_sources.take(client.ip(), &door.tcp) {
                Some(slot) => {
                    tokio::spawn(serve_connection(door.clone(), stream, client, slot));
                }
                None => door.drop_one(client, "too many TCP connections"),
            },
            Err(e) => {
                // Out of file descriptors (or another transient failure): slow down rather
                // than spin on a listener that stays readable.
                debug!(error = %e, "cannot accept a DNS TCP connection; backing off");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

/// Queries on one TCP connection, answered in order, until the client goes quiet or away.
async fn serve_connection(door: Arc<Door>, stream: TcpStream, client: SocketAddr, _slot: Slot) {
    let (mut rd, mut wr) = stream.into_split();
    let mut out = Vec::with_capacity(512);
    loop {
        let mut len = [0u8; 2];
        if !matches!(
            timeout(TCP_IDLE_TIMEOUT, rd.read_exact(&mut len)).await,
            Ok(Ok(_))
        ) {
            return;
        }
        let mut q = vec![0u8; usize::from(u16::from_be_bytes(len))];
        if !matches!(
            timeout(TCP_IDLE_TIMEOUT, rd.read_exact(&mut q)).await,
            Ok(Ok(_))
        ) {
            return;
        }
        if !wire::is_query(&q) {
            door.drop_one(client, "not a query");
            continue;
        }
        debug!(%client, question = %QuestionText(&q), "tcp query");
        let replies = if door.quick(&q, client, true, &mut out) {
            vec![std::mem::take(&mut out)]
        } else {
            door.slow(q, client, Protocol::Tcp).await
        };
        for reply in replies {
            door.counters.answered(&reply);
            let Ok(n) = u16::try_from(reply.len()) else {
                continue;
            };
            let framed = [&n.to_be_bytes()[..], &reply].concat();
            if !matches!(
                timeout(TCP_IDLE_TIMEOUT, wr.write_all(&framed)).await,
                Ok(Ok(()))
            ) {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_limit_caps_one_address_not_the_others() {
        let global = Arc::new(tokio::sync::Semaphore::new(3));
        let limit = SourceLimit::new(2);
        let a: IpAddr = "10.0.0.1".parse().expect("ip");
        let b: IpAddr = "10.0.0.2".parse().expect("ip");
        let first = limit.take(a, &global).expect("first");
        let _second = limit.take(a, &global).expect("second");
        assert!(limit.take(a, &global).is_none(), "a is at its cap");
        let third = limit.take(b, &global).expect("b has room");
        assert!(limit.take(b, &global).is_none(), "global cap reached");
        drop(first);
        assert!(limit.take(a, &global).is_some(), "a slot came back");
        drop(third);
        assert_eq!(limit.lock().get(&b), None, "no count left for b");
    }
}
