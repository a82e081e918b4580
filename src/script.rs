//! The lease-change script (`dhcp_script`), dnsmasq-compatible: called as
//! `SCRIPT add|old|del MAC IP [NAME]` with `DNSMASQ_*` variables in its environment, one call
//! at a time, on a task of its own fed with every durable batch (the DHCP thread never waits
//! for it). Nothing is lost across a restart or a crash: what the script was last told about
//! each address is kept in `<lease_file>.script` (a line appended after each call), and at
//! start that is compared with the leases the journal recovered; every difference is told.
//!
//! The pure part (`Reconciler`) keeps, per address, what the leases say (`desired`) and what
//! the script was told (`told`); addresses that differ wait in arrival order and changes to one
//! address are merged while it waits (a grant and two renewals before the script runs make one
//! `add`). A lease that moves to another MAC is told as `del` then `add`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::Write;
use std::net::Ipv4Addr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

use crate::clock::Clock;
use crate::config::{Config, DhcpScript};
use crate::lease::{Lease, LeaseChange, LeaseState};
use crate::log::replace::{create_temp, private_options};
use crate::log::with_suffix;

/// How long to wait before trying again when the script cannot be started at all.
const RETRY: Duration = Duration::from_secs(5);

/// What the script hears about one address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
    /// The client identifier, `01:aa:bb:..` (dnsmasq's form).
    pub client_id: String,
    pub name: Option<String>,
    /// Unix seconds.
    pub expires: u64,
}

impl Entry {
    pub fn of(lease: &Lease) -> Entry {
        let id: Vec<String> = lease
            .client
            .as_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Entry {
            mac: lease.hwaddr.to_string(),
            client_id: id.join(":"),
            name: lease.hostname.as_deref().map(str::to_string),
            expires: lease.expires.0,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Add,
    Old,
    Del,
}

impl Action {
    pub fn word(self) -> &'static str {
        match self {
            Action::Add => "add",
            Action::Old => "old",
            Action::Del => "del",
        }
    }
}

/// One call of the script.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub action: Action,
    pub ip: Ipv4Addr,
    pub entry: Entry,
    /// For `old`: the name the script was told before, when it changed.
    pub old_name: Option<String>,
    /// The relay (giaddr) the client's last grant came through, when it came through one
    /// (`DNSMASQ_RELAY_ADDRESS`); known only for grants since this start, as in dnsmasq.
    pub relay: Option<Ipv4Addr>,
}

/// What the leases say and what the script was told, per address (pure; see the module
/// documentation).
#[derive(Debug, Default)]
pub struct Reconciler {
    desired: HashMap<Ipv4Addr, Entry>,
    told: HashMap<Ipv4Addr, Entry>,
    /// Addresses that may differ, oldest first; `queued` holds the same set.
    dirty: VecDeque<Ipv4Addr>,
    queued: HashSet<Ipv4Addr>,
    /// Granted or renewed since last told (only with `on_renewal`): `old` even when nothing
    /// the script sees changed (a renewal within the same second).
    renewed: HashSet<Ipv4Addr>,
    /// dnsmasq's `--script-on-renewal`: a renewal alone is told as `old`. Without it, `old`
    /// means the name changed (dnsmasq's default).
    on_renewal: bool,
    /// The relay each bound address's last relayed grant came through (memory only: what a
    /// relay was is not journaled; a grant received directly keeps the relay known before).
    relays: HashMap<Ipv4Addr, Ipv4Addr>,
}

impl Reconciler {
    /// At start: the recovered bound leases and what the script was told before.
    pub fn new(leases: &[Lease], told: HashMap<Ipv4Addr, Entry>, on_renewal: bool) -> Reconciler {
        let desired: HashMap<Ipv4Addr, Entry> = leases
            .iter()
            .filter(|l| l.state == LeaseState::Bound)
            .map(|l| (l.ip, Entry::of(l)))
            .collect();
        let mut all: Vec<Ipv4Addr> = desired.keys().chain(told.keys()).copied().collect();
        all.sort_unstable();
        all.dedup();
        let mut r = Reconciler {
            desired,
            told,
            on_renewal,
            ..Reconciler::default()
        };
        for ip in all {
            r.mark(ip);
        }
        r
    }

