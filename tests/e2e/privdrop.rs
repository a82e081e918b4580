//! Least privilege (issue 17): started as root with `user = "..."`, leasedns binds, hands its
//! lease files to that user and switches to it, keeping only CAP_NET_ADMIN (ARP entries; not
//! with `arp_entries = false`) and CAP_NET_RAW (the ping check), in every thread. DHCP with a real client, the ping check, DNS
//! (dig), a SIGHUP reload and a restart still work, and the lease files stay the user's, 0640
//! at most. LAN indices 150, 153, 154 (tag "hd"); the test's system user is created only if absent and
//! removed afterwards only if this test created it.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, ensure};

use crate::clients::{Dhclient, Udhcpc};
use crate::dig;
use crate::netns::{IFACE, Lan, ip};
use crate::proc::{Daemon, run_ok};
use crate::server::{Server, ServerOptions, leasedns_bin, logged, render_config, stop_cleanly};

/// The system users the tests run leasedns as, one per test (they run in parallel and each
/// removes its own). Never `leasedns`: other tests running meanwhile would drop to it.
const USER: &str = "leasedns-e2e";
const USER_SYSTEMD: &str = "leasedns-e2e2";
const USER_BROADCAST: &str = "leasedns-e2e3";

/// CAP_NET_ADMIN (12) and CAP_NET_RAW (13), as /proc shows capability sets.
const KEPT: u64 = (1 << 12) | (1 << 13);

/// The test's system user; removed on drop if this test created it.
struct SystemUser {
    name: String,
    uid: u32,
    gid: u32,
    created: bool,
}

impl SystemUser {
    fn ensure(name: &str) -> Result<SystemUser> {
        let created = nix::unistd::User::from_name(name)?.is_none();
        if created {
            run_ok(
                Command::new("useradd").args([
                    "--system",
                    "--user-group",
                    "--no-create-home",
                    "--shell",
                    "/usr/sbin/nologin",
                    name,
                ]),
                Duration::from_secs(60),
            )?;
        }
        let user = nix::unistd::User::from_name(name)?.context("user just created")?;
        Ok(SystemUser {
            name: name.to_string(),
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
            created,
        })
    }
}

impl Drop for SystemUser {
    fn drop(&mut self) {
        if self.created {
            let _ = Command::new("userdel").arg(&self.name).status();
        }
    }
}

/// One `Key:\tvalue` line of a /proc status file.
fn field<'a>(status: &'a str, key: &str) -> Option<&'a str> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .map(str::trim)
}

/// Every thread of `pid` runs as `user` (real, effective, saved and file-system ids), in its
/// group only, with exactly the capabilities `caps` permitted, effective and bounding, none
/// ambient or inheritable, and no_new_privs. Returns how many threads were checked.
fn check_creds(pid: u32, user: &SystemUser, caps: u64) -> Result<usize> {
    check_creds_with(pid, user, caps, &user.gid.to_string(), Some(caps))
}

/// `check_creds` with the supplementary groups and bounding set (None: any) given.
fn check_creds_with(
    pid: u32,
    user: &SystemUser,
    caps: u64,
    groups: &str,
    bounding: Option<u64>,
) -> Result<usize> {
    let want_uid = format!("{0}\t{0}\t{0}\t{0}", user.uid);
    let want_gid = format!("{0}\t{0}\t{0}\t{0}", user.gid);
    let mut threads = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let path = task?.path().join("status");
        let status = std::fs::read_to_string(&path)?;
        let hex = |key: &str| -> Result<u64> {
            let v = field(&status, key).with_context(|| format!("{key} in {path:?}"))?;
            Ok(u64::from_str_radix(v, 16)?)
        };
        let at = path.display();
        ensure!(field(&status, "Uid") == Some(&want_uid), "{at}: {status}");
        ensure!(field(&status, "Gid") == Some(&want_gid), "{at}: {status}");
        ensure!(field(&status, "Groups") == Some(groups), "{at}: {status}");
        ensure!(
            hex("CapEff")? == caps && hex("CapPrm")? == caps,
            "{at}: {status}"
        );
        ensure!(hex("CapAmb")? == 0 && hex("CapInh")? == 0, "{at}: {status}");
        if let Some(bnd) = bounding {
            ensure!(hex("CapBnd")? == bnd, "bounding set cut: {at}: {status}");
        }
        ensure!(field(&status, "NoNewPrivs") == Some("1"), "{at}: {status}");
        threads += 1;
    }
    Ok(threads)
}

