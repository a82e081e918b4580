//! Wiring: recover leases and dynamic DNS records, bind sockets, spawn the DHCP, DNS and HTTP
//! tasks, report readiness to systemd (`sdnotify`), wait for SIGTERM/SIGINT, shut down through
//! one watch channel. The only place (with `main`) that uses `anyhow`.

use std::sync::Arc;

use anyhow::Context;
use tokio::signal::unix::{SignalKind, signal};
use tracing::{error, info, warn};

use crate::clock::{Clock, SystemClock, UnixTime};
use crate::config::Config;
use crate::dhcp::engine::Engine;
use crate::dhcp::service::DhcpService;
use crate::dns::dynamic::DynamicStore;
use crate::dns::journal::UpdateJournal;
use crate::dns::names::{NameChange, NameIndex, Names, SharedNames};
use crate::dns::server::DnsServer;
use crate::dns::statics::StaticRecords;
use crate::http::HttpServer;
use crate::http::dyndns::DynDns;
use crate::lease::journal::Journal;
use crate::lease::pg::PgStore;
use crate::lease::store::LeaseStore;
use crate::net::DhcpSocket;
use crate::sdnotify::Notifier;

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
    // Files created from here on get no group write and nothing for others (`FILE_MODE`).
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o027));
    // Before the runtime: threads started later inherit the reduced credentials.
    crate::privdrop::drop_privileges(&cfg).context("dropping privileges")?;
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
    let (journal, leases) = open_leases(&cfg, now)?;

    // The config's reservations and those saved through the API (the DHCP thread keeps both).
    let merged = Arc::new(crate::dhcp::reserve::merged_from_disk(&cfg));
    let statics = crate::dns::hosts::load(&merged).await?;
    let names = names_for(&merged, statics, &leases, now);
    let dns_names = names.clone();
    let leases_for_ddns = if cfg.start.ddns.zones.is_empty() && cfg.start.dhcp_script.is_none() {
        Vec::new()
    } else {
        leases.clone()
    };
    let store = open_dynamic_records(&cfg, &dns_names)?;
    let engine = Engine::new(merged, leases, now);
    let socket = bind_dhcp(&cfg)?;
    let dns =
        DnsServer::bind_with_store(&cfg, dns_names.clone(), clock.clone(), Some(store.clone()))
            .await
            .context("binding DNS sockets")?;
    let mut metrics = crate::http::Metrics {
        dns: Some(dns.counters()),
        upstream_latency: dns.upstream_latency(),
        ..Default::default()
    };
    let http = bind_http(&cfg, store.clone(), clock.clone()).await?;

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let dhcp = DhcpService::new(cfg.clone(), engine, journal, names, socket, clock.clone())
        .context("starting the DHCP service")?;
    metrics.dhcp = Some(dhcp.stats());
    let events = dhcp.stats().events.clone();
    let bus = events.clone();
    store.on_commit(Box::new(move |ops| bus.publish_records(ops)));
    let (dhcp, ddns_task) =
        with_ddns(dhcp, &cfg, &leases_for_ddns, &clock, &stop_rx, &mut metrics)?;
    let (mut dhcp, script_task) = with_script(dhcp, &cfg, &leases_for_ddns, &clock, &stop_rx)?;
    let control = dhcp.control();
    let (cfg_tx, cfg_rx) = tokio::sync::watch::channel(cfg.clone());
    let dhcp_thread = dhcp
        .spawn_thread(stop_rx.clone(), cfg_rx)
        .context("starting the DHCP thread")?;
    let (reload_tx, reload_rx) = tokio::sync::mpsc::channel(4);
    let extras = Extras {
        metrics: Arc::new(metrics),
        control,
        names: dns_names.clone(),
        events,
        reloader: crate::http::ops::Reloader(reload_tx),
    };
    let http = http.map(|h| with_extras(h, &cfg, extras));
    let http_task = http.map(|h| tokio::spawn(h.run(stop_rx.clone())));
    let stop_rx_watchdog = stop_rx.clone();
    let dns_task = tokio::spawn(dns.run(stop_rx));

    let signals = Signals::install()?;
    let notifier = Arc::new(Notifier::from_env());
    let watchdog = notifier
        .watchdog_interval()
        .map(|every| tokio::spawn(watchdog(notifier.clone(), every, stop_rx_watchdog)));
    info!("leasedns ready");
    notifier.ready("serving DHCP and DNS");
    signals
        .until_stopped(&notifier, &cfg_tx, &dns_names, reload_rx)
        .await;
    notifier.stopping();
    let _ = stop_tx.send(true);
    if let Some(task) = watchdog {
        let _ = task.await;
    }
    join_all(dhcp_thread, ddns_task, script_task, dns_task, http_task).await?;
    info!("leasedns stopped");
    Ok(())
}

