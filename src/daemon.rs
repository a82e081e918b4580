//! Wiring: recover leases, bind sockets, spawn the DHCP and DNS tasks, wait for SIGTERM/SIGINT,
//! shut down through one watch channel. The only place (with `main`) that uses `anyhow`.

use std::sync::{Arc, RwLock};

use anyhow::Context;
use tokio::signal::unix::{SignalKind, signal};
use tracing::info;

use crate::clock::{Clock, SystemClock, UnixTime};
use crate::config::Config;
use crate::dhcp::engine::Engine;
use crate::dhcp::service::DhcpService;
use crate::dns::names::{Names, SharedNames};
use crate::dns::server::DnsServer;
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

    let names = names_for(&cfg, &leases, now);
    let engine = Engine::new(cfg.clone(), leases, now);
    let socket = DhcpSocket::bind(cfg.dhcp_port)
        .with_context(|| format!("binding DHCP port {}", cfg.dhcp_port))?;
    let port = socket.local_port().context("reading the DHCP port")?;
    info!("listening for DHCP on udp 0.0.0.0:{port}");
    let dns = DnsServer::bind(&cfg, names.clone(), clock.clone())
        .await
        .context("binding DNS sockets")?;

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let dhcp = DhcpService::new(cfg.clone(), engine, journal, names, socket, clock);
    let dhcp_task = tokio::spawn(dhcp.run(stop_rx.clone()));
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
    info!("leasedns stopped");
    Ok(())
}

/// The name index at start: reservations and `[[dns.record]]`s from config, then every
/// recovered bound lease (the hosts file is read by the DNS server).
pub fn names_for(cfg: &Config, leases: &[crate::lease::Lease], now: UnixTime) -> SharedNames {
    let mut names = Names::from_config(cfg);
    let bound: Vec<LeaseChange> = leases
        .iter()
        .filter(|l| l.state == LeaseState::Bound)
        .map(|l| LeaseChange::Upsert(l.clone()))
        .collect();
    names.apply_at(now, &bound);
    Arc::new(RwLock::new(names))
}