/// Every file in `dir` (and `dir` itself) belongs to the user; files are 0640 at most.
fn check_files(dir: &Path, user: &SystemUser) -> Result<usize> {
    let meta = std::fs::metadata(dir)?;
    ensure!(meta.uid() == user.uid, "{dir:?} owned by {}", meta.uid());
    let mut files = 0;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let meta = std::fs::symlink_metadata(&path)?;
        ensure!(meta.uid() == user.uid, "{path:?} owned by {}", meta.uid());
        let mode = meta.permissions().mode() & 0o777;
        ensure!(mode & !0o640 == 0, "{path:?} has mode {mode:o}");
        files += 1;
    }
    Ok(files)
}

#[test]
fn runs_as_its_user_with_only_the_capabilities_it_needs() -> Result<()> {
    let user = SystemUser::ensure(USER)?;
    let lan = Lan::new("hd", 150, 2)?;
    // The user reads the config on SIGHUP: the scratch directory must be passable.
    std::fs::set_permissions(lan.path(""), std::fs::Permissions::from_mode(0o755))?;
    let state = lan.path("state");
    std::fs::create_dir(&state)?;
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700))?;
    // c1 answers pings on the allocator's first choices: the ping check must skip them.
    let squatted: Vec<_> = (100..=102).map(|last| lan.addr(last)).collect();
    for addr in &squatted {
        let cidr = format!("{addr}/24");
        ip(&["-n", &lan.clients[1].ns, "addr", "add", &cidr, "dev", IFACE])?;
    }

    // First as root (`user = "root"`): the journal is root's, and loosened to 0644 as an
    // older leasedns would have left it.
    let mut opts = ServerOptions {
        global_toml: "user = \"root\"\nping_check = true\nping_timeout_ms = 300\n".into(),
        lease_file: Some(state.join("leases.journal")),
        ..ServerOptions::default()
    };
    let mut server = Server::start(&lan, &opts)?;
    stop_cleanly(&mut server)?;
    let journal = state.join("leases.journal");
    ensure!(std::fs::metadata(&journal)?.uid() == 0, "root's journal");
    std::fs::set_permissions(&journal, std::fs::Permissions::from_mode(0o644))?;

    opts.global_toml = opts.global_toml.replace("\"root\"", &format!("\"{USER}\""));
    std::fs::write(
        &server.config,
        render_config(&lan, &opts, &server.lease_file),
    )?;
    server.launch()?;
    let pid = server.pid().context("leasedns pid")?;
    let threads = logged(&server, check_creds(pid, &user, KEPT))?;
    ensure!(
        threads >= 3,
        "only {threads} threads (runtime and DHCP thread expected)"
    );

    // DHCP through the ping check (raw ICMP in a namespace: CAP_NET_RAW), then DNS.
    let srv = lan.server_ip();
    let client = Dhclient::new(&lan, 0, "lowly")?;
    let got = logged(&server, client.obtain())?;
    ensure!(lan.in_pool(got) && !squatted.contains(&got), "got {got}");
    logged(
        &server,
        dig::assert_resolves(&lan.probe, srv, "lowly.lan", got),
    )?;
    ensure!(
        server.log().contains("ping check done"),
        "no ping check ran"
    );

    // SIGHUP: the user re-reads the config; a new static record appears.
    let record = format!(
        "\n[[dns.record]]\nname = \"added\"\ntype = \"A\"\nvalue = \"{}\"\n",
        lan.addr(50)
    );
    opts.extra_toml = record;
    let text = render_config(&lan, &opts, &server.lease_file);
    let reloaded = server.reload(&text);
    ensure!(logged(&server, reloaded)?, "reload rejected");
    let added = dig::short(&lan.probe, srv, "added.lan", "A")?;
    ensure!(
        added == vec![lan.addr(50).to_string()],
        "added.lan: {added:?}"
    );
    logged(&server, check_creds(pid, &user, KEPT))?;

    // Restart: the lease comes back from the user's journal, and the client keeps it.
    client.stop()?;
    server.restart()?;
    let pid = server.pid().context("leasedns pid")?;
    logged(&server, check_creds(pid, &user, KEPT))?;
    logged(
        &server,
        dig::assert_resolves(&lan.probe, srv, "lowly.lan", got),
    )?;
    let again = logged(&server, client.obtain())?;
    ensure!(again == got, "renewed to {again}, had {got}");
    client.stop()?;
    stop_cleanly(&mut server)?;
    let files = check_files(&state, &user)?;
    ensure!(
        files >= 2,
        "journal and snapshot or .dns expected, found {files}"
    );
    Ok(())
}