/// Wait for every service to finish after the stop signal; the first failure is the error.
async fn join_all(
    dhcp_thread: std::thread::JoinHandle<()>,
    ddns_task: Option<tokio::task::JoinHandle<()>>,
    script_task: Option<tokio::task::JoinHandle<()>>,
    dns_task: tokio::task::JoinHandle<std::io::Result<()>>,
    http_task: Option<tokio::task::JoinHandle<()>>,
) -> anyhow::Result<()> {
    let joined = tokio::task::spawn_blocking(move || dhcp_thread.join()).await;
    if !matches!(joined, Ok(Ok(()))) {
        anyhow::bail!("the DHCP thread failed");
    }
    if let Some(task) = ddns_task {
        task.await.context("DDNS task")?;
    }
    if let Some(task) = script_task {
        task.await.context("dhcp_script task")?;
    }
    dns_task.await.context("DNS task")?.context("DNS server")?;
    if let Some(task) = http_task {
        task.await.context("HTTP task")?;
    }
    Ok(())
}

/// Open the lease store and recover its leases: the journal, or with `[lease_database]` the
/// shared PostgreSQL store (then the journal file is not used).
fn open_leases(
    cfg: &Config,
    now: UnixTime,
) -> anyhow::Result<(Box<dyn LeaseStore>, Vec<crate::lease::Lease>)> {
    if let Some(db) = &cfg.start.lease_database {
        let settings = db.settings().map_err(anyhow::Error::msg)?;
        let what = settings.describe();
        let settings_tls = settings.tls_mode();
        // The blocking client runs its own runtime: connect from a plain thread, not this task.
        let opened = std::thread::scope(|s| s.spawn(|| PgStore::open(settings, now)).join());
        let (store, leases) = opened
            .map_err(|_| anyhow::anyhow!("opening the {what}: the thread panicked"))?
            .with_context(|| format!("opening the {what}"))?;
        info!(
            leases = leases.len(),
            node = store.node(),
            tls = settings_tls,
            "leases loaded from the {what}"
        );
        return Ok((Box::new(store), leases));
    }
    let file = &cfg.start.lease_file;
    let (journal, leases) = Journal::open(file, cfg.start.durability, now)
        .with_context(|| format!("opening the lease journal {}", file.display()))?;
    info!(leases = leases.len(), file = %file.display(), "leases recovered");
    Ok((Box::new(journal), leases))
}

/// The DHCP socket: the one bound before the privilege drop, or a new one.
fn bind_dhcp(cfg: &Config) -> anyhow::Result<DhcpSocket> {
    let mut socket = crate::privdrop::take_dhcp(cfg.start.dhcp_port)
        .map_or_else(|| DhcpSocket::bind(cfg.start.dhcp_port), Ok)
        .with_context(|| format!("binding DHCP port {}", cfg.start.dhcp_port))?;
    let port = socket.local_port().context("reading the DHCP port")?;
    info!("listening for DHCP on udp 0.0.0.0:{port}");
    socket.set_arp_entries(cfg.start.arp_entries);
    Ok(socket)
}

/// Start the RFC 2136 sender when DDNS zones are configured, fed by `dhcp`.
fn with_ddns(
    dhcp: DhcpService,
    cfg: &Config,
    leases: &[crate::lease::Lease],
    clock: &Arc<dyn Clock>,
    stop: &crate::Shutdown,
    metrics: &mut crate::http::Metrics,
) -> anyhow::Result<(DhcpService, Option<tokio::task::JoinHandle<()>>)> {
    let ddns = &cfg.start.ddns;
    if ddns.zones.is_empty() {
        return Ok((dhcp, None));
    }
    let (tx, task) =
        crate::ddns::start(cfg, leases, clock.clone()).context("opening the DDNS queue")?;
    metrics.ddns_depth = Some(task.depth());
    info!(zones = ddns.zones.len(), queue = %ddns.queue_file.display(), "DDNS updates on");
    Ok((
        dhcp.with_ddns(tx),
        Some(tokio::spawn(task.run(stop.clone()))),
    ))
}

/// Start the `dhcp_script` task when configured, fed by `dhcp`.
fn with_script(
    dhcp: DhcpService,
    cfg: &Config,
    leases: &[crate::lease::Lease],
    clock: &Arc<dyn Clock>,
    stop: &crate::Shutdown,
) -> anyhow::Result<(DhcpService, Option<tokio::task::JoinHandle<()>>)> {
    let Some(script) = &cfg.start.dhcp_script else {
        return Ok((dhcp, None));
    };
    let (tx, task) = crate::script::start(cfg, script, leases, clock.clone())
        .context("opening the dhcp_script state file")?;
    info!(script = %script.path.display(), "dhcp_script on");
    Ok((
        dhcp.with_script(tx),
        Some(tokio::spawn(task.run(stop.clone()))),
    ))
}

