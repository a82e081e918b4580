//! A real power cut under the daemon (issue 14): the lease journal and the DNS update journal
//! live on an ext4 file system in a loop image, mounted with a 10-minute journal commit
//! interval; after clients are acknowledged (DHCP ACKs, nsupdate NOERROR), the file system is
//! shut down with EXT4_IOC_SHUTDOWN and NOLOGFLUSH (what xfstests uses to simulate a power
//! loss: everything not yet on disk is dropped, page cache included), leasedns is killed, the
//! image is mounted again and leasedns restarted on it. With `durability = "fsync"` and
//! `"batch"` every acknowledged lease and record is back, and so are the outbound DDNS jobs
//! queued for a primary that does not answer; with `"none"` they are lost, which shows the
//! test sees a missing fsync. LAN indices 103-105.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};

use crate::clients::Udhcpc;
use crate::ddns_in::{SECRET, ensure_ok, nsupdate, tsig_keys};
use crate::dig;
use crate::netns::Lan;
use crate::proc::run_ok;
use crate::server::{Server, ServerOptions};

const CMD: Duration = Duration::from_secs(30);

/// An ext4 image mounted on a directory; unmounted (and its loop device freed) on drop.
struct LoopDisk {
    image: PathBuf,
    path: PathBuf,
}

impl LoopDisk {
    fn create(dir: &Path) -> Result<LoopDisk> {
        let image = dir.join("disk.img");
        let path = dir.join("disk");
        std::fs::create_dir_all(&path)?;
        std::fs::File::create(&image)?.set_len(64 << 20)?;
        run_ok(
            Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&image),
            CMD,
        )?;
        let disk = LoopDisk { image, path };
        disk.mount()?;
        Ok(disk)
    }

    /// Journal commits every 600 s: only an fsync puts a change on disk before the cut.
    fn mount(&self) -> Result<()> {
        run_ok(
            Command::new("mount")
                .args(["-o", "loop,commit=600"])
                .arg(&self.image)
                .arg(&self.path),
            CMD,
        )?;
        Ok(())
    }

    /// The power goes: EXT4_IOC_SHUTDOWN with EXT4_GOING_FLAGS_NOLOGFLUSH drops everything not
    /// yet on disk; every later access fails.
    fn cut(&self) -> Result<()> {
        const EXT4_IOC_SHUTDOWN: libc::c_ulong = 0x8004_587d;
        const NOLOGFLUSH: u32 = 2;
        let dir = std::fs::File::open(&self.path)?;
        // SAFETY: the ioctl reads one u32 through a pointer to a live local; the descriptor is
        // an open directory of the file system for the whole call.
        let rc = unsafe { libc::ioctl(dir.as_raw_fd(), EXT4_IOC_SHUTDOWN, &NOLOGFLUSH) };
        if rc != 0 {
            bail!("EXT4_IOC_SHUTDOWN: {}", std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// Mount what the disk holds after the cut. From a copy of the image: a process started
    /// while the file system was mounted (another test's `ip netns exec` runs in a copy of the
    /// host's mounts) can keep the dead file system alive, and mounting the same image again
    /// would then get that shut-down file system back (EIO); the copy gets a loop device and a
    /// file system of its own. The loop driver wrote through the image file, so the copy holds
    /// exactly what reached the disk.
    fn remount(&mut self) -> Result<()> {
        run_ok(Command::new("umount").arg(&self.path), CMD)?;
        let after = self.image.with_extension("after-cut.img");
        std::fs::copy(&self.image, &after)?;
        self.image = after;
        self.mount()
    }
}

impl Drop for LoopDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.path).status();
    }
}

/// What was acknowledged before the cut: (name, address) of leases and of nsupdate records.
struct Acked {
    leases: Vec<(String, std::net::Ipv4Addr)>,
    records: Vec<(String, String)>,
}

