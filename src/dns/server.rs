//! DNS sockets (UDP and TCP per listen address), the request handler and the hickory catalog.
//! Owns binding, the catalog of local zones, the serve/shutdown lifecycle, and the handler's
//! policy: UPDATE to `update`, foreign names to the forwarder for clients allowed to recurse,
//! REFUSED for other classes, zone transfers and everyone else's foreign names. The listeners
//! themselves are `listen`. Must not build answers itself (that is `zone`, `fast`, `forward`)
//! nor touch the lease table.

use std::io;
use std::iter;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use hickory_server::net::runtime::Time;
use hickory_server::proto::op::{Edns, MessageType, Metadata, OpCode, ResponseCode};
use hickory_server::proto::rr::{DNSClass, LowerName, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::{Catalog, MessageResponseBuilder, ZoneHandler};
use tokio::net::{TcpListener, UdpSocket};
use tracing::{debug, info};

use crate::clock::Clock;
use crate::config::Config;
use crate::dns::dynamic::DynamicStore;
use crate::dns::fast::FastPath;
use crate::dns::forward::{EDNS_PAYLOAD, Forwarder};
use crate::dns::listen::{Counters, Door, serve_tcp, serve_udp};
use crate::dns::names::SharedNames;
use crate::dns::notify::Notifier;
use crate::dns::tsig::{Check, Keyring, Rejected, Verified};
use crate::dns::update::{UpdateHandler, tsig_key};
use crate::dns::wire::serve_failed;
use crate::dns::xfr::Transfers;
use crate::dns::zone::{LocalZone, ZoneKind, reverse_zone, zones_for};
use hickory_server::proto::rr::rdata::tsig::TsigError;
use hickory_server::proto::serialize::binary::BinEncoder;
use tokio::task::JoinSet;

/// Attempts to find a port free for both UDP and TCP when the config asks for port 0.
const PORT_ZERO_ATTEMPTS: usize = 16;

pub struct DnsServer {
    front: Front,
    counters: Arc<Counters>,
    /// Answers the common UDP queries before hickory sees them (if `fast_on`).
    fast: Arc<FastPath>,
    fast_on: bool,
    udp: Vec<UdpSocket>,
    tcp: Vec<TcpListener>,
    /// One per listen address, with the real port (UDP and TCP share it).
    addrs: Vec<SocketAddr>,
    /// NOTIFY to `dns.transfer_to` when the serial changes (None: no secondaries).
    notifier: Option<Notifier>,
}

/// The request handler: names in our zones (and static overrides) go to the catalog of local
/// zones; every other query goes to the forwarder if the client may recurse, or is REFUSED.
pub struct Front {
    catalog: Catalog,
    overrides: Option<Arc<LocalZone>>,
    forwarder: Option<Arc<Forwarder>>,
    /// RFC 2136 UPDATE (every UPDATE goes here, never to the catalog).
    updates: UpdateHandler,
    /// Networks whose clients may have foreign names forwarded.
    recursion_from: Vec<(IpAddr, u8)>,
    counters: Arc<Counters>,
    /// The TSIG keys, to answer a query signed with an unknown key BADKEY (RFC 8945 §5.2).
    keyring: Keyring,
    clock: Arc<dyn Clock>,
    /// AXFR/IXFR to the configured secondaries.
    transfers: Transfers,
}

impl DnsServer {
    /// Bind every listen address (UDP and TCP) and build the catalog over `names` (which
    /// already holds the hosts file's records: `dns::hosts::load`). Logs one line per listener: "listening for DNS on udp 127.0.0.1:5353".
    pub async fn bind(
        cfg: &Config,
        names: SharedNames,
        clock: Arc<dyn Clock>,
    ) -> std::io::Result<DnsServer> {
        DnsServer::bind_with_store(cfg, names, clock, None).await
    }

    /// Like `bind`, with the store that RFC 2136 UPDATEs write to (None: UPDATE is REFUSED).
    pub async fn bind_with_store(
        cfg: &Config,
        names: SharedNames,
        clock: Arc<dyn Clock>,
        store: Option<Arc<DynamicStore>>,
    ) -> std::io::Result<DnsServer> {
        let zones = zones_for(cfg, names.clone(), clock.clone())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let notifier = notifier(cfg, &zones, names.clone(), clock.clone());
        let fast = FastPath::new(cfg, &zones, names, clock.clone());
        let counters = Arc::new(Counters::default());
        let mut server = DnsServer {
            front: Front::new(cfg, zones, clock, store, counters.clone()),
            counters,
            fast: Arc::new(fast),
            fast_on: true,
            udp: Vec::new(),
            tcp: Vec::new(),
            addrs: Vec::new(),
            notifier,
        };
        for addr in &cfg.start.dns.listen {
            let (udp, tcp) = bind_pair(*addr).await?;
            let real = udp.local_addr()?;
            info!("listening for DNS on udp {real}");
            info!("listening for DNS on tcp {}", tcp.local_addr()?);
            server.addrs.push(real);
            server.udp.push(udp);
            server.tcp.push(tcp);
        }
        Ok(server)
    }

    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.addrs.clone()
    }

    /// What the server has done so far (shared: read it while the server runs).
    pub fn counters(&self) -> Arc<Counters> {
        self.counters.clone()
    }

    /// Upstream answer times (when forwarding), for `/metrics`.
    pub fn upstream_latency(&self) -> Option<Arc<crate::metrics::Histogram>> {
        self.front.forwarder().map(|f| f.latency())
    }

    /// Turn the lease fast path off (hickory answers every local query) or back on. For
    /// comparing the two paths; a daemon keeps it on.
    pub fn set_fast_path(&mut self, on: bool) {
        self.fast_on = on;
    }

    /// Serve until `shutdown` completes (becomes true, or its sender is dropped), then stop
    /// accepting and wait for the listener tasks to end.
    pub async fn run(self, mut shutdown: crate::Shutdown) -> std::io::Result<()> {
        if self.addrs.is_empty() {
            wait_for(&mut shutdown).await;
            return Ok(());
        }
        let door = Arc::new(Door::new(
            self.front,
            self.fast,
            self.fast_on,
            self.counters,
        ));
        let mut tasks = JoinSet::new();
        for socket in self.udp {
            tasks.spawn(serve_udp(door.clone(), Arc::new(socket)));
        }
        for listener in self.tcp {
            tasks.spawn(serve_tcp(door.clone(), listener));
        }
        if let Some(notifier) = self.notifier {
            tasks.spawn(notifier.run());
        }
        wait_for(&mut shutdown).await;
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        info!("DNS server stopped");
        Ok(())
    }
}

impl Front {
    fn new(
        cfg: &Config,
        zones: Vec<Arc<LocalZone>>,
        clock: Arc<dyn Clock>,
        store: Option<Arc<DynamicStore>>,
        counters: Arc<Counters>,
    ) -> Front {
        let mut catalog = Catalog::new();
        let updatable = zones
            .iter()
            .filter(|z| matches!(z.kind(), ZoneKind::Forward | ZoneKind::Reverse))
            .map(|z| z.origin().clone())
            .collect();
        let updates = UpdateHandler::new(&cfg.start.dns.tsig_keys, updatable, store, clock.clone());
        let keyring = Keyring::new(
            cfg.start
                .dns
                .tsig_keys
                .iter()
                .filter_map(tsig_key)
                .collect(),
        );
        let transfers = Transfers::new(
            &zones,
            cfg.start.dns.transfer_to.clone(),
            &cfg.start.dns.transfer_keys,
        );
        let mut overrides = None;
        for zone in zones {
            let origin = zone.origin().clone();
            debug!(zone = %origin, kind = ?zone.kind(), "serving local zone");
            if zone.kind() == ZoneKind::Overrides {
                overrides = Some(zone.clone());
            }
            catalog.upsert(origin, vec![zone as Arc<dyn ZoneHandler>]);
        }
        let forwarder = (!cfg.start.dns.upstreams.is_empty()).then(|| {
            info!(upstreams = ?cfg.start.dns.upstreams, timeout = ?cfg.start.dns.upstream_timeout, "forwarding other names");
            Arc::new(Forwarder::new(
                cfg.start.dns.upstreams.clone(),
                cfg.start.dns.upstream_timeout,
                cfg.start.dns.cache_size,
            ))
        });
        let recursion_from = cfg.start.dns.recursion_from.clone().unwrap_or_else(|| {
            let mut nets: Vec<(IpAddr, u8)> = cfg
                .subnets
                .iter()
                .map(|s| (IpAddr::V4(s.network), s.prefix_len))
                .collect();
            nets.push((IpAddr::V4(Ipv4Addr::LOCALHOST), 8));
            nets.push((IpAddr::V6(std::net::Ipv6Addr::LOCALHOST), 128));
            nets
        });
        Front {
            catalog,
            overrides,
            forwarder,
            updates,
            recursion_from,
            counters,
            keyring,
            clock,
            transfers,
        }
    }

    /// The responses to an allowed zone transfer over TCP (see `xfr`); None for any other
    /// message and for clients not allowed (the handler REFUSES them).
    pub fn transfer(&self, q: &[u8], client: IpAddr) -> Option<Vec<Vec<u8>>> {
        self.transfers
            .answer(q, client, &self.keyring, self.clock.now().0)
    }

    /// The TSIG state of a query (not an UPDATE: `update` checks its own): unsigned (or
    /// malformed: the handler answers as if unsigned), verified (its answers get signed,
    /// RFC 8945 §5.3), or rejected (NOTAUTH, `reject_tsig`). Checks the MAC once: a second
    /// check of the same request would see a replay.
    pub fn query_tsig(&self, q: &[u8]) -> Option<Check> {
        let is_update = q.get(2).is_some_and(|b| (b >> 3) & 0x0f == 5);
        if is_update || !crate::dns::wire::is_signed(q) {
            return None;
        }
        match self.keyring.check(q, self.clock.now().0) {
            Check::Unsigned | Check::Malformed(_) => None,
            checked => Some(checked),
        }
    }

    /// `reply` signed for the verified request `v` (unchanged if it cannot be signed).
    pub fn sign_reply(&self, v: &Verified, reply: Vec<u8>) -> Vec<u8> {
        match self
            .keyring
            .sign_response_bytes(v, &reply, self.clock.now().0)
        {
            Some(signed) => signed,
            None => {
                debug!("cannot sign an answer to a signed query; sent unsigned");
                reply
            }
        }
    }

    /// NOTAUTH with an unsigned TSIG error record, for a query signed with a key we do not
    /// know (BADKEY), a MAC that does not verify (BADSIG) or a truncated one (BADTRUNC); a query
    /// outside its time window (BADTIME) gets a signed NOTAUTH.
    pub async fn reject_tsig<R: ResponseHandler>(
        &self,
        request: &Request,
        rejected: &Rejected,
        mut response_handle: R,
    ) -> ResponseInfo {
        let now = self.clock.now().0;
        debug!(client = %request.src(), ?rejected, "query with a bad TSIG: NOTAUTH");
        let record = match rejected {
            Rejected::BadTime(v) => {
                let mut metadata = Metadata::response_from_request(&request.metadata);
                metadata.response_code = ResponseCode::NotAuth;
                let mut unsigned = Vec::with_capacity(512);
                let tbs =
                    MessageResponseBuilder::new(&request.queries, None).build_no_records(metadata);
                let encoded = tbs.destructive_emit(&mut BinEncoder::new(&mut unsigned));
                encoded.ok().and_then(|_| {
                    self.keyring
                        .sign_response(v, &unsigned, now, Some(TsigError::BadTime))
                })
            }
            _ => self.keyring.error_record(rejected, now),
        };
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.response_code = ResponseCode::NotAuth;
        let mut response =
            MessageResponseBuilder::new(&request.queries, None).build_no_records(metadata);
        if let Some(record) = record {
            response.set_signature(Box::new(record));
        }
        response_handle
            .send_response(response)
            .await
            .unwrap_or_else(|_| serve_failed(request))
    }

