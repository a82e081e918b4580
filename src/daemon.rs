//! Wiring: recover leases and dynamic DNS records, bind sockets, spawn the DHCP, DNS and HTTP
//! tasks, wait for SIGTERM/SIGINT, shut down through one watch channel. The only place (with `main`) that uses `anyhow`.

use std::sync::{Arc, RwLock};

use anyhow::Context;
use tokio::signal::unix::{SignalKind, signal};
use tracing::info;

use crate::clock::{Clock, SystemClock};
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
use crate::lease::{LeaseChange, LeaseState};
use crate::net::DhcpSocket;

/// Run the daemon until SIGTERM or SIGINT.
pub fn run(cfg: Config) -> anyhow::Result<()> {
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

    let names = names_for(&cfg, &leases);
    let store = open_dynamic_records(&cfg, &names)?;
    let engine = Engine::new(cfg.clone(), leases, now);
    let socket = DhcpSocket::bind(cfg.dhcp_port)
        .with_context(|| format!("binding DHCP port {}", cfg.dhcp_port))?;
    let port = socket.local_port().context("reading the DHCP port")?;
    info!("listening for DHCP on udp 0.0.0.0:{port}");
    let dns = DnsServer::bind_with_store(&cfg, names.clone(), clock.clone(), Some(store.clone()))
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
    let dhcp = DhcpService::new(cfg.clone(), engine, journal, names, socket, clock);
    let dhcp_task = tokio::spawn(dhcp.run(stop_rx.clone()));
    let http_task = http.map(|h| tokio::spawn(h.run(stop_rx.clone())));
    let dns_task = tokio::spawn(dns.run(stop_rx));

    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    info!("leasedns ready");
    tokio::select! {
        _ = term.recv() => info!("SIGTERM: shutting down"),
        _ = int.recv() => info!("SIGINT: shutting down"),
    }
    let _ = stop_tx.send(true);
    dhcp_task.await.context("DHCP task")?;
    dns_task.await.context("DNS task")?.context("DNS server")?;
    if let Some(task) = http_task {
        task.await.context("HTTP task")?;
    }
    info!("leasedns stopped");
    Ok(())
}

/// The name index at start: reservations from config, then every recovered bound lease.
fn names_for(cfg: &Config, leases: &[crate::lease::Lease]) -> SharedNames {
    let statics: Vec<(String, std::net::Ipv4Addr)> = cfg
        .reservations
        .iter()
        .filter_map(|r| Some((r.name.clone()?, r.ip)))
        .collect();
    let mut names = Names::new(&cfg.domain, &statics);
    names.set_config_records(cfg.dns.records.clone());
    let bound: Vec<LeaseChange> = leases
        .iter()
        .filter(|l| l.state == LeaseState::Bound)
        .map(|l| LeaseChange::Upsert(l.clone()))
        .collect();
    names.apply(&bound);
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