/// As systemd's unit starts it (`User=`, `AmbientCapabilities=`; here with setpriv): not root,
/// with CAP_NET_BIND_SERVICE, CAP_NET_RAW and CAP_NET_ADMIN. leasedns binds ports 53 and 67,
/// then keeps only CAP_NET_ADMIN (no ping check), nothing ambient, in every thread; DHCP and
/// DNS work. LAN index 153.
#[test]
fn started_unprivileged_with_capabilities_keeps_only_those_still_needed() -> Result<()> {
    let user = SystemUser::ensure(USER_SYSTEMD)?;
    let lan = Lan::new("hd", 153, 1)?;
    std::fs::set_permissions(lan.path(""), std::fs::Permissions::from_mode(0o755))?;
    // As StateDirectory= would make it: the user's own directory.
    let state = lan.path("state");
    std::fs::create_dir(&state)?;
    std::os::unix::fs::chown(&state, Some(user.uid), Some(user.gid))?;
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o750))?;
    let opts = ServerOptions {
        lease_file: Some(state.join("leases.journal")),
        ..ServerOptions::default()
    };
    let server = Server::prepare(&lan, &opts)?;
    let caps = "+net_bind_service,+net_raw,+net_admin";
    let mut cmd = server.host.exec("setpriv");
    cmd.args([
        "--reuid",
        USER_SYSTEMD,
        "--regid",
        USER_SYSTEMD,
        "--clear-groups",
    ])
    .args(["--inh-caps", caps, "--ambient-caps", caps])
    .arg(leasedns_bin())
    .args(["run", "--config"])
    .arg(&server.config)
    .env("LEASEDNS_LOG", "info,leasedns=debug");
    let mut daemon = Daemon::spawn("leasedns", &mut cmd, &lan.path("setpriv.log"))?;
    let outcome = serve_unprivileged(&lan, &daemon, &user);
    let status = daemon.terminate(Duration::from_secs(10))?;
    outcome.with_context(|| format!("leasedns log:\n{}", daemon.log()))?;
    ensure!(status.success(), "exit {status}: {}", daemon.log());
    Ok(())
}

/// Ready, trimmed to CAP_NET_ADMIN in every thread, serving a dhclient and dig.
fn serve_unprivileged(lan: &Lan, daemon: &Daemon, user: &SystemUser) -> Result<()> {
    crate::proc::poll(Duration::from_secs(30), || {
        Ok(daemon.log().contains("leasedns ready").then_some(()))
    })?;
    let pid = daemon.pid().context("pid")?;
    let threads = check_creds_with(pid, user, 1 << 12, "", None)?;
    ensure!(threads >= 3, "only {threads} threads");
    let client = Dhclient::new(lan, 0, "ambient")?;
    let got = client.obtain()?;
    dig::assert_resolves(&lan.probe, lan.server_ip(), "ambient.lan", got)?;
    client.stop()
}

/// `arp_entries = false` and no ping check: after the drop leasedns keeps no capability at all,
/// in every thread; replies to clients without an address go out by broadcast (no ARP entry
/// tried), and dhclient and udhcpc still get addresses whose names resolve. LAN index 154.
#[test]
fn without_arp_entries_or_ping_check_it_keeps_no_capability_and_still_serves() -> Result<()> {
    let user = SystemUser::ensure(USER_BROADCAST)?;
    let lan = Lan::new("hd", 154, 2)?;
    std::fs::set_permissions(lan.path(""), std::fs::Permissions::from_mode(0o755))?;
    let state = lan.path("state");
    std::fs::create_dir(&state)?;
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700))?;
    let opts = ServerOptions {
        global_toml: format!("user = \"{USER_BROADCAST}\"\narp_entries = false\n"),
        lease_file: Some(state.join("leases.journal")),
        ..ServerOptions::default()
    };
    let mut server = Server::start(&lan, &opts)?;
    let pid = server.pid().context("leasedns pid")?;
    let threads = logged(&server, check_creds(pid, &user, 0))?;
    ensure!(threads >= 3, "only {threads} threads");
    let srv = lan.server_ip();
    let dhclient = Dhclient::new(&lan, 0, "plain")?;
    let a = logged(&server, dhclient.obtain())?;
    let mut udhcpc = Udhcpc::new(&lan, 1, "humble")?;
    let b = logged(&server, udhcpc.obtain())?;
    ensure!(
        a != b && lan.in_pool(a) && lan.in_pool(b),
        "got {a} and {b}"
    );
    logged(
        &server,
        dig::assert_resolves(&lan.probe, srv, "plain.lan", a),
    )?;
    logged(
        &server,
        dig::assert_resolves(&lan.probe, srv, "humble.lan", b),
    )?;
    let log = server.log();
    ensure!(
        !log.contains("no ARP entry"),
        "an ARP entry was tried without arp_entries:\n{log}"
    );
    ensure!(
        log.contains("dest=Broadcast") || log.contains("dest=Direct"),
        "the debug log shows no reply destinations:\n{log}"
    );
    logged(&server, check_creds(pid, &user, 0))?;
    dhclient.stop()?;
    udhcpc.stop()?;
    stop_cleanly(&mut server)
}