    /// Whether `client` may have foreign names forwarded (and sees RA set).
    pub fn may_recurse(&self, client: IpAddr) -> bool {
        self.forwarder.is_some() && self.recursion_from.iter().any(|n| in_network(client, *n))
    }

    pub fn forwarder(&self) -> Option<&Forwarder> {
        self.forwarder.as_deref()
    }

    /// REFUSED, for queries we will not answer (EDNS echoed).
    async fn refuse<R: ResponseHandler>(request: &Request, mut response_handle: R) -> ResponseInfo {
        let edns = request.edns.as_ref().map(|req| {
            let mut edns = Edns::new();
            edns.set_max_payload(req.max_payload().clamp(512, EDNS_PAYLOAD));
            edns
        });
        let builder = MessageResponseBuilder::new(&request.queries, edns.as_ref());
        let response = builder.error_msg(&request.metadata, ResponseCode::Refused);
        response_handle
            .send_response(response)
            .await
            .unwrap_or_else(|_| serve_failed(request))
    }

    /// NOTIMP for an opcode we do not serve (STATUS, DSO, ...) and BADVERS for an EDNS version
    /// above 0 (RFC 6891 §6.1.3), answered here at debug: hickory's catalog answers them the same
    /// but with a warn line per message, which any sender could use to flood the log.
    async fn unserved<R: ResponseHandler>(
        request: &Request,
        response_handle: &mut R,
    ) -> Option<ResponseInfo> {
        let mut edns = request.edns.as_ref().map(|req| {
            let mut edns = Edns::new();
            edns.set_max_payload(req.max_payload().clamp(512, EDNS_PAYLOAD));
            edns
        });
        let code = if !matches!(request.metadata.op_code, OpCode::Query | OpCode::Update) {
            ResponseCode::NotImp
        } else if request.edns.as_ref().is_some_and(|e| e.version() > 0) {
            ResponseCode::BADVERS
        } else {
            return None;
        };
        debug!(client = %request.src(), op = ?request.metadata.op_code, %code, "message not served");
        if let Some(edns) = edns.as_mut() {
            edns.set_rcode_high(code.high());
        }
        let response = MessageResponseBuilder::new(&request.queries, edns.as_ref())
            .error_msg(&request.metadata, code);
        Some(
            response_handle
                .send_response(response)
                .await
                .unwrap_or_else(|_| serve_failed(request)),
        )
    }

    /// A query we refuse whoever asks: another class than IN (RFC 1034 §4.3.2: our data is
    /// class IN; CHAOS version.bind included, never forwarded), or a zone transfer that `xfr`
    /// did not answer (over UDP, RFC 5936 §4.2; from a client not allowed; not our zone).
    fn always_refused(request: &Request) -> bool {
        request.metadata.op_code == OpCode::Query
            && request.queries.queries().iter().any(|q| {
                q.query_class() != DNSClass::IN
                    || matches!(q.query_type(), RecordType::AXFR | RecordType::IXFR)
            })
    }

    /// A plain query for a name that no local zone serves and no static name claims.
    fn is_foreign(&self, request: &Request) -> bool {
        if request.metadata.message_type != MessageType::Query
            || request.metadata.op_code != OpCode::Query
            || request.edns.as_ref().is_some_and(|e| e.version() > 0)
        {
            return false;
        }
        let Ok(info) = request.request_info() else {
            return false;
        };
        let name: &LowerName = info.query.name();
        if matches!(info.query.query_type(), RecordType::AXFR | RecordType::IXFR) {
            return false;
        }
        self.is_foreign_name(name)
    }

    /// Whether no local zone serves `name` and no static name claims it.
    pub fn is_foreign_name(&self, name: &LowerName) -> bool {
        let in_local_zone = self
            .catalog
            .find(name)
            .and_then(|handlers| handlers.first())
            .is_some_and(|h| !h.origin().is_root());
        !in_local_zone && !self.overrides.as_ref().is_some_and(|o| o.claims(name))
    }
}

#[async_trait::async_trait]
impl RequestHandler for Front {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        response_handle: R,
    ) -> ResponseInfo {
        if request.metadata.op_code == OpCode::Update
            && request.metadata.message_type == MessageType::Query
        {
            return self.updates.handle(request, response_handle).await;
        }
        let mut response_handle = response_handle;
        if let Some(sent) = Front::unserved(request, &mut response_handle).await {
            return sent;
        }
        if Front::always_refused(request) {
            return Front::refuse(request, response_handle).await;
        }
        match &self.forwarder {
            Some(forwarder) if self.is_foreign(request) => {
                if !self.may_recurse(request.src().ip()) {
                    return Front::refuse(request, response_handle).await;
                }
                Counters::bump(&self.counters.forwarded);
                forward(forwarder, request, response_handle).await
            }
            _ => {
                self.catalog
                    .handle_request::<R, T>(request, response_handle)
                    .await
            }
        }
    }
}

/// Answer `request` with the forwarder's answer (or SERVFAIL), as a recursive, non
/// authoritative response. EDNS is echoed with our payload size (at most 1232, RFC 9715).
async fn forward<R: ResponseHandler>(
    forwarder: &Forwarder,
    request: &Request,
    mut response_handle: R,
) -> ResponseInfo {
    let edns = request.edns.as_ref().map(|req| {
        let mut edns = Edns::new();
        edns.set_max_payload(req.max_payload().clamp(512, EDNS_PAYLOAD));
        edns
    });
    let builder = MessageResponseBuilder::new(&request.queries, edns.as_ref());
    let mut metadata = Metadata::response_from_request(&request.metadata);
    metadata.recursion_available = true;
    metadata.authoritative = false;
    let answer = match request.request_info() {
        Ok(info) => forwarder.resolve(info.query.original()).await,
        Err(_) => return serve_failed(request),
    };
    let sent = match &answer {
        Ok(answer) => {
            metadata.response_code = answer.rcode;
            let response = builder.build(
                metadata,
                answer.answers.iter(),
                answer.authorities.iter(),
                iter::empty(),
                answer.additionals.iter(),
            );
            response_handle.send_response(response).await
        }
        Err(e) => {
            debug!(error = %e, "forwarding failed; SERVFAIL");
            let response = builder.error_msg(&request.metadata, ResponseCode::ServFail);
            response_handle.send_response(response).await
        }
    };
    sent.unwrap_or_else(|e| {
        debug!(error = %e, "cannot send a forwarded answer");
        serve_failed(request)
    })
}

/// The NOTIFY sender for `dns.transfer_to`: the local domain and the subnets' own reverse
/// zones (not the RFC 1918 catch-all zones, which secondaries refresh on the SOA timers),
/// signed with the first `dns.transfer_keys` key. None without secondaries.
fn notifier(
    cfg: &Config,
    zones: &[Arc<LocalZone>],
    names: SharedNames,
    clock: Arc<dyn Clock>,
) -> Option<Notifier> {
    if cfg.start.dns.transfer_to.is_empty() {
        return None;
    }
    let own_reverse: Vec<String> = cfg
        .subnets
        .iter()
        .map(|s| format!("{}.", reverse_zone(s)))
        .collect();
    let zones = zones
        .iter()
        .filter(|z| match z.kind() {
            ZoneKind::Forward => true,
            ZoneKind::Reverse => own_reverse.contains(&z.origin_name().to_string()),
            ZoneKind::Overrides => false,
        })
        .cloned()
        .collect();
    let key = cfg.start.dns.transfer_keys.first().and_then(|name| {
        cfg.start
            .dns
            .tsig_keys
            .iter()
            .find(|k| &k.name == name)
            .and_then(tsig_key)
    });
    Some(Notifier {
        zones,
        secondaries: cfg.start.dns.transfer_to.clone(),
        key,
        names,
        clock,
    })
}

/// Whether `ip` is inside `network` (address, prefix length).
pub(crate) fn in_network(ip: IpAddr, (net, prefix): (IpAddr, u8)) -> bool {
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) => {
            let mask = crate::config::prefix_mask(prefix);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) => {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(prefix.min(128)))
                .unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V4(_)) => ip
            .to_ipv4_mapped()
            .is_some_and(|v4| in_network(IpAddr::V4(v4), (net, prefix))),
        _ => false,
    }
}

