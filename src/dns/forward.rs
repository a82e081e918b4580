//! Upstream forwarding with a cache, for every name outside our zones.
//! Owns the upstream exchange (UDP, TCP when the answer is truncated), failover between
//! upstreams inside one time budget, and the answer cache. Must not answer local names (that is
//! `zone`) nor touch the name index. The cache is a std Mutex held only to copy in or out,
//! never across `.await`; its logic takes `now` so tests drive it without a clock.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_server::proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_server::proto::rr::{DNSClass, LowerName, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::oneshot;
use tokio::time::timeout;
use tracing::debug;

use crate::dns::wire::{
    ClientEdns, HEADER_LEN, TYPE_OPT, client_edns, count, fit, question_end, records, udp_limit,
};
use crate::metrics::{Histogram, SYNC_BOUNDS_NS};

/// EDNS payload we advertise upstream and accept back (RFC 9715 / DNS flag day 2020).
pub const EDNS_PAYLOAD: u16 = 1232;
/// Longest a positive answer is cached, and a negative one (RFC 2308 caps negative caching).
const MAX_POSITIVE_TTL: u32 = 86_400;
const MAX_NEGATIVE_TTL: u32 = 3_600;

#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("no upstream answered within {0:?}")]
    Timeout(Duration),
    #[error("upstream {upstream}: {source}")]
    Io {
        upstream: SocketAddr,
        source: io::Error,
    },
    #[error("cannot encode the query: {0}")]
    Encode(String),
}

/// The sections of an upstream answer, as relayed to the client.
#[derive(Clone, Debug, PartialEq)]
pub struct Answer {
    pub rcode: ResponseCode,
    pub answers: Vec<Record>,
    pub authorities: Vec<Record>,
    pub additionals: Vec<Record>,
}

impl Answer {
    fn from_message(msg: Message) -> Answer {
        Answer {
            rcode: msg.metadata.response_code,
            answers: msg.answers,
            authorities: msg.authorities,
            additionals: msg.additionals,
        }
    }

    /// How long this answer may be cached; None: not at all.
    fn cache_ttl(&self) -> Option<u32> {
        match self.rcode {
            ResponseCode::NoError if !self.answers.is_empty() => self
                .answers
                .iter()
                .map(|r| r.ttl)
                .min()
                .map(|t| t.min(MAX_POSITIVE_TTL)),
            ResponseCode::NoError | ResponseCode::NXDomain => {
                // RFC 2308 §5: the negative TTL is min(SOA TTL, SOA MINIMUM).
                self.authorities.iter().find_map(|r| match &r.data {
                    RData::SOA(soa) => Some(r.ttl.min(soa.minimum).min(MAX_NEGATIVE_TTL)),
                    _ => None,
                })
            }
            _ => None,
        }
        .filter(|ttl| *ttl > 0)
    }
}

/// The cache key: the question section (name, type, class) in wire form, lowercase.
type CacheKey = Box<[u8]>;

/// A cached answer as wire bytes: the whole response (header, question, records; no OPT) and
/// where its TTLs sit, so that a hit is one copy and a few patches.
struct Entry {
    wire: Vec<u8>,
    ttl_at: Vec<u32>,
    stored: Instant,
    expires: Instant,
}

/// Answers by question until their TTL runs out. Bounded: when full, the oldest entry goes
/// (first in, first out: O(1), no scan). An expired entry stays until it is replaced or
/// evicted; a lookup never returns it.
pub struct Cache {
    entries: HashMap<CacheKey, Entry>,
    /// Keys in insertion order; always the same set as `entries`.
    order: VecDeque<CacheKey>,
    capacity: usize,
}

impl Cache {
    pub fn new(capacity: usize) -> Cache {
        Cache {
            entries: HashMap::new(),
            order: VecDeque::new(),
            capacity,
        }
    }

