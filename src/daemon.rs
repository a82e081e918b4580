//! Wiring: recover leases and dynamic DNS records, bind sockets, spawn the DHCP, DNS and HTTP
//! tasks, wait for SIGTERM/SIGINT, shut down through one watch channel. The only place (with `main`) that uses `anyhow`.

use std::sync::{Arc, RwLock};

use anyhow::Context;
use tokio::signal::unix::{SignalKind, signal};
use tracing::{error, info, warn};

use crate::clock::{Clock, SystemClock, UnixTime};
use crate::config::Config;
use crate::dhcp::engine::Engine;
use crate::dhcp::service::DhcpService;
use crate::dns::dynamic::DynamicStore;
use crate::dns::journal::UpdateJournal;
use crate::dns::names::{Names, SharedNames};
use crate::dns::server::DnsServer;
use crate::http::HttpServer;
use crate::http::dyndns::DynDns;
use crate::lease::journal::Journal;
use crate::net::DhcpSocket;

/// Large blocks (the lease indexes' hash tables, the journal's arena) come from their own
/// mappings and go back to the system when freed: glibc would otherwise raise its threshold
/// after the first such free and serve the next tables from the heap, where a table left
/// behind by a rehash keeps its pages (peak RSS with 100,000 leases).
#[allow(unsafe_code)]
fn fixed_mmap_threshold() {
    // SAFETY: mallopt only sets an allocator parameter; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

/// Run the daemon until SIGTERM or SIGINT.
pub fn run(cfg: Config) -> anyhow::Result<()> {
    fixed_mmap_threshold();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(serve(Arc::new(cfg), Arc::new(SystemClock)))
}

/// Everything after the runtime exists.
pub async fn serve(cfg: Arc<Config>, clock: Arc<dyn Clock>) -> anyhow::Result<()> {
    let now = clock.now();
    let (journal, leases) = Journal::open(&cfg.lease_file, cfg.durability, now)
        .with_context(|| format!("opening the lease journal {}", cfg.lease_file.display()))?;
    info!(leases = leases.len(), file = %cfg.lease_file.display(), "leases recovered");

    let names = names_for(&cfg, &leases, now);
    let dns_names = names.clone();
    let leases_for_ddns = if cfg.ddns.zones.is_empty() {
        Vec::new()
    } else {
        leases.clone()
    };
    let store = open_dynamic_records(&cfg, &dns_names)?;
    let engine = Engine::new(cfg.clone(), leases, now);
    let socket = DhcpSocket::bind(cfg.dhcp_port)
        .with_context(|| format!("binding DHCP port {}", cfg.dhcp_port))?;
    let port = socket.local_port().context("reading the DHCP port")?;
    info!("listening for DHCP on udp 0.0.0.0:{port}");
    let dns =
        DnsServer::bind_with_store(&cfg, dns_names.clone(), clock.clone(), Some(store.clone()))
            .await
            .context("binding DNS sockets")?;
    let http = if cfg.dns.http.listen.is_empty() {
        None
    } else {
        let http = &cfg.dns.http;
        let dyndns = DynDns::new(
            cfg.dns.dyndns_users.clone(),
            store,
            http.ttl,
            http.rate_limit,
            clock.clone(),
        );
        Some(
            HttpServer::bind(http, Arc::new(dyndns))
                .await
                .context("binding the HTTP listener")?,
        )
    };

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut dhcp = DhcpService::new(cfg.clone(), engine, journal, names, socket, clock.clone())
        .context("starting the DHCP service")?;
    let mut ddns_task = None;
    if !cfg.ddns.zones.is_empty() {
        let (tx, task) =
            crate::ddns::start(&cfg, &leases_for_ddns, clock).context("opening the DDNS queue")?;
        info!(zones = cfg.ddns.zones.len(), queue = %cfg.ddns.queue_file.display(), "DDNS updates on");
        dhcp = dhcp.with_ddns(tx);
        ddns_task = Some(tokio::spawn(task.run(stop_rx.clone())));
    }
    let (cfg_tx, cfg_rx) = tokio::sync::watch::channel(cfg.clone());
    let dhcp_thread = dhcp
        .spawn_thread(stop_rx.clone(), cfg_rx)
        .context("starting the DHCP thread")?;
    let http_task = http.map(|h| tokio::spawn(h.run(stop_rx.clone())));
    let dns_task = tokio::spawn(dns.run(stop_rx));

    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    let mut hup = signal(SignalKind::hangup()).context("installing SIGHUP handler")?;
    info!("leasedns ready");
    loop {
        tokio::select! {
            _ = term.recv() => { info!("SIGTERM: shutting down"); break }
            _ = int.recv() => { info!("SIGINT: shutting down"); break }
            _ = hup.recv() => {
                let running = cfg_tx.borrow().clone();
                match reload(&running, &dns_names) {
                    Ok(new) => { let _ = cfg_tx.send(new); info!("reloaded {}", running.path.display()) }
                    Err(e) => error!("reload rejected, the running config stays: {e:#}"),
                }
            }
        }
    }
    let _ = stop_tx.send(true);
    let joined = tokio::task::spawn_blocking(move || dhcp_thread.join()).await;
    if !matches!(joined, Ok(Ok(()))) {
        anyhow::bail!("the DHCP thread failed");
    }
    if let Some(task) = ddns_task {
        task.await.context("DDNS task")?;
    }
    dns_task.await.context("DNS task")?.context("DNS server")?;
    if let Some(task) = http_task {
        task.await.context("HTTP task")?;
    }
    info!("leasedns stopped");
    Ok(())
}

/// SIGHUP: read and validate the config again. A bad file changes nothing. Settings bound at
/// start (domain, lease file, durability, ports, DNS listen addresses, upstreams, TTL, DDNS) keep
/// their running values, with a warning; everything else (subnets, pools, options, reservations,
/// classes, static records, the hosts file) takes effect at once.
fn reload(running: &Config, names: &SharedNames) -> anyhow::Result<Arc<Config>> {
    let mut new = Config::load(&running.path)?;
    if let Some(path) = &new.dns.hosts_file {
        // Read before anything changes, so a missing hosts file rejects the whole reload.
        std::fs::metadata(path).with_context(|| format!("hosts_file {}", path.display()))?;
    }
    keep_start_settings(running, &mut new);
    match names.write() {
        Ok(mut n) => n.reconfigure(&new),
        Err(poisoned) => poisoned.into_inner().reconfigure(&new),
    }
    if let Some(path) = &new.dns.hosts_file {
        crate::dns::names::load_hosts_file(names, path)
            .with_context(|| format!("hosts_file {}", path.display()))?;
    }
    Ok(Arc::new(new))
}

/// Put back the settings that only a restart changes, warning about each that differs.
fn keep_start_settings(running: &Config, new: &mut Config) {
    macro_rules! keep {
        ($($field:ident).+) => {
            if new.$($field).+ != running.$($field).+ {
                warn!(concat!(stringify!($($field).+), " changed; it takes effect after a restart"));
                new.$($field).+ = running.$($field).+.clone();
            }
        };
    }
    keep!(domain);
    keep!(lease_file);
    keep!(durability);
    keep!(dhcp_port);
    keep!(client_port);
    keep!(dns.listen);
    keep!(dns.upstreams);
    keep!(dns.ttl);
    keep!(ddns);
    keep!(dns.tsig_keys);
    keep!(dns.update_journal);
    keep!(dns.http);
    keep!(dns.dyndns_users);
}

/// The name index at start: reservations and `[[dns.record]]`s from config, then every
/// recovered bound lease (the hosts file is read by the DNS server).
pub fn names_for(cfg: &Config, leases: &[crate::lease::Lease], now: UnixTime) -> SharedNames {
    let mut names = Names::from_config(cfg);
    names.load_leases(now, leases);
    Arc::new(RwLock::new(names))
}

/// Replay the dynamic-record journal (`dns.update_journal`, default `<lease_file>.dns`) into
/// `names` and return the store that UPDATE and DynDNS2 write through.
fn open_dynamic_records(cfg: &Config, names: &SharedNames) -> anyhow::Result<Arc<DynamicStore>> {
    let path = cfg.dns.update_journal.clone().unwrap_or_else(|| {
        let mut p = cfg.lease_file.clone().into_os_string();
        p.push(".dns");
        p.into()
    });
    let (journal, records) = UpdateJournal::open(&path, cfg.durability)
        .with_context(|| format!("opening the DNS update journal {}", path.display()))?;
    info!(records = records.len(), file = %path.display(), "dynamic DNS records recovered");
    names
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .set_dynamic(records);
    Ok(DynamicStore::new(journal, names.clone()))
}