/// SIGHUP or `POST /api/v1/reload`: validate and take the config again (`reload`); the
/// reloaded file, or why the running config stays.
async fn reload_now(
    cfg_tx: &tokio::sync::watch::Sender<Arc<Config>>,
    names: &SharedNames,
    notifier: &Notifier,
) -> anyhow::Result<String> {
    notifier.reloading();
    let running = cfg_tx.borrow().clone();
    let res = reload(&running, names).await.map(|new| {
        let _ = cfg_tx.send(new);
        info!("reloaded {}", running.path.display());
        running.path.display().to_string()
    });
    if let Err(e) = &res {
        error!("reload rejected, the running config stays: {e:#}");
    }
    notifier.ready("serving DHCP and DNS");
    res
}

/// The HTTP listener (DynDNS2 writes through `store`), if `[dns.http] listen` names any address.
async fn bind_http(
    cfg: &Config,
    store: Arc<DynamicStore>,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<Option<HttpServer>> {
    if cfg.start.dns.http.listen.is_empty() {
        return Ok(None);
    }
    let http = &cfg.start.dns.http;
    let dyndns = DynDns::new(
        cfg.start.dns.dyndns_users.clone(),
        store,
        http.ttl,
        http.rate_limit,
        clock,
    );
    let server = HttpServer::bind(http, Arc::new(dyndns))
        .await
        .context("binding the HTTP listener")?;
    Ok(Some(server))
}

/// The signals the daemon serves, installed before it reports readiness.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("installing SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("installing SIGINT handler")?,
            hup: signal(SignalKind::hangup()).context("installing SIGHUP handler")?,
        })
    }

    /// Serve signals until SIGTERM or SIGINT: SIGHUP and `POST /api/v1/reload` (asked on
    /// `asks`) reload (see `reload_now`).
    async fn until_stopped(
        mut self,
        notifier: &Notifier,
        cfg_tx: &tokio::sync::watch::Sender<Arc<Config>>,
        names: &SharedNames,
        mut asks: tokio::sync::mpsc::Receiver<crate::http::ops::ReloadAsk>,
    ) {
        loop {
            tokio::select! {
                _ = self.term.recv() => { info!("SIGTERM: shutting down"); return }
                _ = self.int.recv() => { info!("SIGINT: shutting down"); return }
                _ = self.hup.recv() => { let _ = reload_now(cfg_tx, names, notifier).await; }
                Some(ask) = asks.recv() => {
                    let res = reload_now(cfg_tx, names, notifier).await;
                    let failure = |e: anyhow::Error| {
                        crate::http::ops::ReloadFailure::new(&*e, format!("{e:#}"))
                    };
                    let _ = ask.send(res.map_err(failure));
                }
            }
        }
    }
}

/// What the HTTP listener's `/metrics`, control API and status page read.
struct Extras {
    metrics: Arc<crate::http::Metrics>,
    control: crate::dhcp::control::Control,
    names: crate::dns::names::SharedNames,
    events: crate::dhcp::events::Events,
    /// The daemon's reload, for `POST /api/v1/reload`.
    reloader: crate::http::ops::Reloader,
}

/// Add `/metrics` and the control API (with the status page) to the HTTP listener when the
/// config turns them on.
fn with_extras(mut http: HttpServer, cfg: &Config, extras: Extras) -> HttpServer {
    let Extras {
        metrics,
        control,
        names,
        events,
        reloader,
    } = extras;
    let h = &cfg.start.dns.http;
    if let (true, Some(token)) = (h.api, &h.api_token) {
        info!("control API on /api/v1/, status page on /status");
        http = http.with_api(crate::http::api::Api {
            control,
            token: token.secret.clone(),
            metrics: metrics.clone(),
            started: std::time::Instant::now(),
            names,
            events,
            reload: Some(reloader),
        });
    }
    if h.metrics {
        http = http.with_metrics(metrics);
    }
    http
}

/// `WATCHDOG=1` every `every` (half systemd's `WatchdogSec=`) until shutdown. It runs on the
/// async runtime, so a wedged runtime stops the pings and systemd restarts the daemon.
async fn watchdog(
    notifier: Arc<Notifier>,
    every: std::time::Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = tick.tick() => notifier.watchdog(),
            _ = stop.changed() => return,
        }
    }
}