/// Three DHCP clients and two signed updates, all acknowledged; then the cut, kill -9,
/// remount and restart. Returns how many acknowledged names are missing afterwards.
fn lost_after_a_power_cut(lan: &Lan, durability: &'static str) -> Result<usize> {
    let mut disk = LoopDisk::create(&lan.path(""))?;
    let opts = ServerOptions {
        durability,
        global_toml: if durability == "batch" {
            "batch_max_delay_ms = 20\n".into()
        } else {
            String::new()
        },
        // Outbound DDNS to a primary nobody answers for: the jobs stay queued on the disk.
        extra_toml: format!(
            "{}\n[[ddns_zone]]\nzone = \"lan\"\nprimary = \"{}:5399\"\n",
            tsig_keys(),
            lan.addr(2)
        ),
        lease_file: Some(disk.path.join("leases.journal")),
        ..ServerOptions::default()
    };
    let mut server = Server::start(lan, &opts)?;
    let mut acked = Acked {
        leases: Vec::new(),
        records: Vec::new(),
    };
    let mut clients = Vec::new();
    for i in 0..3 {
        let name = format!("pc{i}");
        let mut client = Udhcpc::new(lan, i, &name)?;
        acked.leases.push((name, client.obtain()?));
        clients.push(client);
    }
    let key = format!("hmac-sha256:ddns:{SECRET}");
    for (name, ip) in [("nas", "192.0.2.10"), ("cam", "192.0.2.11")] {
        let out = nsupdate(
            lan,
            &lan.probe,
            Some(&key),
            &format!("update add {name}.lan. 300 A {ip}\n"),
        )?;
        ensure_ok(&out, name)?;
        acked.records.push((format!("{name}.lan"), ip.to_string()));
    }
    // The three jobs have been written to the queue (each write is followed by its sync).
    let queue = disk.path.join("leases.journal.ddns");
    crate::proc::poll(CMD, || {
        let text = std::fs::read_to_string(&queue).unwrap_or_default();
        Ok((text.matches(" J ").count() >= 3).then_some(()))
    })
    .context("three DDNS jobs queued")?;
    disk.cut()?;
    server.kill()?;
    // Every process started since the mount (clients, via `ip netns exec`) holds a copy of it
    // in its mount namespace: stop them, or the dead file system stays and is mounted again.
    for client in &mut clients {
        client.stop()?;
    }
    disk.remount()?;
    server.launch()?;
    let (srv, probe) = (lan.server_ip(), &lan.probe);
    let mut lost = 0;
    for (name, ip) in &acked.leases {
        lost += usize::from(dig::assert_resolves(probe, srv, &format!("{name}.lan"), *ip).is_err());
    }
    for (name, ip) in &acked.records {
        lost += usize::from(dig::short(probe, srv, name, "A").ok() != Some(vec![ip.clone()]));
    }
    let pending = queued_at_start(&server.log());
    lost += 3usize.saturating_sub(pending);
    println!(
        "power cut with durability = {durability}: {lost} of 8 lost (5 acknowledged names, \
         3 queued DDNS jobs; {pending} jobs pending at restart)"
    );
    server.kill()?;
    Ok(lost)
}

/// The `pending=N` of "DDNS updates pending from the last run" (0 without that line).
fn queued_at_start(log: &str) -> usize {
    log.lines()
        .rev()
        .filter(|l| l.contains("DDNS updates pending from the last run"))
        .filter_map(|l| {
            l.split("pending=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .next()
        .unwrap_or(0)
}

#[test]
fn a_power_cut_loses_no_acknowledged_lease_or_update_with_fsync() -> Result<()> {
    let lan = Lan::new("pf", 103, 3)?;
    let lost = lost_after_a_power_cut(&lan, "fsync")?;
    ensure!(lost == 0, "{lost} acknowledged names lost with fsync");
    Ok(())
}

#[test]
fn a_power_cut_loses_no_acknowledged_lease_or_update_with_batch() -> Result<()> {
    let lan = Lan::new("pb", 104, 3)?;
    let lost = lost_after_a_power_cut(&lan, "batch")?;
    ensure!(lost == 0, "{lost} acknowledged names lost with batch");
    Ok(())
}

#[test]
fn the_power_cut_test_sees_the_loss_without_fsync() -> Result<()> {
    let lan = Lan::new("pn", 105, 3)?;
    let lost = lost_after_a_power_cut(&lan, "none").context("durability none")?;
    ensure!(
        lost > 0,
        "nothing lost without fsync: the cut did not drop unsynced writes"
    );
    Ok(())
}