    fn mark(&mut self, ip: Ipv4Addr) {
        if self.queued.insert(ip) {
            self.dirty.push_back(ip);
        }
    }

    /// Take a durable batch and the (address, relay) of its grants that came through a relay.
    pub fn take(&mut self, changes: &[LeaseChange], relays: &[(Ipv4Addr, Ipv4Addr)]) {
        for change in changes {
            match change {
                LeaseChange::Upsert(l) if l.state == LeaseState::Bound => {
                    self.desired.insert(l.ip, Entry::of(l));
                    if self.on_renewal {
                        self.renewed.insert(l.ip);
                    }
                    self.mark(l.ip);
                }
                LeaseChange::Upsert(Lease { ip, .. }) | LeaseChange::Remove { ip, .. } => {
                    self.desired.remove(ip);
                    self.renewed.remove(ip);
                    self.relays.remove(ip);
                    self.mark(*ip);
                }
            }
        }
        for &(ip, relay) in relays {
            if self.desired.contains_key(&ip) {
                self.relays.insert(ip, relay);
            }
        }
    }

    /// The next call to make (the same one until `done`), None when the script knows all.
    pub fn next_event(&mut self) -> Option<Event> {
        while let Some(&ip) = self.dirty.front() {
            if let Some(event) = self.event_for(ip) {
                return Some(event);
            }
            self.dirty.pop_front();
            self.queued.remove(&ip);
        }
        None
    }

    fn event_for(&self, ip: Ipv4Addr) -> Option<Event> {
        let event = |action, entry: &Entry, old_name| Event {
            action,
            ip,
            entry: entry.clone(),
            old_name,
            relay: self.relays.get(&ip).copied(),
        };
        match (self.desired.get(&ip), self.told.get(&ip)) {
            (None, None) => None,
            (None, Some(t)) => Some(event(Action::Del, t, None)),
            (Some(d), None) => Some(event(Action::Add, d, None)),
            (Some(d), Some(t)) if self.same(d, t) && !self.renewed.contains(&ip) => None,
            (Some(d), Some(t)) if d.mac != t.mac => Some(event(Action::Del, t, None)),
            (Some(d), Some(t)) => {
                let old = (d.name != t.name).then(|| t.name.clone()).flatten();
                Some(event(Action::Old, d, old))
            }
        }
    }

    /// Nothing to tell: equal, or (without `on_renewal`) the same client and name.
    fn same(&self, d: &Entry, t: &Entry) -> bool {
        if self.on_renewal {
            d == t
        } else {
            d.mac == t.mac && d.name == t.name
        }
    }

    /// The script was told `event`. Its address leaves the head of the queue; a change that
    /// came meanwhile waits behind the others, except the `add` after a `del` of a moved lease.
    pub fn done(&mut self, event: &Event) {
        let ip = event.ip;
        match event.action {
            Action::Del => self.told.remove(&ip),
            Action::Add | Action::Old => self.told.insert(ip, event.entry.clone()),
        };
        if event.action != Action::Del {
            self.renewed.remove(&ip);
        }
        if self.dirty.front() != Some(&ip) {
            return;
        }
        self.dirty.pop_front();
        self.queued.remove(&ip);
        if self.event_for(ip).is_some() {
            self.queued.insert(ip);
            if event.action == Action::Del && self.desired.contains_key(&ip) {
                self.dirty.push_front(ip);
            } else {
                self.dirty.push_back(ip);
            }
        }
    }

    pub fn told(&self) -> &HashMap<Ipv4Addr, Entry> {
        &self.told
    }

    /// Addresses still to tell.
    pub fn waiting(&self) -> usize {
        self.dirty
            .iter()
            .filter(|ip| self.event_for(**ip).is_some())
            .count()
    }
}

/// `<lease_file>.script`: one line per call made, `add IP MAC EXPIRES CLIENT_ID NAME|-` or
/// `del IP`; the last line of an address wins.
pub struct StateFile {
    path: PathBuf,
    file: std::fs::File,
    lines: usize,
}

