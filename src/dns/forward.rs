//! Upstream forwarding with a cache, for every name outside our zones.
//! Owns the upstream exchange (UDP, TCP when the answer is truncated), failover between
//! upstreams inside one time budget, and the answer cache. Must not answer local names (that is
//! `zone`) nor touch the name index. The cache is a std Mutex held only to copy in or out,
//! never across `.await`; its logic takes `now` so tests drive it without a clock.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hickory_server::proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_server::proto::rr::{DNSClass, LowerName, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::timeout;
use tracing::debug;

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

    /// A copy with every TTL lowered by `elapsed` seconds.
    fn aged(&self, elapsed: u32) -> Answer {
        let age = |records: &[Record]| {
            records
                .iter()
                .cloned()
                .map(|mut r| {
                    r.ttl = r.ttl.saturating_sub(elapsed);
                    r
                })
                .collect()
        };
        Answer {
            rcode: self.rcode,
            answers: age(&self.answers),
            authorities: age(&self.authorities),
            additionals: age(&self.additionals),
        }
    }
}

type CacheKey = (LowerName, RecordType, DNSClass);

struct Entry {
    answer: Answer,
    stored: Instant,
    expires: Instant,
}

/// Answers by question until their TTL runs out. Bounded: when full, expired entries are
/// dropped, and if none had expired the new answer is not stored.
pub struct Cache {
    entries: HashMap<CacheKey, Entry>,
    capacity: usize,
}

impl Cache {
    pub fn new(capacity: usize) -> Cache {
        Cache {
            entries: HashMap::new(),
            capacity,
        }
    }

    pub fn get(&mut self, query: &Query, now: Instant) -> Option<Answer> {
        let key = key(query);
        let entry = self.entries.get(&key)?;
        if now >= entry.expires {
            self.entries.remove(&key);
            return None;
        }
        let elapsed = now.duration_since(entry.stored).as_secs();
        Some(
            entry
                .answer
                .aged(u32::try_from(elapsed).unwrap_or(u32::MAX)),
        )
    }

    pub fn put(&mut self, query: &Query, answer: &Answer, now: Instant) {
        let Some(ttl) = answer.cache_ttl() else {
            return;
        };
        if self.entries.len() >= self.capacity {
            self.entries.retain(|_, e| now < e.expires);
            if self.entries.len() >= self.capacity {
                return;
            }
        }
        self.entries.insert(
            key(query),
            Entry {
                answer: answer.clone(),
                stored: now,
                expires: now + Duration::from_secs(u64::from(ttl)),
            },
        );
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

fn key(query: &Query) -> CacheKey {
    (
        LowerName::new(query.name()),
        query.query_type(),
        query.query_class(),
    )
}

/// Forwards questions to the upstreams in order, starting with the one that answered last.
pub struct Forwarder {
    upstreams: Vec<SocketAddr>,
    budget: Duration,
    preferred: AtomicUsize,
    cache: Mutex<Cache>,
}

impl Forwarder {
    pub fn new(upstreams: Vec<SocketAddr>, budget: Duration, cache_size: usize) -> Forwarder {
        Forwarder {
            upstreams,
            budget,
            preferred: AtomicUsize::new(0),
            cache: Mutex::new(Cache::new(cache_size)),
        }
    }

    /// The answer for one question: from the cache, or from the first upstream that gives a
    /// usable one (NOERROR or NXDOMAIN) within the budget. Each upstream gets an equal share of
    /// the time left, so a dead first upstream leaves time for the next; a refused port fails
    /// over at once. SERVFAIL and REFUSED try the next upstream and are returned only if no
    /// upstream does better.
    pub async fn resolve(&self, query: &Query) -> Result<Answer, ForwardError> {
        if let Some(hit) = self.cache_lock().get(query, Instant::now()) {
            debug!(query = %query, "forward cache hit");
            return Ok(hit);
        }
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
            match timeout(share, exchange(upstream, query)).await {
                Ok(Ok(answer))
                    if matches!(answer.rcode, ResponseCode::NoError | ResponseCode::NXDomain) =>
                {
                    self.preferred.store(i, Ordering::Relaxed);
                    self.cache_lock().put(query, &answer, Instant::now());
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
        self.cache_lock().len()
    }

    fn cache_lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        // The cache holds no invariant a panic could break half-way.
        self.cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
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
        && key(&reply.queries[0]) == key(query)
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
        assert!(cache.is_empty());
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
    fn full_cache_drops_expired_entries_and_otherwise_skips() {
        let t0 = Instant::now();
        let mut cache = Cache::new(2);
        cache.put(&query("a.example."), &positive(&[10]), t0);
        cache.put(&query("b.example."), &positive(&[100]), t0);
        cache.put(&query("c.example."), &positive(&[100]), t0);
        assert!(
            cache.get(&query("c.example."), t0).is_none(),
            "full: not stored"
        );
        // t=+20s: a has expired, so c fits.
        let t = t0 + Duration::from_secs(20);
        cache.put(&query("c.example."), &positive(&[100]), t);
        assert!(cache.get(&query("c.example."), t).is_some());
        assert_eq!(cache.len(), 2);
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

    #[tokio::test]
    async fn no_upstream_answering_ends_within_the_budget() {
        let silent = UdpSocket::bind("127.0.0.25:0").await.expect("bind");
        let fwd = Forwarder::new(
            vec![silent.local_addr().expect("addr")],
            Duration::from_millis(200),
            10,
        );
        let t0 = Instant::now();
        let result = fwd.resolve(&query("x.example.")).await;
        assert!(
            matches!(result, Err(ForwardError::Timeout(_))),
            "{result:?}"
        );
        assert!(t0.elapsed() < Duration::from_millis(600));
        assert_eq!(fwd.cached(), 0);
    }
}