    pub fn get(&self, query: &Query, now: Instant) -> Option<Answer> {
        let entry = self.live(&query_key(query)?, now)?;
        let mut wire = entry.wire.clone();
        age(entry, &mut wire, now);
        Message::from_vec(&wire).ok().map(Answer::from_message)
    }

    /// Answer the raw query `q` from the cache into `out` (true), or leave it (false): the
    /// client's id, RD, CD and question spelling, TTLs aged, RA set, an OPT record if the client
    /// sent one (our payload, its DO bit), truncated to what the client can take over UDP.
    pub fn answer(&self, q: &[u8], tcp: bool, now: Instant, out: &mut Vec<u8>) -> bool {
        let Some((key, qend, edns)) = raw_question(q) else {
            return false;
        };
        let Some(entry) = self.live(&key, now) else {
            return false;
        };
        out.clear();
        out.extend_from_slice(&entry.wire);
        out[..2].copy_from_slice(&q[..2]);
        out[2] = 0x80 | (q[2] & 0x01);
        out[3] = 0x80 | (q[3] & 0x10) | (entry.wire[3] & 0x0f);
        out[HEADER_LEN..qend].copy_from_slice(&q[HEADER_LEN..qend]);
        age(entry, out, now);
        if let Some(edns) = edns {
            out.extend_from_slice(&[0, 0, 41]);
            out.extend_from_slice(&EDNS_PAYLOAD.to_be_bytes());
            out.extend_from_slice(&[0, 0, if edns.dnssec_ok { 0x80 } else { 0 }, 0, 0, 0]);
            let ar = count(out, 10).saturating_add(1).to_be_bytes();
            out[10..12].copy_from_slice(&ar);
        }
        let limit = if tcp {
            usize::from(u16::MAX)
        } else {
            udp_limit(edns)
        };
        if out.len() > limit {
            *out = fit(std::mem::take(out), limit);
        }
        !out.is_empty()
    }

    fn live(&self, key: &[u8], now: Instant) -> Option<&Entry> {
        self.entries.get(key).filter(|e| now < e.expires)
    }