impl StateFile {
    /// Read what the script was told and rewrite the file with only that (compacted).
    pub fn open(path: &Path) -> std::io::Result<(StateFile, HashMap<Ipv4Addr, Entry>)> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e),
        };
        let told = parse_state(&text);
        let file = rewrite(path, &told)?;
        let lines = told.len();
        let state = StateFile {
            path: path.to_path_buf(),
            file,
            lines,
        };
        Ok((state, told))
    }

    /// Note one call made (rewriting the file when old lines outnumber live ones 4 to 1).
    pub fn record(
        &mut self,
        event: &Event,
        told: &HashMap<Ipv4Addr, Entry>,
    ) -> std::io::Result<()> {
        if self.lines > 4 * told.len() + 1000 {
            self.file = rewrite(&self.path, told)?;
            self.lines = told.len();
            return Ok(());
        }
        let line = match event.action {
            Action::Del => format!("del {}\n", event.ip),
            Action::Add | Action::Old => state_line(event.ip, &event.entry),
        };
        self.lines += 1;
        self.file.write_all(line.as_bytes())
    }
}

fn state_line(ip: Ipv4Addr, e: &Entry) -> String {
    let name = e.name.as_deref().unwrap_or("-");
    format!("add {ip} {} {} {} {name}\n", e.mac, e.expires, e.client_id)
}

/// The state of `text`; a line that does not parse (a torn last line) is skipped.
fn parse_state(text: &str) -> HashMap<Ipv4Addr, Entry> {
    let mut told = HashMap::new();
    for line in text.lines() {
        let w: Vec<&str> = line.split(' ').collect();
        match w.as_slice() {
            ["del", ip] => {
                if let Ok(ip) = ip.parse::<Ipv4Addr>() {
                    told.remove(&ip);
                }
            }
            ["add", ip, mac, expires, client, name] => {
                let (Ok(ip), Ok(expires)) = (ip.parse::<Ipv4Addr>(), expires.parse()) else {
                    continue;
                };
                let name = (*name != "-").then(|| name.to_string());
                let entry = Entry {
                    mac: mac.to_string(),
                    client_id: client.to_string(),
                    name,
                    expires,
                };
                told.insert(ip, entry);
            }
            _ => debug!(line, "script state: line skipped"),
        }
    }
    told
}