async fn wait_for(shutdown: &mut crate::Shutdown) {
    // An Err means the sender is gone: nobody can ask us to stop any more, so stop now.
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// UDP and TCP on the same address and port. For port 0, UDP picks the port and TCP follows;
/// if TCP finds that port taken, try again with a fresh one.
async fn bind_pair(addr: SocketAddr) -> io::Result<(UdpSocket, TcpListener)> {
    let context = |proto: &str, at: SocketAddr, e: io::Error| {
        io::Error::new(e.kind(), format!("DNS {proto} {at}: {e}"))
    };
    if addr.port() != 0 {
        // Bound before the privilege drop (`privdrop`) if we started as root.
        let udp = match crate::privdrop::take_udp(addr) {
            Some(s) => UdpSocket::from_std(s),
            None => UdpSocket::bind(addr).await,
        };
        let udp = udp.map_err(|e| context("udp", addr, e))?;
        let tcp = match crate::privdrop::take_tcp(addr) {
            Some(s) => TcpListener::from_std(s),
            None => TcpListener::bind(addr).await,
        };
        let tcp = tcp.map_err(|e| context("tcp", addr, e))?;
        return Ok((udp, tcp));
    }
    let mut last = io::Error::new(
        io::ErrorKind::AddrInUse,
        "no port free for both UDP and TCP",
    );
    for _ in 0..PORT_ZERO_ATTEMPTS {
        let udp = UdpSocket::bind(addr)
            .await
            .map_err(|e| context("udp", addr, e))?;
        let real = udp.local_addr()?;
        match TcpListener::bind(real).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => last = context("tcp", real, e),
            Err(e) => return Err(context("tcp", real, e)),
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{TestClock, UnixTime};
    use crate::config::{DnsConfig, Durability, Reservation, Subnet};
    use crate::config::{DnsRecord, RecordData};
    use crate::dns::names::{NameChange, NameIndex, Names};
    use crate::lease::{ClientId, HwAddr, Lease, LeaseChange, LeaseState, RemoveReason};
    use hickory_server::proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
    use hickory_server::proto::rr::rdata::{A, SOA};
    use hickory_server::proto::rr::{Name, RData, Record, RecordType};
    use std::net::Ipv4Addr;
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use tokio::sync::watch;
    use tokio::task::JoinHandle;
    use tokio::time::timeout;

    /// How long a test client waits for a reply: long past every budget, so a loaded machine
    /// only makes a test slower, never failing.
    const WAIT: Duration = Duration::from_secs(10);
    const LAPTOP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 50);
    const PRINTER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 5);

    fn config() -> Config {
        Config {
            path: PathBuf::from("test.toml"),
            start: crate::config::Startup {
                domain: "lan".to_string(),
                dhcp_port: 0,
                client_port: 0,
                arp_entries: true,
                lease_file: PathBuf::from("/nonexistent/leases"),
                durability: Durability::None,
                dns: crate::config::DnsStartup {
                    listen: vec!["127.0.0.1:0".parse().expect("addr")],
                    ttl: 300,
                    ..Default::default()
                },
                ddns: Default::default(),
                run_as: Default::default(),
                dhcp_script: None,
                lease_database: None,
            },
            interfaces: vec![],
            renew_write_fraction: 0.5,
            offer_hold: 30,
            decline_hold: 600,
            dns: DnsConfig::default(),
            subnets: vec![Subnet {
                network: Ipv4Addr::new(10, 0, 0, 0),
                prefix_len: 24,
                pool_start: Ipv4Addr::new(10, 0, 0, 10),
                pool_end: Ipv4Addr::new(10, 0, 0, 200),
                router: None,
                dns_servers: vec![],
                lease_time: 3600,
                interface: None,
                authoritative: true,
                settings: Default::default(),
            }],
            reservations: vec![Reservation {
                hwaddr: Some(HwAddr::ethernet([2, 0, 0, 0, 0, 5])),
                client_id: None,
                ip: PRINTER,
                name: Some("printer".to_string()),
                lease_time: None,
                options: vec![],
            }],
            dhcp: Default::default(),
        }
    }

    fn laptop_lease(expires: u64) -> LeaseChange {
        let hw = HwAddr::ethernet([2, 0, 0, 0, 0, 50]);
        LeaseChange::Upsert(Lease {
            ip: LAPTOP,
            client: ClientId::from_hw(&hw),
            hwaddr: hw,
            hostname: Some("laptop".into()),
            expires: UnixTime(expires),
            state: LeaseState::Bound,
        })
    }

    struct Running {
        addr: SocketAddr,
        counters: Arc<Counters>,
        names: SharedNames,
        clock: TestClock,
        stop: watch::Sender<bool>,
        task: JoinHandle<io::Result<()>>,
    }

    /// A server at t=1000 whose "laptop" lease ends at t=1000 + `lease_left`.
    async fn start(lease_left: u64) -> Running {
        start_with(config(), lease_left).await
    }

    /// Like `start`, with a config of the test's own.
    async fn start_with(cfg: Config, lease_left: u64) -> Running {
        start_paths(cfg, lease_left, true).await
    }

    /// Like `start_with`; `fast` false: hickory answers every query.
    async fn start_paths(cfg: Config, lease_left: u64, fast: bool) -> Running {
        let statics = crate::dns::hosts::load(&cfg).await.expect("hosts file");
        let names = NameIndex::new(Names::new(&cfg.start.domain, &[]));
        names.apply(NameChange::Statics(statics));
        names.apply(NameChange::Leases {
            now: UnixTime(0),
            changes: &[laptop_lease(1000 + lease_left)],
        });
        let clock = TestClock::at(1000);
        let mut server = DnsServer::bind(&cfg, names.clone(), Arc::new(clock.clone()))
            .await
            .expect("bind");
        server.set_fast_path(fast);
        let addrs = server.local_addrs();
        assert_eq!(addrs.len(), 1);
        assert_ne!(addrs[0].port(), 0, "the real port is reported");
        let (stop, shutdown) = watch::channel(false);
        let counters = server.counters();
        let task = tokio::spawn(server.run(shutdown));
        Running {
            addr: addrs[0],
            counters,
            names,
            clock,
            stop,
            task,
        }
    }

    fn query_bytes(name: &str, rtype: RecordType) -> Vec<u8> {
        let mut msg = Message::new(0x1234, MessageType::Query, OpCode::Query);
        msg.add_query(Query::query(Name::from_ascii(name).expect("name"), rtype));
        msg.metadata.recursion_desired = true;
        msg.to_vec().expect("encode")
    }

    async fn udp_query(addr: SocketAddr, name: &str, rtype: RecordType) -> Message {
        let sock = UdpSocket::bind("127.0.0.1:0").await.expect("client socket");
        sock.send_to(&query_bytes(name, rtype), addr)
            .await
            .expect("send");
        let mut buf = vec![0u8; 4096];
        let (n, _) = timeout(WAIT, sock.recv_from(&mut buf))
            .await
            .expect("reply in time")
            .expect("recv");
        Message::from_vec(&buf[..n]).expect("decode reply")
    }

    async fn tcp_query(addr: SocketAddr, name: &str, rtype: RecordType) -> Message {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let q = query_bytes(name, rtype);
        let len = u16::try_from(q.len()).expect("short query").to_be_bytes();
        stream
            .write_all(&[&len[..], &q].concat())
            .await
            .expect("send");
        let mut len = [0u8; 2];
        timeout(WAIT, stream.read_exact(&mut len))
            .await
            .expect("reply in time")
            .expect("read len");
        let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
        timeout(WAIT, stream.read_exact(&mut buf))
            .await
            .expect("reply in time")
            .expect("read body");
        Message::from_vec(&buf).expect("decode reply")
    }

    fn a_records(msg: &Message) -> Vec<Ipv4Addr> {
        msg.answers
            .iter()
            .filter_map(|r| {
                if let RData::A(a) = &r.data {
                    Some(a.0)
                } else {
                    None
                }
            })
            .collect()
    }

    fn soa_in_authority(msg: &Message) -> bool {
        msg.authorities
            .iter()
            .any(|r| r.record_type() == RecordType::SOA)
    }

    async fn stop(running: Running) {
        running
            .stop
            .send(true)
            .expect("server listening for shutdown");
        let result = timeout(WAIT, running.task)
            .await
            .expect("stops in time")
            .expect("task joins");
        result.expect("clean shutdown");
    }

    #[tokio::test]
    async fn lease_name_resolves_over_udp_and_tcp() {
        let s = start(3600).await;
        let reply = udp_query(s.addr, "laptop.lan.", RecordType::A).await;
        assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
        assert!(reply.metadata.authoritative);
        assert_eq!(a_records(&reply), vec![LAPTOP]);
        assert_eq!(reply.answers[0].ttl, 300);
        let reply = tcp_query(s.addr, "laptop.lan.", RecordType::A).await;
        assert_eq!(a_records(&reply), vec![LAPTOP]);
        stop(s).await;
    }

    #[tokio::test]
    async fn ptr_of_lease_and_static_addresses() {
        let s = start(3600).await;
        let reply = udp_query(s.addr, "50.0.0.10.in-addr.arpa.", RecordType::PTR).await;
        assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
        let targets: Vec<String> = reply.answers.iter().map(|r| r.data.to_string()).collect();
        assert_eq!(targets, vec!["laptop.lan.".to_string()]);
        let reply = udp_query(s.addr, "5.0.0.10.in-addr.arpa.", RecordType::PTR).await;
        let targets: Vec<String> = reply.answers.iter().map(|r| r.data.to_string()).collect();
        assert_eq!(targets, vec!["printer.lan.".to_string()]);
        stop(s).await;
    }

    #[tokio::test]
    async fn static_reservation_name_resolves() {
        let s = start(3600).await;
        let reply = udp_query(s.addr, "printer.lan.", RecordType::A).await;
        assert_eq!(a_records(&reply), vec![PRINTER]);
        stop(s).await;
    }

    #[tokio::test]
    async fn aaaa_of_a_known_name_is_nodata_with_soa() {
        let s = start(3600).await;
        let reply = udp_query(s.addr, "laptop.lan.", RecordType::AAAA).await;
        assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
        assert!(reply.answers.is_empty());
        assert!(soa_in_authority(&reply));
        stop(s).await;
    }

    #[tokio::test]
    async fn unknown_name_is_nxdomain_with_soa_carrying_the_serial() {
        let s = start(3600).await;
        let reply = udp_query(s.addr, "ghost.lan.", RecordType::A).await;
        assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
        let serial = s.names.read().serial();
        let soa = reply.authorities.iter().find_map(|r| {
            if let RData::SOA(soa) = &r.data {
                Some(soa.serial)
            } else {
                None
            }
        });
        assert_eq!(soa, Some(serial));
        stop(s).await;
    }

    #[tokio::test]
    async fn removed_lease_name_becomes_nxdomain() {
        let s = start(3600).await;
        assert_eq!(
            a_records(&udp_query(s.addr, "laptop.lan.", RecordType::A).await),
            vec![LAPTOP]
        );
        s.names.apply(NameChange::Leases {
            now: UnixTime(0),
            changes: &[LeaseChange::Remove {
                ip: LAPTOP,
                reason: RemoveReason::Released,
            }],
        });
        let reply = udp_query(s.addr, "laptop.lan.", RecordType::A).await;
        assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
        let reply = udp_query(s.addr, "50.0.0.10.in-addr.arpa.", RecordType::PTR).await;
        assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
        stop(s).await;
    }

    #[tokio::test]
    async fn ttl_is_capped_by_the_lease_remaining_time() {
        // t=1000, the lease ends at t=1120: TTL 120, not the configured 300.
        let s = start(120).await;
        let reply = udp_query(s.addr, "laptop.lan.", RecordType::A).await;
        assert_eq!(reply.answers[0].ttl, 120);
        // t=1110: ten seconds left.
        s.clock.advance(110);
        let reply = udp_query(s.addr, "50.0.0.10.in-addr.arpa.", RecordType::PTR).await;
        assert_eq!(reply.answers[0].ttl, 10);
        // t=1120: ended; gone even before the engine's Remove arrives.
        s.clock.advance(10);
        let reply = udp_query(s.addr, "laptop.lan.", RecordType::A).await;
        assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
        stop(s).await;
    }

    #[tokio::test]
    async fn queries_are_case_insensitive() {
        let s = start(3600).await;
        let reply = udp_query(s.addr, "LapTop.LAN.", RecordType::A).await;
        assert_eq!(a_records(&reply), vec![LAPTOP]);
        stop(s).await;
    }

    #[tokio::test]
    async fn names_outside_our_zones_are_refused() {
        let s = start(3600).await;
        let reply = udp_query(s.addr, "example.com.", RecordType::A).await;
        assert_eq!(reply.metadata.response_code, ResponseCode::Refused);
        // A private reverse zone that is not ours: answered here, never forwarded.
        let reply = udp_query(s.addr, "1.1.168.192.in-addr.arpa.", RecordType::PTR).await;
        assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
        let reply = udp_query(s.addr, "8.8.8.8.in-addr.arpa.", RecordType::PTR).await;
        assert_eq!(reply.metadata.response_code, ResponseCode::Refused);
        stop(s).await;
    }

    #[tokio::test]
    async fn soa_at_apex_answers_with_current_serial() {
        let s = start(3600).await;
        let before = udp_query(s.addr, "lan.", RecordType::SOA).await;
        s.names.apply(NameChange::Leases {
            now: UnixTime(0),
            changes: &[LeaseChange::Remove {
                ip: LAPTOP,
                reason: RemoveReason::Expired,
            }],
        });
        let after = udp_query(s.addr, "lan.", RecordType::SOA).await;
        let serial = |m: &Message| {
            m.answers.iter().find_map(|r| {
                if let RData::SOA(soa) = &r.data {
                    Some(soa.serial)
                } else {
                    None
                }
            })
        };
        assert!(serial(&before).is_some());
        assert!(serial(&after) > serial(&before));
        stop(s).await;
    }

    #[tokio::test]
    async fn garbage_does_not_stop_the_server() {
        let s = start(3600).await;
        let sock = UdpSocket::bind("127.0.0.1:0").await.expect("socket");
        for junk in [
            &[0xffu8; 3][..],
            &[0u8; 12],
            &[0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 63, b'a'],
            &[0xab; 600],
        ] {
            sock.send_to(junk, s.addr).await.expect("send junk");
        }
        let mut stream = TcpStream::connect(s.addr).await.expect("connect");
        stream
            .write_all(&[0, 5, 1, 2, 3, 4, 5])
            .await
            .expect("send junk over tcp");
        drop(stream);
        let reply = udp_query(s.addr, "laptop.lan.", RecordType::A).await;
        assert_eq!(a_records(&reply), vec![LAPTOP]);
        let reply = tcp_query(s.addr, "laptop.lan.", RecordType::A).await;
        assert_eq!(a_records(&reply), vec![LAPTOP]);
        stop(s).await;
    }

    #[tokio::test]
    async fn dig_resolves_a_lease_name() {
        let s = start(3600).await;
        let port = s.addr.port().to_string();
        let dig = |extra: &'static str| {
            let port = port.clone();
            tokio::task::spawn_blocking(move || {
                let mut cmd = std::process::Command::new("/usr/bin/dig");
                cmd.args([
                    "@127.0.0.1",
                    "-p",
                    &port,
                    "laptop.lan",
                    "A",
                    "+short",
                    "+time=2",
                    "+tries=1",
                ]);
                if !extra.is_empty() {
                    cmd.arg(extra);
                }
                cmd.output().expect("run /usr/bin/dig")
            })
        };
        for extra in ["", "+tcp"] {
            let out = dig(extra).await.expect("dig task");
            assert!(
                out.status.success(),
                "dig {extra} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(
                String::from_utf8_lossy(&out.stdout).trim(),
                "10.0.0.50",
                "dig {extra}"
            );
        }
        stop(s).await;
    }

    #[tokio::test]
    async fn shutdown_with_no_listeners_returns() {
        let mut cfg = config();
        cfg.start.dns.listen.clear();
        let names = NameIndex::new(Names::from_config(&cfg, Vec::new()));
        let server = DnsServer::bind(&cfg, names, Arc::new(TestClock::at(0)))
            .await
            .expect("bind");
        assert!(server.local_addrs().is_empty());
        let (stop, shutdown) = watch::channel(false);
        let task = tokio::spawn(server.run(shutdown));
        stop.send(true).expect("send");
        timeout(WAIT, task)
            .await
            .expect("in time")
            .expect("join")
            .expect("ok");
    }

    #[tokio::test]
    async fn port_already_taken_is_an_error_naming_the_address() {
        let taken = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let mut cfg = config();
        cfg.start.dns.listen = vec![taken.local_addr().expect("addr")];
        let err = DnsServer::bind(
            &cfg,
            NameIndex::new(Names::from_config(&cfg, Vec::new())),
            Arc::new(TestClock::at(0)),
        )
        .await
        .err();
        let err = err.expect("bind must fail");
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        assert!(err.to_string().contains("udp 127.0.0.1:"), "{err}");
    }

    // ---- static records, forwarding, truncation, malformed input ----

    fn record(name: &str, data: RecordData) -> DnsRecord {
        DnsRecord {
            name: name.to_string(),
            data,
        }
    }

    fn config_with_records() -> Config {
        let mut cfg = config();
        cfg.dns.records = vec![
            record("nas.lan", RecordData::A(Ipv4Addr::new(10, 0, 0, 20))),
            record("www.lan", RecordData::Cname("nas.lan".to_string())),
            record(
                "lan",
                RecordData::Mx {
                    preference: 10,
                    exchange: "nas.lan".to_string(),
                },
            ),
            record("lan", RecordData::Txt(vec!["v=spf1 -all".to_string()])),
            record(
                "_ldap._tcp.lan",
                RecordData::Srv {
                    priority: 0,
                    weight: 5,
                    port: 389,
                    target: "nas.lan".to_string(),
                },
            ),
            record(
                "router.example.net",
                RecordData::A(Ipv4Addr::new(10, 0, 0, 1)),
            ),
        ];
        // Forty 200-byte TXT strings: far past 512 bytes, so UDP without EDNS truncates.
        for i in 0..40u8 {
            let text = format!("{i:02}{}", "x".repeat(198));
            cfg.dns
                .records
                .push(record("big.lan", RecordData::Txt(vec![text])));
        }
        cfg
    }

    async fn dig(addr: SocketAddr, args: &[&str]) -> String {
        let mut all: Vec<String> = vec![
            format!("@{}", addr.ip()),
            "-p".to_string(),
            addr.port().to_string(),
            "+time=2".to_string(),
            "+tries=1".to_string(),
        ];
        all.extend(args.iter().map(|a| a.to_string()));
        let out = tokio::task::spawn_blocking(move || {
            std::process::Command::new("/usr/bin/dig")
                .args(&all)
                .output()
                .expect("run /usr/bin/dig")
        })
        .await
        .expect("dig task");
        assert!(
            out.status.success(),
            "dig {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    #[tokio::test]
    async fn static_mx_txt_srv_cname_answer_with_dig() {
        let s = start_with(config_with_records(), 3600).await;
        assert_eq!(dig(s.addr, &["lan", "MX", "+short"]).await, "10 nas.lan.");
        assert_eq!(
            dig(s.addr, &["LAN", "TXT", "+short"]).await,
            "\"v=spf1 -all\""
        );
        assert_eq!(
            dig(s.addr, &["_ldap._tcp.lan", "SRV", "+short"]).await,
            "0 5 389 nas.lan."
        );
        // A CNAME inside our domain is followed: the target's A comes with it.
        assert_eq!(
            dig(s.addr, &["www.lan", "A", "+short"]).await,
            "nas.lan.\n10.0.0.20"
        );
        assert_eq!(
            dig(s.addr, &["www.lan", "CNAME", "+short"]).await,
            "nas.lan."
        );
        // The static A of nas also gives its address a PTR.
        assert_eq!(
            dig(s.addr, &["-x", "10.0.0.20", "+short"]).await,
            "nas.lan."
        );
        // An absolute name outside the domain is served too (a local override).
        assert_eq!(
            dig(s.addr, &["Router.Example.NET", "A", "+short"]).await,
            "10.0.0.1"
        );
        // NODATA (an MX of a host with only an A) is NOERROR with the SOA; NXDOMAIN differs.
        let reply = udp_query(s.addr, "nas.lan.", RecordType::MX).await;
        assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
        assert!(reply.answers.is_empty() && soa_in_authority(&reply));
        let reply = udp_query(s.addr, "nope.lan.", RecordType::MX).await;
        assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
        stop(s).await;
    }

    #[tokio::test]
    async fn large_answer_truncates_over_udp_and_comes_whole_over_tcp() {
        let s = start_with(config_with_records(), 3600).await;
        // No EDNS: at most 512 bytes, TC set.
        let reply = udp_query(s.addr, "big.lan.", RecordType::TXT).await;
        assert!(reply.metadata.truncation, "TC over plain UDP");
        assert!(reply.answers.len() < 40);
        let reply = tcp_query(s.addr, "big.lan.", RecordType::TXT).await;
        assert!(!reply.metadata.truncation);
        assert_eq!(reply.answers.len(), 40);
        // dig retries over TCP on TC by itself and gets every string.
        let out = dig(s.addr, &["big.lan", "TXT", "+short", "+noedns"]).await;
        assert_eq!(out.lines().count(), 40, "{out}");
        // `+ignore` shows what UDP alone gave: the tc flag.
        let out = dig(s.addr, &["big.lan", "TXT", "+ignore", "+noedns"]).await;
        assert!(out.contains(" tc"), "{out}");
        // With EDNS (1232 bytes) the answer is still too big for one datagram.
        let out = dig(s.addr, &["big.lan", "TXT", "+ignore", "+bufsize=1232"]).await;
        assert!(out.contains(" tc") && out.contains("udp: 1232"), "{out}");
        stop(s).await;
    }

    #[tokio::test]
    async fn bare_names_expand_into_the_domain_when_enabled() {
        let mut cfg = config();
        cfg.start.dns.expand_bare_names = true;
        let s = start_with(cfg, 3600).await;
        let reply = udp_query(s.addr, "laptop.", RecordType::A).await;
        assert_eq!(a_records(&reply), vec![LAPTOP]);
        assert_eq!(reply.answers[0].name.to_string(), "laptop.");
        assert_eq!(dig(s.addr, &["printer", "A", "+short"]).await, "10.0.0.5");
        // Without upstreams, an unknown bare name is still refused.
        let reply = udp_query(s.addr, "ghost.", RecordType::A).await;
        assert_eq!(reply.metadata.response_code, ResponseCode::Refused);
        stop(s).await;
        // Off (the default): a bare name is not ours.
        let s = start(3600).await;
        let reply = udp_query(s.addr, "laptop.", RecordType::A).await;
        assert_eq!(reply.metadata.response_code, ResponseCode::Refused);
        stop(s).await;
    }

    #[tokio::test]
    async fn hosts_file_names_resolve_with_ptr() {
        let dir = tempfile::tempdir().expect("tempdir");
        let hosts = dir.path().join("hosts");
        std::fs::write(
            &hosts,
            "# comment\n10.0.0.30 tv tv-alias\n192.168.7.7 box.home.example\n\
             fd00::30 tv6\n203.0.113.9 public.example\n",
        )
        .expect("write hosts");
        let mut cfg = config();
        cfg.dns.hosts_file = Some(hosts.clone());
        let s = start_with(cfg.clone(), 3600).await;
        assert_eq!(dig(s.addr, &["tv.lan", "+short"]).await, "10.0.0.30");
        assert_eq!(dig(s.addr, &["tv-alias.lan", "+short"]).await, "10.0.0.30");
        assert_eq!(dig(s.addr, &["-x", "10.0.0.30", "+short"]).await, "tv.lan.");
        assert_eq!(
            dig(s.addr, &["box.home.example", "+short"]).await,
            "192.168.7.7"
        );
        // In a private reverse zone that is not a subnet of ours, still answered from hosts.
        assert_eq!(
            dig(s.addr, &["-x", "192.168.7.7", "+short"]).await,
            "box.home.example."
        );
        // AAAA from the hosts file, and PTRs outside our reverse zones (ip6.arpa, public v4).
        assert_eq!(
            dig(s.addr, &["tv6.lan", "AAAA", "+short"]).await,
            "fd00::30"
        );
        assert_eq!(dig(s.addr, &["-x", "fd00::30", "+short"]).await, "tv6.lan.");
        assert_eq!(
            dig(s.addr, &["-x", "203.0.113.9", "+short"]).await,
            "public.example."
        );
        let reply = udp_query(s.addr, "10.113.0.203.in-addr.arpa.", RecordType::PTR).await;
        assert_eq!(reply.metadata.response_code, ResponseCode::Refused);
        // Re-read after an edit: the new name appears, the old one is gone, serial moves.
        let serial = s.names.read().serial();
        std::fs::write(&hosts, "10.0.0.31 radio\n").expect("rewrite hosts");
        let statics = crate::dns::hosts::load(&cfg).await.expect("reload");
        s.names.apply(NameChange::Statics(statics));
        assert!(s.names.read().serial() > serial);
        assert_eq!(dig(s.addr, &["radio.lan", "+short"]).await, "10.0.0.31");
        let reply = udp_query(s.addr, "tv.lan.", RecordType::A).await;
        assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
        stop(s).await;
    }

    /// An upstream on loopback that answers A queries with 192.0.2.7 (TTL 60) and anything
    /// else with NXDOMAIN + SOA (negative TTL 30), and counts what it receives.
    struct FakeUpstream {
        addr: SocketAddr,
        queries: Arc<AtomicUsize>,
        task: JoinHandle<()>,
    }

    impl Drop for FakeUpstream {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    async fn fake_upstream(ip: &str) -> FakeUpstream {
        let sock = UdpSocket::bind(format!("{ip}:0"))
            .await
            .expect("bind upstream");
        let addr = sock.local_addr().expect("addr");
        let queries = Arc::new(AtomicUsize::new(0));
        let count = queries.clone();
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            while let Ok((n, from)) = sock.recv_from(&mut buf).await {
                let Ok(q) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                count.fetch_add(1, Ordering::SeqCst);
                let mut r = Message::new(q.metadata.id, MessageType::Response, OpCode::Query);
                r.metadata.recursion_available = true;
                let Some(query) = q.queries.first().cloned() else {
                    continue;
                };
                r.add_query(query.clone());
                if query.query_type() == RecordType::A {
                    let ip = Ipv4Addr::new(192, 0, 2, 7);
                    r.add_answer(Record::from_rdata(
                        query.name().clone(),
                        60,
                        RData::A(A(ip)),
                    ));
                } else {
                    r.metadata.response_code = ResponseCode::NXDomain;
                    let soa = SOA::new(Name::root(), Name::root(), 1, 1, 1, 1, 30);
                    r.add_authority(Record::from_rdata(Name::root(), 60, RData::SOA(soa)));
                }
                let _ = sock.send_to(&r.to_vec().expect("encode"), from).await;
            }
        });
        FakeUpstream {
            addr,
            queries,
            task,
        }
    }

    #[tokio::test]
    async fn counters_follow_what_the_front_door_did() {
        let up = fake_upstream("127.0.0.26").await;
        let s = start_with(forwarding_config(vec![up.addr], 2000), 3600).await;
        let count = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        let sock = UdpSocket::bind("127.0.0.1:0").await.expect("socket");
        // Eleven bytes, a response, and a query whose name runs off the end: dropped.
        let mut response = query_bytes("laptop.lan.", RecordType::A);
        response[2] |= 0x80;
        for junk in [
            vec![0u8; 11],
            response,
            vec![0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 40, b'a'],
        ] {
            sock.send_to(&junk, s.addr).await.expect("send");
        }
        // Forwarded once, then answered from the cache; a CHAOS query is refused.
        for _ in 0..2 {
            let reply = udp_query(s.addr, "www.example.com.", RecordType::A).await;
            assert!(reply.metadata.recursion_available);
        }
        let mut chaos = Message::new(9, MessageType::Query, OpCode::Query);
        let mut q = Query::query(
            Name::from_ascii("version.bind.").expect("n"),
            RecordType::TXT,
        );
        q.set_query_class(hickory_server::proto::rr::DNSClass::CH);
        chaos.add_query(q);
        let reply = Message::from_vec(&udp_exchange(s.addr, &chaos.to_vec().expect("e")).await)
            .expect("decode");
        assert_eq!(reply.metadata.response_code, ResponseCode::Refused);
        let c = &s.counters;
        assert_eq!(count(&c.dropped), 3);
        assert_eq!(count(&c.forwarded), 1);
        assert_eq!(count(&c.cached), 1);
        assert_eq!(count(&c.refused), 1);
        assert_eq!(count(&c.answered), 3);
        assert_eq!(up.queries.load(Ordering::SeqCst), 1);
        stop(s).await;
    }

    #[tokio::test]
    async fn idle_tcp_connections_are_closed_and_busy_ones_served() {
        let s = start(3600).await;
        let mut idle = TcpStream::connect(s.addr).await.expect("connect");
        // A client on the same connection keeps being answered while it asks.
        let reply = tcp_query(s.addr, "laptop.lan.", RecordType::A).await;
        assert_eq!(a_records(&reply), vec![LAPTOP]);
        // The idle one is closed by the server (after its idle timeout): EOF, not a hang.
        let mut byte = [0u8; 1];
        let read = timeout(Duration::from_secs(20), idle.read(&mut byte))
            .await
            .expect("the server closes an idle connection");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
        stop(s).await;
    }

    fn forwarding_config(upstreams: Vec<SocketAddr>, timeout_ms: u64) -> Config {
        let mut cfg = config();
        cfg.start.dns.upstreams = upstreams;
        cfg.start.dns.upstream_timeout = Duration::from_millis(timeout_ms);
        cfg
    }

    #[tokio::test]
    async fn forwards_other_names_and_caches_the_answer() {
        let up = fake_upstream("127.0.0.21").await;
        let s = start_with(forwarding_config(vec![up.addr], 2000), 3600).await;
        let reply = udp_query(s.addr, "www.example.com.", RecordType::A).await;
        assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
        assert!(reply.metadata.recursion_available && !reply.metadata.authoritative);
        assert_eq!(a_records(&reply), vec![Ipv4Addr::new(192, 0, 2, 7)]);
        assert_eq!(up.queries.load(Ordering::SeqCst), 1);
        // The same question again (other case, over TCP): from the cache, upstream not asked.
        let reply = tcp_query(s.addr, "WWW.Example.com.", RecordType::A).await;
        assert_eq!(a_records(&reply), vec![Ipv4Addr::new(192, 0, 2, 7)]);
        assert!(reply.answers[0].ttl <= 60);
        assert_eq!(
            up.queries.load(Ordering::SeqCst),
            1,
            "second answer came from the cache"
        );
        // A negative answer is relayed (with its SOA) and cached too.
        let reply = udp_query(s.addr, "nothing.example.com.", RecordType::MX).await;
        assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
        assert!(soa_in_authority(&reply));
        udp_query(s.addr, "nothing.example.com.", RecordType::MX).await;
        assert_eq!(up.queries.load(Ordering::SeqCst), 2);
        // Local names never reach the upstream, nor do private reverse names.
        assert_eq!(
            a_records(&udp_query(s.addr, "laptop.lan.", RecordType::A).await),
            vec![LAPTOP]
        );
        let reply = udp_query(s.addr, "9.9.168.192.in-addr.arpa.", RecordType::PTR).await;
        assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
        // A partial private reverse name: an empty non-terminal, NODATA.
        let reply = udp_query(s.addr, "1.20.172.in-addr.arpa.", RecordType::PTR).await;
        assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
        assert!(reply.answers.is_empty());
        let reply = udp_query(s.addr, "9.9.9.10.in-addr.arpa.", RecordType::PTR).await;
        assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
        assert_eq!(
            up.queries.load(Ordering::SeqCst),
            2,
            "nothing local was forwarded"
        );
        // A public reverse name is forwarded.
        udp_query(s.addr, "8.8.8.8.in-addr.arpa.", RecordType::PTR).await;
        assert_eq!(up.queries.load(Ordering::SeqCst), 3);
        stop(s).await;
    }

    /// How many datagrams `sock` has received so far (reads them all without waiting).
    fn datagrams(sock: &UdpSocket) -> usize {
        let mut buf = [0u8; 512];
        std::iter::from_fn(|| sock.try_recv(&mut buf).ok()).count()
    }

    /// Failover is a property, not a stopwatch reading: the answer comes from the live
    /// upstream (the client's own wait, WAIT, is longer than the 1.5 s budget), and from then
    /// on the upstream that answered is asked first: the silent one sees no second question.
    #[tokio::test]
    async fn dead_first_upstream_fails_over_and_the_live_one_is_asked_first() {
        let up = fake_upstream("127.0.0.22").await;
        // A port that refuses (nothing bound): fails over at once.
        let refused: SocketAddr = {
            let sock = std::net::UdpSocket::bind("127.0.0.22:0").expect("bind");
            sock.local_addr().expect("addr")
        };
        // A socket that never answers: costs its share of the budget.
        let silent = UdpSocket::bind("127.0.0.22:0").await.expect("bind silent");
        let cfg = forwarding_config(
            vec![refused, silent.local_addr().expect("addr"), up.addr],
            1500,
        );
        let s = start_with(cfg, 3600).await;
        let reply = udp_query(s.addr, "a.example.org.", RecordType::A).await;
        assert_eq!(a_records(&reply), vec![Ipv4Addr::new(192, 0, 2, 7)]);
        let asked_silent = datagrams(&silent);
        assert!(asked_silent >= 1, "the silent upstream was never tried");
        let reply = udp_query(s.addr, "b.example.org.", RecordType::A).await;
        assert_eq!(a_records(&reply), vec![Ipv4Addr::new(192, 0, 2, 7)]);
        assert_eq!(datagrams(&silent), 0, "the silent upstream was asked again");
        assert_eq!(up.queries.load(Ordering::SeqCst), 2);
        stop(s).await;
    }

    /// SERVFAIL when no upstream answers: it comes at all (within the client's WAIT, longer
    /// than the 400 ms budget), and local names are still answered.
    #[tokio::test]
    async fn no_upstream_answering_is_servfail() {
        let silent = UdpSocket::bind("127.0.0.23:0").await.expect("bind silent");
        let cfg = forwarding_config(vec![silent.local_addr().expect("addr")], 400);
        let s = start_with(cfg, 3600).await;
        let reply = udp_query(s.addr, "slow.example.org.", RecordType::A).await;
        assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
        // Local names are unaffected by a dead upstream.
        assert_eq!(
            a_records(&udp_query(s.addr, "laptop.lan.", RecordType::A).await),
            vec![LAPTOP]
        );
        stop(s).await;
    }

    #[tokio::test]
    async fn malformed_queries_get_formerr_or_nothing_and_the_server_goes_on() {
        let up = fake_upstream("127.0.0.24").await;
        let s = start_with(forwarding_config(vec![up.addr], 1000), 3600).await;
        let header = |qd: u16, an: u16| {
            let mut h = vec![0xbe, 0xef, 0x01, 0x00];
            for c in [qd, an, 0, 0] {
                h.extend_from_slice(&c.to_be_bytes());
            }
            h
        };
        // A question name that points at itself (compression loop).
        let mut looped = header(1, 0);
        looped.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
        // 65535 questions announced, one present.
        let mut huge = header(u16::MAX, u16::MAX);
        huge.extend_from_slice(&[1, b'a', 0, 0, 1, 0, 1]);
        // A response sent as a query; two questions; a label running off the end.
        let mut response = header(1, 0);
        response[2] = 0x81;
        response.extend_from_slice(&[1, b'a', 0, 0, 1, 0, 1]);
        let mut two = header(2, 0);
        two.extend_from_slice(&[1, b'a', 0, 0, 1, 0, 1, 1, b'b', 0, 0, 1, 0, 1]);
        let mut cut = header(1, 0);
        cut.extend_from_slice(&[40, b'a', b'b']);
        let sock = UdpSocket::bind("127.0.0.1:0").await.expect("socket");
        let mut formerr = 0;
        for junk in [looped, huge, response, two, cut] {
            sock.send_to(&junk, s.addr).await.expect("send");
            let mut buf = [0u8; 512];
            // Either a FORMERR reply with our id, or silence.
            if let Ok(Ok((n, _))) =
                timeout(Duration::from_millis(300), sock.recv_from(&mut buf)).await
            {
                assert!(n >= 12, "a reply is at least a header");
                assert_eq!(&buf[..2], &[0xbe, 0xef]);
                assert_eq!(buf[3] & 0x0f, 1, "rcode FORMERR for {:02x?}", &buf[..n]);
                formerr += 1;
            }
        }
        assert_eq!(
            up.queries.load(Ordering::SeqCst),
            0,
            "nothing malformed was forwarded"
        );
        // Malformed datagrams and responses are dropped unanswered (and counted); only the
        // well-formed two-question query gets an answer, FORMERR.
        assert_eq!(formerr, 1, "{formerr} FORMERR replies");
        assert_eq!(
            a_records(&udp_query(s.addr, "laptop.lan.", RecordType::A).await),
            vec![LAPTOP]
        );
        let reply = udp_query(s.addr, "ok.example.com.", RecordType::A).await;
        assert_eq!(a_records(&reply), vec![Ipv4Addr::new(192, 0, 2, 7)]);
        stop(s).await;
    }

    /// dnsmasq on a fixed loopback address as a real upstream, logging every query it gets.
    struct Dnsmasq {
        child: std::process::Child,
        addr: SocketAddr,
        log: PathBuf,
        _dir: tempfile::TempDir,
    }

    impl Drop for Dnsmasq {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    impl Dnsmasq {
        async fn start(ip: &str, port: u16) -> Dnsmasq {
            let dir = tempfile::tempdir().expect("tempdir");
            let log = dir.path().join("dnsmasq.log");
            let mut cmd = std::process::Command::new("/usr/sbin/dnsmasq");
            cmd.args([
                "--no-daemon",
                "--conf-file=/dev/null",
                "--no-resolv",
                "--no-hosts",
                "--bind-interfaces",
                "--local-ttl=60",
                "--address=/example.test/192.0.2.7",
                "--log-queries",
            ])
            .arg(format!("--listen-address={ip}"))
            .arg(format!("--port={port}"))
            .arg(format!("--log-facility={}", log.display()));
            for i in 0..40 {
                cmd.arg(format!(
                    "--txt-record=big.example.test,{i:02}{}",
                    "x".repeat(198)
                ));
            }
            let child = cmd
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("start /usr/sbin/dnsmasq");
            let addr: SocketAddr = format!("{ip}:{port}").parse().expect("addr");
            let up = Dnsmasq {
                child,
                addr,
                log,
                _dir: dir,
            };
            // Ready once it answers.
            for _ in 0..50 {
                let sock = UdpSocket::bind("127.0.0.1:0").await.expect("socket");
                let q = query_bytes("ready.example.test.", RecordType::A);
                if sock.send_to(&q, addr).await.is_ok() {
                    let mut buf = [0u8; 512];
                    let got = timeout(Duration::from_millis(100), sock.recv_from(&mut buf)).await;
                    if matches!(got, Ok(Ok(_))) {
                        return up;
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("dnsmasq did not start on {addr}");
        }

        /// Queries dnsmasq logged for `what`, e.g. "query[A] a.example.test".
        async fn count(&self, what: &str) -> usize {
            // dnsmasq writes its log a moment after answering.
            tokio::time::sleep(Duration::from_millis(100)).await;
            std::fs::read_to_string(&self.log)
                .unwrap_or_default()
                .lines()
                .filter(|l| l.contains(&format!("{what} from")))
                .count()
        }
    }

    #[tokio::test]
    async fn forwards_to_dnsmasq_caches_and_falls_back_to_tcp_upstream() {
        let up = Dnsmasq::start("127.0.0.32", 5392).await;
        let s = start_with(forwarding_config(vec![up.addr], 2000), 3600).await;
        assert_eq!(
            dig(s.addr, &["a.example.test", "+short"]).await,
            "192.0.2.7"
        );
        assert_eq!(
            dig(s.addr, &["a.example.test", "+short"]).await,
            "192.0.2.7"
        );
        assert_eq!(
            up.count("query[A] a.example.test").await,
            1,
            "second from cache"
        );
        // 40 x 200 bytes: dnsmasq truncates over UDP, we ask again over TCP.
        let reply = tcp_query(s.addr, "big.example.test.", RecordType::TXT).await;
        assert_eq!(reply.answers.len(), 40);
        assert_eq!(
            up.count("query[TXT] big.example.test").await,
            2,
            "UDP, then TCP"
        );
        // Our client over plain UDP gets TC (from the cache), then all of it over TCP.
        let reply = udp_query(s.addr, "big.example.test.", RecordType::TXT).await;
        assert!(reply.metadata.truncation);
        let out = dig(s.addr, &["big.example.test", "TXT", "+short"]).await;
        assert_eq!(out.lines().count(), 40);
        assert_eq!(up.count("query[TXT] big.example.test").await, 2, "cached");
        stop(s).await;
    }

    /// A config with one TSIG key ("ddns", HMAC-SHA256) that may change anything under lan.
    fn update_config() -> Config {
        use crate::config::{NameMatch, TsigKeyConfig, UpdateRule};
        let mut cfg = config();
        cfg.start.dns.tsig_keys = vec![TsigKeyConfig {
            name: "ddns".into(),
            algorithm: hickory_server::proto::rr::rdata::tsig::TsigAlgorithm::HmacSha256,
            secret: b"a shared secret for the test key".to_vec(),
            fudge: 300,
            allow: vec![
                UpdateRule {
                    names: NameMatch::Subtree("lan".into()),
                    types: crate::dns::dynamic::SUPPORTED_TYPES.to_vec(),
                },
                UpdateRule {
                    names: NameMatch::Subtree("0.0.10.in-addr.arpa".into()),
                    types: vec![RecordType::PTR],
                },
            ],
            may_override: false,
        }];
        cfg
    }

    /// A server with an update journal in `dir`, its clock at `now`.
    async fn start_updatable(cfg: &Config, dir: &std::path::Path, now: u64) -> Running {
        let names = NameIndex::new(Names::from_config(cfg, Vec::new()));
        let (journal, records) =
            crate::dns::journal::UpdateJournal::open(&dir.join("leases.dns"), Durability::None)
                .expect("journal");
        names.apply(NameChange::DynamicRecovered(records));
        let store = crate::dns::dynamic::DynamicStore::new(journal, names.clone());
        let clock = TestClock::at(now);
        let server =
            DnsServer::bind_with_store(cfg, names.clone(), Arc::new(clock.clone()), Some(store))
                .await
                .expect("bind");
        let addr = server.local_addrs()[0];
        let (stop, shutdown) = watch::channel(false);
        let counters = server.counters();
        let task = tokio::spawn(server.run(shutdown));
        Running {
            addr,
            counters,
            names,
            clock,
            stop,
            task,
        }
    }

    async fn tcp_exchange(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let len = u16::try_from(bytes.len()).expect("short").to_be_bytes();
        stream
            .write_all(&[&len[..], bytes].concat())
            .await
            .expect("send");
        let mut len = [0u8; 2];
        timeout(WAIT, stream.read_exact(&mut len))
            .await
            .expect("reply in time")
            .expect("read len");
        let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
        timeout(WAIT, stream.read_exact(&mut buf))
            .await
            .expect("reply in time")
            .expect("read body");
        buf
    }

    async fn udp_exchange(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
        let sock = UdpSocket::bind("127.0.0.1:0").await.expect("socket");
        sock.send_to(bytes, addr).await.expect("send");
        let mut buf = vec![0u8; 4096];
        let (n, _) = timeout(WAIT, sock.recv_from(&mut buf))
            .await
            .expect("reply in time")
            .expect("recv");
        buf.truncate(n);
        buf
    }

    #[tokio::test]
    async fn signed_update_over_udp_and_tcp_gets_a_signed_reply_and_is_served() {
        use crate::dns::tsig::{sign_request, verify_response};
        use hickory_server::proto::rr::rdata::TXT;
        let cfg = update_config();
        let key = crate::dns::update::tsig_key(&cfg.start.dns.tsig_keys[0]).expect("key");
        let dir = tempfile::tempdir().expect("tempdir");
        let s = start_updatable(&cfg, dir.path(), 50_000).await;
        let serial = s.names.read().serial();
        let update_in = |zone: &str, id: u16, name: &str, rdata: RData| {
            let mut m = Message::new(id, MessageType::Query, OpCode::Update);
            m.add_query(Query::query(
                Name::from_ascii(zone).expect("n"),
                RecordType::SOA,
            ));
            m.add_authority(Record::from_rdata(
                Name::from_ascii(name).expect("n"),
                60,
                rdata,
            ));
            m
        };
        let update = |id: u16, name: &str, rdata: RData| update_in("lan.", id, name, rdata);
        let request_mac = |raw: &[u8]| match Message::from_vec(raw)
            .expect("decode")
            .additionals
            .last()
            .map(|r| r.data.clone())
        {
            Some(RData::TSIG(t)) => t.mac,
            other => panic!("no TSIG: {other:?}"),
        };
        // UDP: an A record.
        let m = update(1, "box.lan.", RData::A(A(Ipv4Addr::new(10, 0, 0, 77))));
        let raw = sign_request(&m, &key, 50_000).expect("sign");
        let reply = udp_exchange(s.addr, &raw).await;
        assert_eq!(
            Message::from_vec(&reply)
                .expect("decode")
                .metadata
                .response_code,
            ResponseCode::NoError
        );
        verify_response(&reply, &request_mac(&raw), &key).expect("reply signed with the key");
        assert_eq!(
            a_records(&udp_query(s.addr, "box.lan.", RecordType::A).await),
            vec![Ipv4Addr::new(10, 0, 0, 77)]
        );
        // TCP: a TXT record; dig sees it, and the SOA serial moved.
        let m = update(
            2,
            "_acme-challenge.box.lan.",
            RData::TXT(TXT::new(vec!["tok".into()])),
        );
        let raw = sign_request(&m, &key, 50_001).expect("sign");
        let reply = tcp_exchange(s.addr, &raw).await;
        verify_response(&reply, &request_mac(&raw), &key).expect("signed over TCP too");
        assert_eq!(
            dig(s.addr, &["_acme-challenge.box.lan", "TXT", "+short"]).await,
            "\"tok\""
        );
        assert!(s.names.read().serial() > serial);
        let soa = dig(s.addr, &["lan", "SOA", "+short"]).await;
        assert!(
            soa.contains(&format!(" {} ", s.names.read().serial())),
            "{soa}"
        );
        // A PTR in the subnet's reverse zone.
        let m = update_in(
            "0.0.10.in-addr.arpa.",
            4,
            "77.0.0.10.in-addr.arpa.",
            RData::PTR(hickory_server::proto::rr::rdata::PTR(
                Name::from_ascii("box.lan.").expect("n"),
            )),
        );
        let raw = sign_request(&m, &key, 50_002).expect("sign");
        verify_response(&udp_exchange(s.addr, &raw).await, &request_mac(&raw), &key)
            .expect("signed");
        assert_eq!(
            dig(s.addr, &["-x", "10.0.0.77", "+short"]).await,
            "box.lan."
        );
        // Unsigned: REFUSED, nothing changed.
        let m = update(3, "evil.lan.", RData::A(A(Ipv4Addr::new(10, 0, 0, 66))));
        let reply = Message::from_vec(&udp_exchange(s.addr, &m.to_vec().expect("encode")).await)
            .expect("decode");
        assert_eq!(reply.metadata.response_code, ResponseCode::Refused);
        assert_eq!(
            udp_query(s.addr, "evil.lan.", RecordType::A)
                .await
                .metadata
                .response_code,
            ResponseCode::NXDomain
        );
        stop(s).await;
        // Restart on the same journal: the records are back.
        let s = start_updatable(&cfg, dir.path(), 50_100).await;
        assert_eq!(
            a_records(&udp_query(s.addr, "box.lan.", RecordType::A).await),
            vec![Ipv4Addr::new(10, 0, 0, 77)]
        );
        stop(s).await;
    }

    /// BIND's nsupdate as the client, with SHA-1 and SHA-512 keys (the clock is real here).
    /// The record types of a `dig AXFR`/`IXFR` output, in order (TSIG left out), or None for a
    /// failed transfer.
    fn transfer_types(out: &str) -> Option<Vec<String>> {
        if out.contains("Transfer failed") {
            return None;
        }
        let types = out
            .lines()
            .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
            .filter_map(|l| l.split_whitespace().nth(3).map(String::from))
            .filter(|t| t != "TSIG")
            .collect();
        Some(types)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn secondaries_get_notify_axfr_and_ixfr_others_are_refused() {
        // The secondary is a socket of the test's own on 127.0.0.2: it sees the NOTIFY.
        let secondary = UdpSocket::bind("127.0.0.2:0")
            .await
            .expect("bind 127.0.0.2");
        let mut cfg = config();
        cfg.start.dns.transfer_to = vec![secondary.local_addr().expect("addr")];
        let s = start_with(cfg, 600).await;
        let serial = s.names.read().serial();
        let mut buf = vec![0u8; 1024];
        let (n, from) = timeout(WAIT, secondary.recv_from(&mut buf))
            .await
            .expect("a NOTIFY at start")
            .expect("recv");
        let notify = Message::from_vec(&buf[..n]).expect("decode");
        assert_eq!(notify.metadata.op_code, OpCode::Notify);
        assert!(notify.metadata.authoritative);
        let soa = notify.answers.first().expect("SOA in the NOTIFY");
        assert!(matches!(&soa.data, RData::SOA(s) if s.serial == serial));
        // Answered: no retry of this one. (Others, one per zone, may still come.)
        let mut ack = buf[..n].to_vec();
        ack[2] |= 0x80;
        secondary.send_to(&ack, from).await.expect("ack");

        let from_secondary = ["-b", "127.0.0.2", "+nocmd", "+nostats"];
        let axfr = dig(s.addr, &[&from_secondary[..], &["lan", "AXFR"]].concat()).await;
        let types = transfer_types(&axfr).expect("allowed");
        assert_eq!(types, ["SOA", "NS", "A", "A", "SOA"], "{axfr}");
        assert!(
            axfr.contains("laptop.lan.") && axfr.contains("printer.lan."),
            "{axfr}"
        );
        let rev = dig(
            s.addr,
            &[&from_secondary[..], &["0.0.10.in-addr.arpa", "AXFR"]].concat(),
        )
        .await;
        assert_eq!(transfer_types(&rev).expect("allowed").len(), 5, "{rev}");
        // IXFR from an older serial: the whole zone; from the current one: the SOA alone.
        let old = format!("IXFR={}", serial - 1);
        let ixfr = dig(
            s.addr,
            &[&from_secondary[..], &["lan", &old, "+tcp"]].concat(),
        )
        .await;
        assert_eq!(transfer_types(&ixfr).expect("allowed").len(), 5, "{ixfr}");
        let now = format!("IXFR={serial}");
        let ixfr = dig(
            s.addr,
            &[&from_secondary[..], &["lan", &now, "+tcp"]].concat(),
        )
        .await;
        assert_eq!(transfer_types(&ixfr).expect("allowed"), ["SOA"], "{ixfr}");
        // Anyone else, and a zone we do not serve: refused.
        let other = dig(s.addr, &["+nocmd", "lan", "AXFR"]).await;
        assert_eq!(transfer_types(&other), None, "{other}");
        let foreign = dig(
            s.addr,
            &[&from_secondary[..], &["example.com", "AXFR"]].concat(),
        )
        .await;
        assert_eq!(transfer_types(&foreign), None, "{foreign}");
        // A lease change moves the serial: a new NOTIFY carries it.
        s.names.apply(NameChange::Leases {
            now: UnixTime(0),
            changes: &[LeaseChange::Remove {
                ip: LAPTOP,
                reason: crate::lease::RemoveReason::Released,
            }],
        });
        let next = s.names.read().serial();
        assert!(next > serial);
        let carried = timeout(Duration::from_secs(15), async {
            loop {
                let (n, _) = secondary.recv_from(&mut buf).await.expect("recv");
                let m = Message::from_vec(&buf[..n]).expect("decode");
                if m.answers
                    .iter()
                    .any(|r| matches!(&r.data, RData::SOA(s) if s.serial == next))
                {
                    return;
                }
            }
        })
        .await;
        assert!(carried.is_ok(), "no NOTIFY with serial {next}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_signed_query_gets_a_signed_answer_that_dig_verifies() {
        use crate::clock::Clock as _;
        let mut cfg = update_config();
        let mut xfr = cfg.start.dns.tsig_keys[0].clone();
        xfr.name = "xfr".into();
        cfg.start.dns.tsig_keys.push(xfr);
        cfg.start.dns.transfer_keys = vec!["xfr".into()];
        let dir = tempfile::tempdir().expect("tempdir");
        let s = start_updatable(&cfg, dir.path(), crate::clock::SystemClock.now().0).await;
        let key = format!(
            "hmac-sha256:ddns:{}",
            data_encoding::BASE64.encode(&cfg.start.dns.tsig_keys[0].secret)
        );
        // A static name (hickory's path), the SOA, a name that does not exist; UDP and TCP.
        for (name, rtype) in [("printer.lan", "A"), ("lan", "SOA"), ("ghost.lan", "A")] {
            for transport in ["+notcp", "+tcp"] {
                let out = dig(s.addr, &["-y", &key, name, rtype, transport]).await;
                assert!(
                    out.contains("TSIG\thmac-sha256.") && !out.contains("verify"),
                    "{name} {rtype} {transport}: {out}"
                );
            }
        }
        // Transfers: the transfer key may, the update key (valid, but not a transfer key) may not.
        let secret = data_encoding::BASE64.encode(&cfg.start.dns.tsig_keys[0].secret);
        let xfr = dig(
            s.addr,
            &["-y", &format!("hmac-sha256:xfr:{secret}"), "lan", "AXFR"],
        )
        .await;
        let types = transfer_types(&xfr).expect("the transfer key may");
        assert_eq!(types.first().map(String::as_str), Some("SOA"), "{xfr}");
        assert!(!xfr.contains("verify"), "{xfr}");
        let other = dig(s.addr, &["-y", &key, "lan", "AXFR"]).await;
        assert_eq!(transfer_types(&other), None, "{other}");
    }

    #[tokio::test]
    async fn unserved_opcodes_get_notimp_and_newer_edns_badvers_with_our_opt() {
        let s = start(600).await;
        let mut status = query_bytes("laptop.lan.", RecordType::A);
        status[2] = (status[2] & 0x87) | (2 << 3); // opcode STATUS
        let reply = Message::from_vec(&udp_exchange(s.addr, &status).await).expect("decode");
        assert_eq!(reply.metadata.response_code, ResponseCode::NotImp);
        assert_eq!(
            reply.metadata.id,
            u16::from_be_bytes([status[0], status[1]])
        );
        for name in ["laptop.lan", "printer.lan"] {
            let out = dig(s.addr, &[name, "A", "+edns=1", "+noednsneg"]).await;
            assert!(out.contains("status: BADVERS"), "{name}: {out}");
            assert!(out.contains("EDNS: version: 0"), "{name}: {out}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_name_added_by_nsupdate_makes_its_parent_an_empty_non_terminal() {
        use crate::clock::Clock as _;
        let cfg = update_config();
        let dir = tempfile::tempdir().expect("tempdir");
        let s = start_updatable(&cfg, dir.path(), crate::clock::SystemClock.now().0).await;
        let secret = data_encoding::BASE64.encode(&cfg.start.dns.tsig_keys[0].secret);
        let addr = s.addr;
        let script = format!(
            "server {} {}\nzone lan.\nupdate add _x._tcp.lan. 120 SRV 0 0 80 printer.lan.\nsend\n",
            addr.ip(),
            addr.port()
        );
        let out = tokio::task::spawn_blocking(move || {
            let mut child = std::process::Command::new("nsupdate")
                .args(["-y", &format!("hmac-sha256:ddns:{secret}"), "-t", "3"])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("nsupdate runs");
            use std::io::Write as _;
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(script.as_bytes())
                .expect("write script");
            child.wait_with_output().expect("nsupdate ends")
        })
        .await
        .expect("join");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for transport in ["+notcp", "+tcp"] {
            let ent = dig(addr, &["_tcp.lan", "A", "+noall", "+comments", transport]).await;
            assert!(
                ent.contains("status: NOERROR") && ent.contains("ANSWER: 0"),
                "_tcp.lan over {transport}: {ent}"
            );
            let nx = dig(addr, &["_udp.lan", "A", "+noall", "+comments", transport]).await;
            assert!(nx.contains("status: NXDOMAIN"), "_udp.lan: {nx}");
        }
    }

    #[tokio::test]
    async fn nsupdate_adds_and_deletes_with_sha1_and_sha512_keys() {
        use crate::clock::Clock as _;
        let mut cfg = update_config();
        let mut sha1 = cfg.start.dns.tsig_keys[0].clone();
        sha1.name = "old".into();
        sha1.algorithm = hickory_server::proto::rr::rdata::tsig::TsigAlgorithm::HmacSha1;
        let mut sha512 = sha1.clone();
        sha512.name = "big".into();
        sha512.algorithm = hickory_server::proto::rr::rdata::tsig::TsigAlgorithm::HmacSha512;
        cfg.start.dns.tsig_keys = vec![sha1.clone(), sha512.clone()];
        let dir = tempfile::tempdir().expect("tempdir");
        let s = start_updatable(&cfg, dir.path(), crate::clock::SystemClock.now().0).await;
        let secret = data_encoding::BASE64.encode(&sha1.secret);
        let addr = s.addr;
        let nsupdate = move |alg: &str, name: &str, script: String| {
            let key = format!("{alg}:{name}:{secret}");
            let mut child = std::process::Command::new("nsupdate")
                .args(["-y", &key, "-t", "3"])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("nsupdate runs");
            use std::io::Write as _;
            let header = format!("server {} {}\nzone lan.\n", addr.ip(), addr.port());
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(format!("{header}{script}send\n").as_bytes())
                .expect("write script");
            child.wait_with_output().expect("nsupdate ends")
        };
        let add = tokio::task::spawn_blocking({
            let nsupdate = nsupdate.clone();
            move || {
                nsupdate(
                    "hmac-sha1",
                    "old",
                    "update add nas.lan. 120 A 10.0.0.88\n".into(),
                )
            }
        });
        let out = add.await.expect("join");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(dig(s.addr, &["nas.lan", "+short"]).await, "10.0.0.88");
        let del = tokio::task::spawn_blocking(move || {
            nsupdate("hmac-sha512", "big", "update delete nas.lan. A\n".into())
        });
        let out = del.await.expect("join");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            udp_query(s.addr, "nas.lan.", RecordType::A)
                .await
                .metadata
                .response_code,
            ResponseCode::NXDomain
        );
        stop(s).await;
    }

    /// A query as raw bytes: `flags` is the header's third and fourth byte; `opt` adds an OPT
    /// record (payload, version, options).
    fn raw_query(name: &str, rtype: u16, flags: [u8; 2], opt: Option<(u16, u8, &[u8])>) -> Vec<u8> {
        let mut q = vec![0xbe, 0xef, flags[0], flags[1], 0, 1, 0, 0, 0, 0, 0, 0];
        q[11] = u8::from(opt.is_some());
        for label in name.trim_end_matches('.').split('.') {
            q.push(u8::try_from(label.len()).expect("short label"));
            q.extend_from_slice(label.as_bytes());
        }
        q.push(0);
        q.extend_from_slice(&rtype.to_be_bytes());
        q.extend_from_slice(&1u16.to_be_bytes());
        if let Some((payload, version, options)) = opt {
            q.extend_from_slice(&[0, 0, 41]);
            q.extend_from_slice(&payload.to_be_bytes());
            q.extend_from_slice(&[0, version, 0x80, 0]);
            let len = u16::try_from(options.len()).expect("short options");
            q.extend_from_slice(&len.to_be_bytes());
            q.extend_from_slice(options);
        }
        q
    }

    const COOKIE: &[u8] = &[0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8];
    const T_A: u16 = 1;
    const T_PTR: u16 = 12;
    const T_MX: u16 = 15;
    const T_AAAA: u16 = 28;

    /// The fast path of a server built like `start_paths` builds it, on its names and clock.
    fn fast_path_of(s: &Running, cfg: &Config) -> FastPath {
        let clock: Arc<dyn Clock> = Arc::new(s.clock.clone());
        let zones = zones_for(cfg, s.names.clone(), clock.clone()).expect("zones");
        FastPath::new(cfg, &zones, s.names.clone(), clock)
    }

    /// The fast path's answer, which must exist and mean what hickory's answer means.
    async fn assert_same_answer(hickory: &Running, fast: &FastPath, query: &[u8]) -> Message {
        let slow = udp_exchange(hickory.addr, query).await;
        let mut out = Vec::new();
        assert!(fast.answer(query, &mut out), "fast path answers {query:?}");
        let slow = Message::from_vec(&slow).expect("hickory's answer decodes");
        let quick = Message::from_vec(&out).expect("the fast answer decodes");
        assert_eq!(quick, slow, "same answer to {query:?}");
        // Records compare without their TTLs: compare the text (owner as written, TTL, data).
        assert_eq!(texts(&quick), texts(&slow), "same records for {query:?}");
        quick
    }

    fn texts(msg: &Message) -> Vec<String> {
        let sections = [&msg.answers, &msg.authorities, &msg.additionals];
        sections
            .iter()
            .flat_map(|s| s.iter().map(|r| r.to_string()))
            .collect()
    }

    #[tokio::test]
    async fn fast_path_answers_mean_what_hickory_answers_mean() {
        let cfg = config();
        let hickory = start_paths(cfg.clone(), 3600, false).await;
        let fast = fast_path_of(&hickory, &cfg);
        let rd = [1, 0];
        let a = assert_same_answer(&hickory, &fast, &raw_query("laptop.lan", T_A, rd, None)).await;
        assert_eq!(a_records(&a), vec![LAPTOP]);
        assert!(a.metadata.authoritative);
        let upper = raw_query("LapTop.LAN", T_A, rd, None);
        assert_eq!(
            a_records(&assert_same_answer(&hickory, &fast, &upper).await),
            vec![LAPTOP]
        );
        let aaaa = raw_query("laptop.lan", T_AAAA, rd, None);
        let nodata = assert_same_answer(&hickory, &fast, &aaaa).await;
        assert!(nodata.answers.is_empty() && soa_in_authority(&nodata));
        let nx = assert_same_answer(&hickory, &fast, &raw_query("nobody.lan", T_A, rd, None)).await;
        assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
        assert!(soa_in_authority(&nx));
        let deep = raw_query("a.b.laptop.lan", T_AAAA, rd, None);
        assert_same_answer(&hickory, &fast, &deep).await;
        for ptr in ["50.0.0.10.in-addr.arpa", "5.0.0.10.IN-ADDR.arpa"] {
            let reply = assert_same_answer(&hickory, &fast, &raw_query(ptr, T_PTR, rd, None)).await;
            assert_eq!(reply.answers.len(), 1);
        }
        // No RD, CD set; EDNS with a small, a usual and a large payload, with a cookie.
        assert_same_answer(
            &hickory,
            &fast,
            &raw_query("laptop.lan", T_A, [0, 0x10], None),
        )
        .await;
        for (payload, options) in [(100, &[][..]), (1232, COOKIE), (4096, &[][..])] {
            let q = raw_query("laptop.lan", T_A, rd, Some((payload, 0, options)));
            let reply = assert_same_answer(&hickory, &fast, &q).await;
            let edns = reply.edns.expect("EDNS echoed");
            assert_eq!(edns.max_payload(), payload.max(512));
            let q = raw_query("nobody.lan", T_AAAA, rd, Some((payload, 0, options)));
            assert_same_answer(&hickory, &fast, &q).await;
        }
        stop(hickory).await;
    }

    #[tokio::test]
    async fn fast_path_ttl_follows_the_lease_like_hickory() {
        let cfg = config();
        let hickory = start_paths(cfg.clone(), 100, false).await;
        let fast = fast_path_of(&hickory, &cfg);
        let a = raw_query("laptop.lan", T_A, [1, 0], None);
        let ptr = raw_query("50.0.0.10.in-addr.arpa", T_PTR, [1, 0], None);
        assert_eq!(
            assert_same_answer(&hickory, &fast, &a).await.answers[0].ttl,
            100
        );
        hickory.clock.advance(60);
        assert_eq!(
            assert_same_answer(&hickory, &fast, &a).await.answers[0].ttl,
            40
        );
        assert_eq!(
            assert_same_answer(&hickory, &fast, &ptr).await.answers[0].ttl,
            40
        );
        hickory.clock.advance(40);
        let gone = assert_same_answer(&hickory, &fast, &a).await;
        assert_eq!(gone.metadata.response_code, ResponseCode::NXDomain);
        // An expired lease's PTR is NXDOMAIN with the reverse zone's SOA: hickory's to answer.
        assert!(!fast.answer(&ptr, &mut Vec::new()));
        stop(hickory).await;
    }

    #[tokio::test]
    async fn fast_path_leaves_the_rest_to_hickory() {
        let cfg = config_with_records();
        let s = start_paths(cfg.clone(), 3600, true).await;
        let fast = fast_path_of(&s, &cfg);
        let rd = [1, 0];
        let update = raw_query("lan", 6, [0x28, 0], None);
        // Static A and AAAA names are the fast path's too, with hickory's meaning.
        let hickory = start_paths(cfg.clone(), 3600, false).await;
        for query in [
            raw_query("printer.lan", T_A, rd, None),
            raw_query("nas.lan", T_A, rd, Some((1232, 0, COOKIE))),
            raw_query("NAS.lan", T_AAAA, rd, None),
        ] {
            assert_same_answer(&hickory, &fast, &query).await;
        }
        stop(hickory).await;
        for query in [
            raw_query("www.lan", T_A, rd, None),
            raw_query("laptop.lan", T_MX, rd, None),
            raw_query("lan", 6, rd, None),
            raw_query("example.com", T_A, rd, None),
            raw_query("9.9.0.10.in-addr.arpa", T_PTR, rd, None),
            raw_query("laptop.lan", T_A, rd, Some((1232, 1, &[]))),
            raw_query("laptop.lan", T_A, rd, Some((1232, 0, &[0, 3, 0, 0]))),
            update,
        ] {
            assert!(
                !fast.answer(&query, &mut Vec::new()),
                "{query:?} is hickory's"
            );
        }
        // Through the server, hickory's answers reach the client with its own ID.
        let reply = udp_query(s.addr, "printer.lan.", RecordType::A).await;
        assert_eq!(reply.metadata.id, 0x1234);
        assert_eq!(a_records(&reply), vec![PRINTER]);
        let reply = udp_query(s.addr, "lan.", RecordType::SOA).await;
        assert_eq!(reply.answers[0].record_type(), RecordType::SOA);
        stop(s).await;
    }

    #[tokio::test]
    async fn servers_with_and_without_the_fast_path_answer_alike() {
        let with = start_paths(config(), 3600, true).await;
        let without = start_paths(config(), 3600, false).await;
        for query in [
            raw_query("laptop.lan", T_A, [1, 0], Some((1232, 0, COOKIE))),
            raw_query("LAPTOP.lan", T_AAAA, [1, 0], None),
            raw_query("nobody.lan", T_A, [0, 0], None),
            raw_query("printer.lan", T_A, [1, 0], None),
            raw_query("50.0.0.10.in-addr.arpa", T_PTR, [1, 0], None),
            raw_query("lan", T_MX, [1, 0], None),
        ] {
            let a = Message::from_vec(&udp_exchange(with.addr, &query).await).expect("decode");
            let b = Message::from_vec(&udp_exchange(without.addr, &query).await).expect("decode");
            assert_eq!(a, b, "same answer to {query:?}");
            assert_eq!(texts(&a), texts(&b), "same records for {query:?}");
        }
        stop(with).await;
        stop(without).await;
    }

    #[tokio::test]
    async fn fast_path_survives_garbage() {
        let cfg = config();
        let s = start_paths(cfg.clone(), 3600, true).await;
        let fast = fast_path_of(&s, &cfg);
        let valid = [
            raw_query("laptop.lan", T_A, [1, 0], Some((1232, 0, COOKIE))),
            raw_query("50.0.0.10.in-addr.arpa", T_PTR, [1, 0], None),
        ];
        let mut out = Vec::new();
        let mut seed = 0x2545_f491_u32;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed
        };
        for query in &valid {
            // Every truncation, and many random byte changes.
            for len in 0..query.len() {
                if fast.answer(&query[..len], &mut out) {
                    Message::from_vec(&out).expect("a fast answer decodes");
                }
            }
            for _ in 0..5000 {
                let mut bad = query.clone();
                let at = next() as usize % bad.len();
                bad[at] = next() as u8;
                if fast.answer(&bad, &mut out) {
                    Message::from_vec(&out).expect("a fast answer decodes");
                }
            }
        }
        let sock = UdpSocket::bind("127.0.0.1:0").await.expect("socket");
        for _ in 0..200 {
            let len = next() as usize % 64;
            let junk: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            sock.send_to(&junk, s.addr).await.expect("send junk");
        }
        let reply = udp_query(s.addr, "laptop.lan.", RecordType::A).await;
        assert_eq!(a_records(&reply), vec![LAPTOP]);
        stop(s).await;
    }
}