    pub fn put(&mut self, query: &Query, answer: &Answer, now: Instant) {
        if self.capacity == 0 {
            return;
        }
        let Some(ttl) = answer.cache_ttl() else {
            return;
        };
        let Some((key, wire, ttl_at)) = encode_answer(query, answer) else {
            return;
        };
        let entry = Entry {
            wire,
            ttl_at,
            stored: now,
            expires: now + Duration::from_secs(u64::from(ttl)),
        };
        if let Some(old) = self.entries.get_mut(&key) {
            *old = entry;
            return;
        }
        if self.entries.len() >= self.capacity
            && let Some(oldest) = self.order.pop_front()
        {
            self.entries.remove(&oldest);
        }
        self.order.push_back(key.clone());
        self.entries.insert(key, entry);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Lower every TTL of `wire` (a copy of `entry.wire`) by the seconds since it was stored.
fn age(entry: &Entry, wire: &mut [u8], now: Instant) {
    let elapsed = now.duration_since(entry.stored).as_secs();
    let elapsed = u32::try_from(elapsed).unwrap_or(u32::MAX);
    if elapsed == 0 {
        return;
    }
    for &at in &entry.ttl_at {
        let at = at as usize;
        let ttl = u32::from_be_bytes([wire[at], wire[at + 1], wire[at + 2], wire[at + 3]]);
        wire[at..at + 4].copy_from_slice(&ttl.saturating_sub(elapsed).to_be_bytes());
    }
}

/// The wire form of an answer to `query` (id 0), its cache key and where its TTLs are.
fn encode_answer(query: &Query, answer: &Answer) -> Option<(CacheKey, Vec<u8>, Vec<u32>)> {
    let mut msg = Message::new(0, MessageType::Response, OpCode::Query);
    msg.add_query(query.clone());
    msg.metadata.response_code = answer.rcode;
    msg.metadata.recursion_available = true;
    msg.answers = answer.answers.clone();
    msg.authorities = answer.authorities.clone();
    msg.additionals = answer.additionals.clone();
    let wire = msg.to_vec().ok()?;
    let qend = question_end(&wire)?;
    let ttl_at = records(&wire)?
        .iter()
        .filter(|r| r.rtype != TYPE_OPT)
        .filter_map(|r| u32::try_from(r.ttl_at).ok())
        .collect();
    Some((lower_key(&wire[HEADER_LEN..qend])?, wire, ttl_at))
}

fn query_key(query: &Query) -> Option<CacheKey> {
    let mut msg = Message::new(0, MessageType::Query, OpCode::Query);
    msg.add_query(query.clone());
    let wire = msg.to_vec().ok()?;
    lower_key(&wire[HEADER_LEN..question_end(&wire)?])
}

/// The lowercase key of a question section whose name is plain labels (no pointers).
fn lower_key(question: &[u8]) -> Option<CacheKey> {
    let mut key = question.to_vec();
    let mut at = 0;
    loop {
        let len = usize::from(*key.get(at)?);
        if len > 63 {
            return None;
        }
        if len == 0 {
            break;
        }
        key.get_mut(at + 1..=at + len)?.make_ascii_lowercase();
        at += len + 1;
    }
    (key.len() == at + 5).then(|| key.into_boxed_slice())
}

/// A query the cache may answer: QR clear, opcode QUERY, TC clear, one question, nothing but an
/// OPT record besides. Its key, where the question ends, and its EDNS.
fn raw_question(q: &[u8]) -> Option<(CacheKey, usize, Option<ClientEdns>)> {
    if q.len() < HEADER_LEN
        || q[2] & 0xfa != 0
        || count(q, 6) != 0
        || count(q, 8) != 0
        || count(q, 10) > 1
    {
        return None;
    }
    let qend = question_end(q)?;
    let key = lower_key(&q[HEADER_LEN..qend])?;
    let edns = if count(q, 10) == 1 {
        let rrs = records(q)?;
        (rrs[0].rtype == TYPE_OPT && q[rrs[0].start] == 0).then_some(())?;
        // Extended rcode and version 0 only (others get BADVERS from the general path).
        (q[rrs[0].ttl_at] == 0 && q[rrs[0].ttl_at + 1] == 0).then_some(())?;
        Some(client_edns(q)?)
    } else {
        (qend == q.len()).then_some(())?;
        None
    };
    Some((key, qend, edns))
}

/// Who is waiting for an upstream exchange already under way for the same question.
type Waiters = Vec<oneshot::Sender<Option<Answer>>>;

/// Forwards questions to the upstreams in order, starting with the one that answered last.
pub struct Forwarder {
    upstreams: Vec<SocketAddr>,
    budget: Duration,
    preferred: AtomicUsize,
    /// std Mutex: held only to copy an answer in or out, never across `.await`.
    cache: Mutex<Cache>,
    /// Questions being asked upstream now, so an identical one is sent once. std Mutex: held
    /// only to look up, insert or take a waiter list, never across `.await`.
    inflight: Mutex<HashMap<(LowerName, RecordType, DNSClass), Waiters>>,
    /// Time from sending to an upstream to its answer (answered exchanges), for `/metrics`.
    latency: Arc<Histogram>,
}

/// Removes an in-flight question when its exchange ends (or is dropped half-way), telling the
/// waiters what came of it (None: SERVFAIL).
struct InFlight<'a> {
    forwarder: &'a Forwarder,
    key: (LowerName, RecordType, DNSClass),
    answer: Option<Answer>,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let waiters = lock(&self.forwarder.inflight).remove(&self.key);
        for waiter in waiters.into_iter().flatten() {
            let _ = waiter.send(self.answer.clone());
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The maps hold no invariant a panic could break half-way.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Forwarder {
    pub fn new(upstreams: Vec<SocketAddr>, budget: Duration, cache_size: usize) -> Forwarder {
        Forwarder {
            upstreams,
            budget,
            preferred: AtomicUsize::new(0),
            cache: Mutex::new(Cache::new(cache_size)),
            inflight: Mutex::new(HashMap::new()),
            latency: Arc::new(Histogram::new(&SYNC_BOUNDS_NS, 1e9)),
        }
    }

    /// Upstream answer times, nanoseconds (shared: `/metrics` reads it).
    pub fn latency(&self) -> Arc<Histogram> {
        self.latency.clone()
    }

    /// Answer raw query `q` from the cache into `out`, if the cache holds its answer.
    pub fn answer_cached(&self, q: &[u8], tcp: bool, out: &mut Vec<u8>) -> bool {
        lock(&self.cache).answer(q, tcp, Instant::now(), out)
    }

    /// The answer for one question: from the cache, from an identical question already on its
    /// way upstream, or from the upstreams (see `ask_upstreams`).
    pub async fn resolve(&self, query: &Query) -> Result<Answer, ForwardError> {
        if let Some(hit) = lock(&self.cache).get(query, Instant::now()) {
            debug!(query = %query, "forward cache hit");
            return Ok(hit);
        }
        let key = (
            LowerName::new(query.name()),
            query.query_type(),
            query.query_class(),
        );
        let waiting = {
            let mut inflight = lock(&self.inflight);
            match inflight.get_mut(&key) {
                Some(waiters) => {
                    let (tx, rx) = oneshot::channel();
                    waiters.push(tx);
                    Some(rx)
                }
                None => {
                    inflight.insert(key.clone(), Vec::new());
                    None
                }
            }
        };
        if let Some(rx) = waiting {
            return match rx.await {
                Ok(Some(answer)) => Ok(answer),
                _ => Err(ForwardError::Timeout(self.budget)),
            };
        }
        let mut guard = InFlight {
            forwarder: self,
            key,
            answer: None,
        };
        let result = self.ask_upstreams(query).await;
        guard.answer = result.as_ref().ok().cloned();
        result
    }

    /// The first upstream answer that is usable (NOERROR or NXDOMAIN) within the budget. Each
    /// upstream gets an equal share of the time left, so a dead first upstream leaves time for
    /// the next; a refused port fails over at once. SERVFAIL and REFUSED try the next upstream
    /// and are returned only if no upstream does better.
    async fn ask_upstreams(&self, query: &Query) -> Result<Answer, ForwardError> {
        let deadline = Instant::now() + self.budget;
        let n = self.upstreams.len();
        let first = self.preferred.load(Ordering::Relaxed);
        let mut fallback: Option<Answer> = None;
        let mut last_error = ForwardError::Timeout(self.budget);
        for k in 0..n {
            let i = (first + k) % n;
            let upstream = self.upstreams[i];
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let share = left / u32::try_from(n - k).unwrap_or(1);
            let sent = Instant::now();
            let got = timeout(share, exchange(upstream, query)).await;
            if let Ok(Ok(_)) = &got {
                let took = sent.elapsed().as_nanos();
                self.latency
                    .observe(u64::try_from(took).unwrap_or(u64::MAX));
            }
            match got {
                Ok(Ok(answer))
                    if matches!(answer.rcode, ResponseCode::NoError | ResponseCode::NXDomain) =>
                {
                    self.preferred.store(i, Ordering::Relaxed);
                    lock(&self.cache).put(query, &answer, Instant::now());
                    return Ok(answer);
                }
                Ok(Ok(answer)) => {
                    debug!(%upstream, rcode = %answer.rcode, "upstream failed the query; trying the next");
                    fallback.get_or_insert(answer);
                }
                Ok(Err(e)) => {
                    debug!(%upstream, error = %e, "upstream unusable; trying the next");
                    last_error = e;
                }
                Err(_) => {
                    debug!(%upstream, ?share, "upstream timed out; trying the next");
                }
            }
        }
        fallback.ok_or(last_error)
    }

    /// Entries in the cache (for tests and metrics).
    pub fn cached(&self) -> usize {
        lock(&self.cache).len()
    }
}

/// One question to one upstream: UDP, then TCP if the answer came back truncated.
async fn exchange(upstream: SocketAddr, query: &Query) -> Result<Answer, ForwardError> {
    let id = random_id();
    let bytes = encode_query(id, query)?;
    let io_err = |source| ForwardError::Io { upstream, source };
    let reply = udp_exchange(upstream, &bytes, id, query)
        .await
        .map_err(io_err)?;
    if !reply.metadata.truncation {
        return Ok(Answer::from_message(reply));
    }
    debug!(%upstream, "truncated over UDP; retrying over TCP");
    let reply = tcp_exchange(upstream, &bytes, id, query)
        .await
        .map_err(io_err)?;
    Ok(Answer::from_message(reply))
}

fn encode_query(id: u16, query: &Query) -> Result<Vec<u8>, ForwardError> {
    let mut msg = Message::new(id, MessageType::Query, OpCode::Query);
    msg.add_query(query.clone());
    msg.metadata.recursion_desired = true;
    let mut edns = Edns::new();
    edns.set_max_payload(EDNS_PAYLOAD);
    msg.set_edns(edns);
    msg.to_vec()
        .map_err(|e| ForwardError::Encode(e.to_string()))
}

/// Whether `reply` answers our question: same id, a response, the same single question.
fn matches(reply: &Message, id: u16, query: &Query) -> bool {
    reply.metadata.id == id
        && reply.metadata.message_type == MessageType::Response
        && reply.queries.len() == 1
        && same_question(&reply.queries[0], query)
}

async fn udp_exchange(
    upstream: SocketAddr,
    bytes: &[u8],
    id: u16,
    query: &Query,
) -> io::Result<Message> {
    let local: SocketAddr = match upstream {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let sock = UdpSocket::bind(local).await?;
    // Connected: only the upstream's replies arrive, and a closed port fails fast (ICMP).
    sock.connect(upstream).await?;
    sock.send(bytes).await?;
    let mut buf = vec![0u8; usize::from(EDNS_PAYLOAD).max(4096)];
    loop {
        let n = sock.recv(&mut buf).await?;
        match Message::from_vec(&buf[..n]) {
            Ok(reply) if matches(&reply, id, query) => return Ok(reply),
            // A stray or forged datagram: keep waiting for the real one (the caller times out).
            _ => debug!(%upstream, "ignoring a datagram that does not answer our query"),
        }
    }
}

async fn tcp_exchange(
    upstream: SocketAddr,
    bytes: &[u8],
    id: u16,
    query: &Query,
) -> io::Result<Message> {
    let mut stream = TcpStream::connect(upstream).await?;
    let len = u16::try_from(bytes.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "query too long"))?;
    stream
        .write_all(&[&len.to_be_bytes()[..], bytes].concat())
        .await?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut buf).await?;
    let reply =
        Message::from_vec(&buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    if matches(&reply, id, query) {
        Ok(reply)
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "TCP reply does not answer our query",
        ))
    }
}

fn same_question(a: &Query, b: &Query) -> bool {
    a.query_type() == b.query_type()
        && a.query_class() == b.query_class()
        && LowerName::new(a.name()) == LowerName::new(b.name())
}

/// A query id that is hard to guess: std's per-process random hash keys over a counter.
fn random_id() -> u16 {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_usize(COUNTER.fetch_add(1, Ordering::Relaxed));
    (h.finish() & 0xffff) as u16
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_server::proto::rr::Name;
    use hickory_server::proto::rr::rdata::{A, SOA};

    fn query(name: &str) -> Query {
        Query::query(Name::from_ascii(name).expect("name"), RecordType::A)
    }

    fn positive(ttls: &[u32]) -> Answer {
        let answers = ttls
            .iter()
            .map(|t| {
                let name = Name::from_ascii("a.example.").expect("name");
                Record::from_rdata(name, *t, RData::A(A(Ipv4Addr::new(192, 0, 2, 1))))
            })
            .collect();
        Answer {
            rcode: ResponseCode::NoError,
            answers,
            authorities: vec![],
            additionals: vec![],
        }
    }

    fn negative(soa_ttl: u32, minimum: u32) -> Answer {
        let soa = SOA::new(Name::root(), Name::root(), 1, 1, 1, 1, minimum);
        Answer {
            rcode: ResponseCode::NXDomain,
            answers: vec![],
            authorities: vec![Record::from_rdata(Name::root(), soa_ttl, RData::SOA(soa))],
            additionals: vec![],
        }
    }

    #[test]
    fn cache_timeline() {
        let t0 = Instant::now();
        let mut cache = Cache::new(10);
        let q = query("a.example.");
        cache.put(&q, &positive(&[300, 60]), t0);
        // t=+10s: still there, TTLs aged by ten seconds; the key ignores case.
        let hit = cache
            .get(&query("A.Example."), t0 + Duration::from_secs(10))
            .expect("hit");
        let ttls: Vec<u32> = hit.answers.iter().map(|r| r.ttl).collect();
        assert_eq!(ttls, vec![290, 50]);
        // t=+60s: the shortest TTL has run out; the entry is gone.
        assert!(cache.get(&q, t0 + Duration::from_secs(60)).is_none());
    }

    #[test]
    fn what_is_cached_and_for_how_long() {
        assert_eq!(positive(&[300, 60]).cache_ttl(), Some(60));
        assert_eq!(positive(&[999_999]).cache_ttl(), Some(MAX_POSITIVE_TTL));
        assert_eq!(positive(&[0]).cache_ttl(), None);
        assert_eq!(negative(60, 30).cache_ttl(), Some(30));
        assert_eq!(negative(20, 30).cache_ttl(), Some(20));
        assert_eq!(negative(99_999, 99_999).cache_ttl(), Some(MAX_NEGATIVE_TTL));
        let mut no_soa = negative(60, 30);
        no_soa.authorities.clear();
        assert_eq!(no_soa.cache_ttl(), None);
        let mut servfail = positive(&[300]);
        servfail.rcode = ResponseCode::ServFail;
        assert_eq!(servfail.cache_ttl(), None);
    }

    #[test]
    fn full_cache_evicts_the_oldest_entry() {
        let t0 = Instant::now();
        let mut cache = Cache::new(2);
        cache.put(&query("a.example."), &positive(&[100]), t0);
        cache.put(&query("b.example."), &positive(&[100]), t0);
        // Replacing an entry keeps its place and the size.
        cache.put(&query("a.example."), &positive(&[200]), t0);
        assert_eq!(cache.len(), 2);
        cache.put(&query("c.example."), &positive(&[100]), t0);
        assert_eq!(cache.len(), 2);
        assert!(
            cache.get(&query("a.example."), t0).is_none(),
            "oldest evicted"
        );
        assert!(cache.get(&query("b.example."), t0).is_some());
        assert!(cache.get(&query("c.example."), t0).is_some());
        assert_eq!(cache.order.len(), cache.entries.len());
    }

    /// A raw query: id 0x4242, RD and CD set, `name` spelled as given, optional OPT with DO.
    fn raw(name: &str, opt: Option<bool>) -> Vec<u8> {
        let mut q = vec![
            0x42,
            0x42,
            0x01,
            0x10,
            0,
            1,
            0,
            0,
            0,
            0,
            0,
            u8::from(opt.is_some()),
        ];
        for label in name.trim_end_matches('.').split('.') {
            q.push(u8::try_from(label.len()).expect("short"));
            q.extend_from_slice(label.as_bytes());
        }
        q.extend_from_slice(&[0, 0, 1, 0, 1]);
        if let Some(dnssec_ok) = opt {
            q.extend_from_slice(&[
                0,
                0,
                41,
                16,
                0,
                0,
                0,
                if dnssec_ok { 0x80 } else { 0 },
                0,
                0,
                0,
            ]);
        }
        q
    }

    #[test]
    fn raw_hits_answer_like_the_cached_message() {
        let t0 = Instant::now();
        let mut cache = Cache::new(10);
        cache.put(&query("a.example."), &positive(&[300, 60]), t0);
        cache.put(&query("gone.example."), &negative(60, 30), t0);
        let mut out = Vec::new();
        let t = t0 + Duration::from_secs(10);
        assert!(cache.answer(&raw("A.example", None), false, t, &mut out));
        let msg = Message::from_vec(&out).expect("decodes");
        assert_eq!(msg.metadata.id, 0x4242);
        assert_eq!(msg.metadata.message_type, MessageType::Response);
        assert!(msg.metadata.recursion_desired && msg.metadata.recursion_available);
        assert!(msg.metadata.checking_disabled && !msg.metadata.authoritative);
        assert_eq!(
            msg.queries[0].name().to_ascii(),
            "A.example.",
            "the client's spelling"
        );
        let ttls: Vec<u32> = msg.answers.iter().map(|r| r.ttl).collect();
        assert_eq!(ttls, vec![290, 50]);
        assert!(msg.edns.is_none());
        // With EDNS: our payload, the client's DO bit.
        assert!(cache.answer(&raw("a.example", Some(true)), false, t, &mut out));
        let msg = Message::from_vec(&out).expect("decodes");
        let edns = msg.edns.expect("OPT echoed");
        assert!(edns.flags().dnssec_ok);
        assert_eq!(edns.max_payload(), EDNS_PAYLOAD);
        // Negative answers are cached for the SOA minimum, TTLs aged too.
        assert!(cache.answer(&raw("gone.example", None), false, t, &mut out));
        let msg = Message::from_vec(&out).expect("decodes");
        assert_eq!(msg.metadata.response_code, ResponseCode::NXDomain);
        assert_eq!(msg.authorities[0].ttl, 50);
        assert!(!cache.answer(
            &raw("gone.example", None),
            false,
            t0 + Duration::from_secs(30),
            &mut out
        ));
        // Not a plain query: left to the handler.
        let mut update = raw("a.example", None);
        update[2] = 0x28;
        assert!(!cache.answer(&update, false, t, &mut out));
        assert!(!cache.answer(&raw("b.example", None), false, t, &mut out));
    }

    #[test]
    fn raw_hits_too_long_for_udp_are_truncated_whole() {
        let t0 = Instant::now();
        let mut cache = Cache::new(10);
        let many: Vec<u32> = (0..120).map(|_| 60).collect();
        cache.put(&query("a.example."), &positive(&many), t0);
        let mut out = Vec::new();
        assert!(cache.answer(&raw("a.example", Some(false)), false, t0, &mut out));
        let msg = Message::from_vec(&out).expect("a truncated answer decodes");
        assert!(msg.metadata.truncation);
        assert!(msg.answers.is_empty());
        assert!(msg.edns.is_some(), "OPT kept");
        assert!(cache.answer(&raw("a.example", Some(false)), true, t0, &mut out));
        let msg = Message::from_vec(&out).expect("decodes");
        assert!(!msg.metadata.truncation);
        assert_eq!(msg.answers.len(), 120);
    }

    #[test]
    fn replies_must_match_id_and_question() {
        let q = query("a.example.");
        let mut reply = Message::new(7, MessageType::Response, OpCode::Query);
        reply.add_query(query("A.EXAMPLE."));
        assert!(matches(&reply, 7, &q));
        assert!(!matches(&reply, 8, &q));
        reply.queries[0] = query("b.example.");
        assert!(!matches(&reply, 7, &q));
        let mut request = Message::new(7, MessageType::Query, OpCode::Query);
        request.add_query(q.clone());
        assert!(!matches(&request, 7, &q), "a query is not a reply");
    }

    /// An upstream that answers every query after `delay`, counting them.
    async fn slow_upstream(delay: Duration) -> (SocketAddr, std::sync::Arc<AtomicUsize>) {
        let sock = UdpSocket::bind("127.0.0.27:0").await.expect("bind");
        let addr = sock.local_addr().expect("addr");
        let seen = std::sync::Arc::new(AtomicUsize::new(0));
        let count = seen.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            while let Ok((n, from)) = sock.recv_from(&mut buf).await {
                let Ok(q) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                count.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(delay).await;
                let mut r = Message::new(q.metadata.id, MessageType::Response, OpCode::Query);
                r.add_query(q.queries[0].clone());
                let ip = RData::A(A(Ipv4Addr::new(192, 0, 2, 9)));
                r.add_answer(Record::from_rdata(q.queries[0].name().clone(), 60, ip));
                let _ = sock.send_to(&r.to_vec().expect("encode"), from).await;
            }
        });
        (addr, seen)
    }

    /// `/metrics`: each answered upstream exchange is timed once; cache hits are not.
    #[tokio::test]
    async fn upstream_answers_are_timed_for_metrics() {
        let (addr, _) = slow_upstream(Duration::from_millis(100)).await;
        let fwd = Forwarder::new(vec![addr], Duration::from_secs(5), 10);
        let latency = fwd.latency();
        fwd.resolve(&query("timed.example."))
            .await
            .expect("answered");
        assert_eq!(latency.count(), 1);
        assert!(latency.sum() >= 100_000_000, "{} ns", latency.sum());
        fwd.resolve(&query("timed.example.")).await.expect("cached");
        assert_eq!(
            latency.count(),
            1,
            "a cache hit is not an upstream exchange"
        );
    }

    #[tokio::test]
    async fn identical_questions_in_flight_go_upstream_once() {
        let (addr, seen) = slow_upstream(Duration::from_millis(200)).await;
        let fwd = std::sync::Arc::new(Forwarder::new(vec![addr], Duration::from_secs(2), 0));
        let asks: Vec<_> = (0..10)
            .map(|_| {
                let fwd = fwd.clone();
                tokio::spawn(async move { fwd.resolve(&query("same.example.")).await })
            })
            .collect();
        for ask in asks {
            let answer = ask.await.expect("join").expect("answered");
            assert_eq!(answer.answers.len(), 1);
        }
        // No cache (size 0): only the sharing of the exchange kept it to one query.
        assert_eq!(seen.load(Ordering::SeqCst), 1);
        fwd.resolve(&query("same.example.")).await.expect("again");
        assert_eq!(
            seen.load(Ordering::SeqCst),
            2,
            "a later question asks again"
        );
    }

    /// On tokio's paused clock (it moves only when every task waits), so the budget is
    /// measured exactly, whatever else the machine is doing.
    #[tokio::test(start_paused = true)]
    async fn no_upstream_answering_ends_within_the_budget() {
        let silent = UdpSocket::bind("127.0.0.25:0").await.expect("bind");
        let fwd = Forwarder::new(
            vec![silent.local_addr().expect("addr")],
            Duration::from_millis(200),
            10,
        );
        let t0 = tokio::time::Instant::now();
        let result = fwd.resolve(&query("x.example.")).await;
        assert!(
            matches!(result, Err(ForwardError::Timeout(_))),
            "{result:?}"
        );
        assert!(
            t0.elapsed() <= Duration::from_millis(200),
            "{:?}",
            t0.elapsed()
        );
        assert_eq!(fwd.cached(), 0);
    }
}