/// Replace the file with `told` (temporary, fsync, rename) and open it for appending.
fn rewrite(path: &Path, told: &HashMap<Ipv4Addr, Entry>) -> std::io::Result<std::fs::File> {
    let tmp = with_suffix(path, ".tmp");
    let mut file = create_temp(&tmp)?;
    let mut ips: Vec<&Ipv4Addr> = told.keys().collect();
    ips.sort_unstable();
    let text: String = ips.iter().map(|ip| state_line(**ip, &told[*ip])).collect();
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    private_options()
        .append(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// One durable batch as the script's task hears it.
#[derive(Clone, Debug, Default)]
pub struct Batch {
    pub changes: Vec<LeaseChange>,
    /// (leased address, relay address) of each grant in the batch that came through a relay.
    pub relays: Vec<(Ipv4Addr, Ipv4Addr)>,
}

/// The DHCP service's side: durable batches go to the script's task (never blocks).
pub struct ScriptSender(mpsc::UnboundedSender<Batch>);

impl ScriptSender {
    pub fn send(&self, changes: &[LeaseChange], relays: Vec<(Ipv4Addr, Ipv4Addr)>) {
        let batch = Batch {
            changes: changes.to_vec(),
            relays,
        };
        if !changes.is_empty() && self.0.send(batch).is_err() {
            debug!("script task has stopped; lease changes not sent");
        }
    }
}

/// Runs the script, one call at a time.
pub struct ScriptTask {
    script: DhcpScript,
    domain: String,
    /// (network, prefix length, interface) of each subnet with an `interface`.
    interfaces: Vec<(Ipv4Addr, u8, String)>,
    core: Reconciler,
    state: StateFile,
    rx: mpsc::UnboundedReceiver<Batch>,
    clock: Arc<dyn Clock>,
}

/// Open the state file and build the task; `leases` are the ones recovered at start.
pub fn start(
    cfg: &Config,
    script: &DhcpScript,
    leases: &[Lease],
    clock: Arc<dyn Clock>,
) -> std::io::Result<(ScriptSender, ScriptTask)> {
    let path = with_suffix(&cfg.start.lease_file, ".script");
    let (state, told) = StateFile::open(&path)?;
    let core = Reconciler::new(leases, told, script.on_renewal);
    if core.waiting() > 0 {
        info!(
            addresses = core.waiting(),
            "dhcp_script: telling the script what changed since it last ran"
        );
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let interfaces = cfg
        .subnets
        .iter()
        .filter_map(|s| Some((s.network, s.prefix_len, s.interface.clone()?)))
        .collect();
    let task = ScriptTask {
        script: script.clone(),
        domain: cfg.start.domain.clone(),
        interfaces,
        core,
        state,
        rx,
        clock,
    };
    Ok((ScriptSender(tx), task))
}

/// How one call ended.
enum Ran {
    /// Ran (whatever its exit status, as dnsmasq) or was killed after its timeout: told.
    Told,
    /// Could not be started: try again later.
    NotStarted,
}

impl ScriptTask {
    /// Runs until shutdown (a call under way is finished first, within its timeout).
    pub async fn run(mut self, mut shutdown: crate::Shutdown) {
        let mut open = true;
        loop {
            while let Ok(batch) = self.rx.try_recv() {
                self.core.take(&batch.changes, &batch.relays);
            }
            if !matches!(shutdown.has_changed(), Ok(false)) {
                break;
            }
            if let Some(event) = self.core.next_event() {
                match self.call(&event).await {
                    Ran::Told => self.told(&event),
                    Ran::NotStarted => tokio::select! {
                        _ = tokio::time::sleep(RETRY) => {}
                        _ = shutdown.changed() => break,
                    },
                }
                continue;
            }
            tokio::select! {
                got = self.rx.recv(), if open => match got {
                    Some(batch) => self.core.take(&batch.changes, &batch.relays),
                    None => open = false,
                },
                _ = shutdown.changed() => break,
            }
        }
        if self.core.waiting() > 0 {
            info!(
                addresses = self.core.waiting(),
                "dhcp_script: changes not yet told; they are told at the next start"
            );
        }
    }

    fn told(&mut self, event: &Event) {
        self.core.done(event);
        if let Err(e) = self.state.record(event, self.core.told()) {
            error!(
                "dhcp_script: cannot write {}: {e}",
                self.state.path.display()
            );
        }
    }

    /// One call: `SCRIPT ACTION MAC IP [NAME]` with the environment of `env`.
    async fn call(&self, event: &Event) -> Ran {
        let mut cmd = tokio::process::Command::new(&self.script.path);
        cmd.arg(event.action.word())
            .arg(&event.entry.mac)
            .arg(event.ip.to_string());
        if let Some(name) = &event.entry.name {
            cmd.arg(name);
        }
        cmd.envs(self.env(event))
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        let mut child = match cmd.spawn() {
            Ok(child) => child,
            Err(e) => {
                error!(script = %self.script.path.display(), "dhcp_script cannot be started (retrying in {RETRY:?}): {e}");
                return Ran::NotStarted;
            }
        };
        let (action, ip) = (event.action.word(), event.ip);
        match tokio::time::timeout(self.script.timeout, child.wait()).await {
            Ok(Ok(status)) if status.success() => debug!(action, %ip, "dhcp_script ran"),
            Ok(Ok(status)) => warn!(action, %ip, %status, "dhcp_script failed"),
            Ok(Err(e)) => warn!(action, %ip, "dhcp_script: waiting for it failed: {e}"),
            Err(_) => {
                warn!(action, %ip, timeout = ?self.script.timeout, "dhcp_script timed out; killed");
                let _ = child.kill().await;
            }
        }
        Ran::Told
    }

    /// The `DNSMASQ_*` variables we know for `event`.
    fn env(&self, event: &Event) -> Vec<(&'static str, String)> {
        let now = self.clock.now().0;
        let e = &event.entry;
        let mut env = vec![
            ("DNSMASQ_CLIENT_ID", e.client_id.clone()),
            ("DNSMASQ_LEASE_EXPIRES", e.expires.to_string()),
            (
                "DNSMASQ_TIME_REMAINING",
                e.expires.saturating_sub(now).to_string(),
            ),
            ("DNSMASQ_DOMAIN", self.domain.clone()),
        ];
        let ip = u32::from(event.ip);
        let iface = self.interfaces.iter().find(|(net, len, _)| {
            let mask = crate::config::prefix_mask(*len);
            ip & mask == u32::from(*net) & mask
        });
        if let Some((_, _, name)) = iface {
            env.push(("DNSMASQ_INTERFACE", name.clone()));
        }
        if let Some(old) = &event.old_name {
            env.push(("DNSMASQ_OLD_HOSTNAME", old.clone()));
        }
        if let Some(relay) = event.relay {
            env.push(("DNSMASQ_RELAY_ADDRESS", relay.to_string()));
        }
        env
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::UnixTime;
    use crate::lease::{ClientId, HwAddr, RemoveReason};

    fn lease(ip: u8, mac: u8, name: Option<&str>, expires: u64) -> Lease {
        let hw = HwAddr::new(1, &[2, 0, 0, 0, 0, mac]);
        Lease {
            ip: Ipv4Addr::new(10, 0, 0, ip),
            client: ClientId::from_hw(&hw),
            hwaddr: hw,
            hostname: name.map(Arc::from),
            expires: UnixTime(expires),
            state: LeaseState::Bound,
        }
    }

    /// Every call the reconciler asks for, each made at once.
    fn drain(r: &mut Reconciler) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(e) = r.next_event() {
            let name = e.entry.name.clone().unwrap_or_default();
            out.push(
                format!("{} {} {} {name}", e.action.word(), e.entry.mac, e.ip)
                    .trim()
                    .to_string(),
            );
            r.done(&e);
        }
        out
    }

    #[test]
    fn changes_become_add_old_del_in_order_and_merge_while_waiting() {
        let mut r = Reconciler::new(&[], HashMap::new(), true);
        assert_eq!(r.next_event(), None);
        // Granted, renewed, renamed before the script ran: one add with the latest.
        r.take(&[LeaseChange::Upsert(lease(7, 1, Some("a"), 100))], &[]);
        r.take(&[LeaseChange::Upsert(lease(7, 1, Some("pc"), 200))], &[]);
        r.take(&[LeaseChange::Upsert(lease(8, 2, None, 100))], &[]);
        assert_eq!(
            drain(&mut r),
            [
                "add 02:00:00:00:00:01 10.0.0.7 pc",
                "add 02:00:00:00:00:02 10.0.0.8"
            ]
        );
        // A renewal (twice: once within the same second, nothing changed but it is one),
        // then a rename (the old name goes in the environment).
        r.take(&[LeaseChange::Upsert(lease(7, 1, Some("pc"), 300))], &[]);
        assert_eq!(drain(&mut r), ["old 02:00:00:00:00:01 10.0.0.7 pc"]);
        r.take(&[LeaseChange::Upsert(lease(7, 1, Some("pc"), 300))], &[]);
        assert_eq!(drain(&mut r), ["old 02:00:00:00:00:01 10.0.0.7 pc"]);
        r.take(
            &[LeaseChange::Upsert(lease(7, 1, Some("laptop"), 300))],
            &[],
        );
        let e = r.next_event().expect("old");
        assert_eq!((e.action, e.old_name.as_deref()), (Action::Old, Some("pc")));
        r.done(&e);
        // The address moves to another client: del then add. A release: del.
        r.take(&[LeaseChange::Upsert(lease(8, 3, None, 400))], &[]);
        r.take(
            &[LeaseChange::Remove {
                ip: [10, 0, 0, 7].into(),
                reason: RemoveReason::Released,
            }],
            &[],
        );
        assert_eq!(
            drain(&mut r),
            [
                "del 02:00:00:00:00:02 10.0.0.8",
                "add 02:00:00:00:00:03 10.0.0.8",
                "del 02:00:00:00:00:01 10.0.0.7 laptop"
            ]
        );
        // Granted and released before the script ran: nothing to tell.
        r.take(&[LeaseChange::Upsert(lease(9, 4, None, 100))], &[]);
        r.take(
            &[LeaseChange::Remove {
                ip: [10, 0, 0, 9].into(),
                reason: RemoveReason::Expired,
            }],
            &[],
        );
        assert_eq!(drain(&mut r), Vec::<String>::new());
    }

    #[test]
    fn a_relayed_grant_names_its_relay_until_the_lease_ends() {
        let mut r = Reconciler::new(&[], HashMap::new(), true);
        let relay = Ipv4Addr::new(10, 9, 0, 1);
        let ip = Ipv4Addr::new(10, 0, 0, 7);
        r.take(
            &[LeaseChange::Upsert(lease(7, 1, None, 100))],
            &[(ip, relay)],
        );
        let e = r.next_event().expect("add");
        assert_eq!((e.action, e.relay), (Action::Add, Some(relay)));
        r.done(&e);
        // A renewal sent straight to the server keeps the relay known before.
        r.take(&[LeaseChange::Upsert(lease(7, 1, None, 200))], &[]);
        let e = r.next_event().expect("old");
        assert_eq!((e.action, e.relay), (Action::Old, Some(relay)));
        r.done(&e);
        r.take(
            &[LeaseChange::Remove {
                ip,
                reason: RemoveReason::Released,
            }],
            &[],
        );
        let e = r.next_event().expect("del");
        assert_eq!((e.action, e.relay), (Action::Del, None));
        // A relay named for an address that is not bound is not kept.
        r.done(&e);
        r.take(&[], &[(ip, relay)]);
        r.take(&[LeaseChange::Upsert(lease(7, 1, None, 300))], &[]);
        assert_eq!(r.next_event().expect("add").relay, None);
    }

    #[test]
    fn without_on_renewal_old_means_a_new_name() {
        let mut r = Reconciler::new(&[], HashMap::new(), false);
        r.take(&[LeaseChange::Upsert(lease(7, 1, Some("pc"), 100))], &[]);
        assert_eq!(drain(&mut r), ["add 02:00:00:00:00:01 10.0.0.7 pc"]);
        r.take(&[LeaseChange::Upsert(lease(7, 1, Some("pc"), 200))], &[]);
        assert_eq!(drain(&mut r), Vec::<String>::new(), "a renewal alone");
        r.take(
            &[LeaseChange::Upsert(lease(7, 1, Some("laptop"), 300))],
            &[],
        );
        assert_eq!(drain(&mut r), ["old 02:00:00:00:00:01 10.0.0.7 laptop"]);
        // At start, a lease renewed while the script was down is not told either.
        let recovered = [lease(7, 1, Some("laptop"), 900)];
        let mut r = Reconciler::new(&recovered, r.told().clone(), false);
        assert_eq!(drain(&mut r), Vec::<String>::new());
    }

    #[test]
    fn a_restart_tells_only_what_the_script_missed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("leases.journal.script");
        let (mut state, told) = StateFile::open(&path).expect("open");
        let mut r = Reconciler::new(&[], told, true);
        r.take(&[LeaseChange::Upsert(lease(7, 1, Some("pc"), 100))], &[]);
        r.take(&[LeaseChange::Upsert(lease(8, 2, None, 100))], &[]);
        r.take(&[LeaseChange::Upsert(lease(9, 3, None, 100))], &[]);
        // Two calls made; then the daemon dies (the third change was durable, not told).
        for _ in 0..2 {
            let e = r.next_event().expect("event");
            r.done(&e);
            state.record(&e, r.told()).expect("recorded");
        }
        // Meanwhile 10.0.0.8 expired (the journal no longer has it), 10.0.0.7 was renewed.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .expect("open");
        f.write_all(b"add 10.0.0.200 torn").expect("torn line");
        let recovered = [lease(7, 1, Some("pc"), 500), lease(9, 3, None, 100)];
        let (_, told) = StateFile::open(&path).expect("reopen");
        assert_eq!(told.len(), 2, "{told:?}");
        let mut r = Reconciler::new(&recovered, told, true);
        assert_eq!(
            drain(&mut r),
            [
                "old 02:00:00:00:00:01 10.0.0.7 pc",
                "del 02:00:00:00:00:02 10.0.0.8",
                "add 02:00:00:00:00:03 10.0.0.9"
            ]
        );
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(!text.contains("torn"), "compacted at open: {text}");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o137, 0, "mode {mode:o}");
    }
}