/// SIGHUP: read and validate the config again. A bad file changes nothing. The settings bound
/// at start (`config::Startup`) keep their running values, with a warning for each that the
/// file changed; everything else (subnets, pools, options, reservations, classes, static
/// records, the hosts file) takes effect at once.
/// All or nothing: the config and the hosts file it names are read and parsed first, on a
/// blocking thread; only then do the names take the new static records, in one step.
async fn reload(running: &Config, names: &SharedNames) -> anyhow::Result<Arc<Config>> {
    let path = running.path.clone();
    let mut new = tokio::task::spawn_blocking(move || Config::load(&path))
        .await
        .context("the config read did not finish")??;
    for key in new.keep_start(&running.start) {
        warn!(key, "changed; it takes effect after a restart");
    }
    // The names of the reservations saved through the API stay (the DHCP thread merges too).
    let shown = crate::dhcp::reserve::merged_from_disk(&new);
    let statics = crate::dns::hosts::load(&shown).await?;
    names.apply(NameChange::Statics(statics));
    Ok(Arc::new(new))
}

/// The name index at start: the static records of `cfg` (its hosts file already read into
/// `statics`), then every recovered bound lease.
pub fn names_for(
    cfg: &Config,
    statics: StaticRecords,
    leases: &[crate::lease::Lease],
    now: UnixTime,
) -> SharedNames {
    let mut names = Names::new(&cfg.start.domain, &[]);
    names.change(NameChange::Statics(statics));
    names.change(NameChange::Recovered { now, leases });
    NameIndex::new(names)
}

/// Replay the dynamic-record journal (`dns.update_journal`, default `<lease_file>.dns`) into
/// `names` and return the store that UPDATE and DynDNS2 write through.
fn open_dynamic_records(cfg: &Config, names: &SharedNames) -> anyhow::Result<Arc<DynamicStore>> {
    let path = &cfg.start.dns.update_journal;
    let (journal, records) = UpdateJournal::open(path, cfg.start.durability)
        .with_context(|| format!("opening the DNS update journal {}", path.display()))?;
    info!(records = records.len(), file = %path.display(), "dynamic DNS records recovered");
    names.apply(NameChange::DynamicRecovered(records));
    Ok(DynamicStore::new(journal, names.clone()))
}

#[cfg(test)]
mod loopback_test;
#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// A config file in `dir` with a `[[dns.record]]` www at `www` and the hosts file `hosts`.
    fn write_config(dir: &Path, www: &str, hosts: Option<&Path>) -> std::path::PathBuf {
        let hosts = hosts.map_or(String::new(), |h| {
            format!("hosts_file = \"{}\"\n", h.display())
        });
        let text = format!(
            "domain = \"lan\"\nlease_file = \"{dir}/leases\"\ndurability = \"none\"\n\
             [dns]\n{hosts}\
             [[dns.record]]\nname = \"www\"\ntype = \"A\"\nvalue = \"{www}\"\n\
             [[subnet]]\nnetwork = \"10.0.0.0/24\"\npool_start = \"10.0.0.100\"\n\
             pool_end = \"10.0.0.199\"\n",
            dir = dir.display()
        );
        let path = dir.join("leasedns.toml");
        std::fs::write(&path, text).expect("write config");
        path
    }

    fn a(names: &SharedNames, fqdn: &str) -> Option<String> {
        names.read().lookup_a(fqdn).map(|f| f.value.to_string())
    }

    #[tokio::test]
    async fn reload_is_all_or_nothing_and_dropping_the_hosts_file_drops_its_names() {
        let dir = tempfile::tempdir().expect("tempdir");
        let hosts = dir.path().join("hosts");
        std::fs::write(&hosts, "10.0.0.40 cam\n").expect("write hosts");
        let path = write_config(dir.path(), "10.0.0.50", Some(&hosts));
        let running = Config::load(&path).expect("config");
        let statics = crate::dns::hosts::load(&running).await.expect("hosts");
        let names = names_for(&running, statics, &[], UnixTime(100));
        assert_eq!(a(&names, "cam.lan").as_deref(), Some("10.0.0.40"));
        assert_eq!(a(&names, "www.lan").as_deref(), Some("10.0.0.50"));
        let serial = names.read().serial();

        // The hosts file is gone: the whole reload is rejected, nothing of it applies.
        std::fs::remove_file(&hosts).expect("remove hosts");
        write_config(dir.path(), "10.0.0.51", Some(&hosts));
        let err = reload(&running, &names).await.expect_err("must fail");
        assert!(format!("{err:#}").contains("hosts"), "{err:#}");
        assert_eq!(a(&names, "www.lan").as_deref(), Some("10.0.0.50"));
        assert_eq!(a(&names, "cam.lan").as_deref(), Some("10.0.0.40"));
        assert_eq!(names.read().serial(), serial);

        // Without `hosts_file` the host records go, with the new record, in one step.
        write_config(dir.path(), "10.0.0.51", None);
        let new = reload(&running, &names).await.expect("reload");
        assert_eq!(new.dns.hosts_file, None);
        assert_eq!(a(&names, "cam.lan"), None);
        assert_eq!(a(&names, "www.lan").as_deref(), Some("10.0.0.51"));
        assert!(names.read().serial() > serial);
    }
}
