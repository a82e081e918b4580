//! Reservations made at run time through the control API (`POST /api/v1/reservations`,
//! `POST /api/v1/leases/{ip}/reserve`): their file beside the lease journal
//! (`<lease_file>.reservations`, a JSON array replaced atomically), and their merge with the
//! config's `[[host]]`s. The config wins: a saved reservation whose address, MAC or name a
//! `[[host]]` already uses is left out, with a warning. Only the DHCP thread writes the file
//! (`service`, on a control command); the SIGHUP reload reads it to show the merged names at
//! once. No sockets, no clock.

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::config::{Config, GrantSettings, Reservation};
use crate::lease::HwAddr;
use crate::log::replace::create_temp;
use crate::log::{parent_dir, with_suffix};

/// One reservation saved by the API: by MAC, with an optional host name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Saved {
    pub ip: Ipv4Addr,
    /// `aa:bb:cc:dd:ee:ff`, lowercase.
    pub mac: String,
    #[serde(default)]
    pub name: Option<String>,
}

/// A reservation as the API lists it: from the config or from the API.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReservationView {
    pub ip: Ipv4Addr,
    pub mac: Option<String>,
    pub client_id: Option<String>,
    pub name: Option<String>,
    /// "config" (a `[[host]]`, changed by editing the file) or "api".
    pub source: String,
}

/// Why a reservation was refused; `field` is the request's field at fault.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{field}: {message}")]
pub struct Refused {
    pub field: &'static str,
    pub message: String,
    /// The value is fine but another reservation has it (409, not 400).
    pub conflict: bool,
}

fn refused(field: &'static str, message: String) -> Refused {
    Refused {
        field,
        message,
        conflict: false,
    }
}

fn conflict(field: &'static str, message: String) -> Refused {
    Refused {
        field,
        message,
        conflict: true,
    }
}

/// What the API asks for: `ip` reserved for `mac` (None: the MAC of the lease on `ip`), with
/// `name` (None: the lease's host name, if it has one).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Request {
    pub ip: Option<Ipv4Addr>,
    pub mac: Option<String>,
    pub name: Option<String>,
}

/// Why a reservation change did not happen (nothing changed in each case).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReserveError {
    #[error(transparent)]
    Refused(#[from] Refused),
    #[error("no lease on {0} to reserve")]
    NoLease(Ipv4Addr),
    #[error("no reservation on {0}")]
    NotReserved(Ipv4Addr),
    #[error("{0} is reserved by a [[host]] in the config file; edit the file and reload")]
    FromConfig(Ipv4Addr),
    #[error("the reservations file could not be written; nothing changed: {0}")]
    Disk(String),
    #[error("the DHCP service is not running")]
    Stopped,
}

/// `<lease_file>.reservations`.
pub fn path_for(cfg: &Config) -> PathBuf {
    with_suffix(&cfg.start.lease_file, ".reservations")
}

/// The saved reservations (none when there is no file yet).
pub fn load(path: &Path) -> std::io::Result<Vec<Saved>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    serde_json::from_str(&text).map_err(|e| {
        let msg = format!("{}: {e}", path.display());
        std::io::Error::new(std::io::ErrorKind::InvalidData, msg)
    })
}

/// Replace the file with `list`: a temporary (created without following symlinks, mode 0640),
/// fsynced, renamed over the file, the directory fsynced.
pub fn save(path: &Path, list: &[Saved]) -> std::io::Result<()> {
    let tmp = with_suffix(path, ".tmp");
    let mut file = create_temp(&tmp)?;
    let mut text = serde_json::to_string_pretty(list).map_err(std::io::Error::other)?;
    text.push('\n');
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(parent_dir(path))?.sync_all()
}

/// `52:54:00:12:34:56` (or with `-`, or without separators) as an Ethernet address.
pub fn parse_mac(s: &str) -> Option<HwAddr> {
    let digits: String = s.chars().filter(|c| !matches!(c, ':' | '-')).collect();
    if digits.len() != 12 || !digits.is_ascii() {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..12)
        .step_by(2)
        .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).ok())
        .collect();
    Some(HwAddr::new(1, &bytes?))
}

/// `saved` as a config reservation, checked against `taken` (the config's and earlier ones)
/// and the subnets of `cfg`.
pub fn check(cfg: &Config, taken: &[Reservation], saved: &Saved) -> Result<Reservation, Refused> {
    let ip = saved.ip;
    if !cfg.subnets.iter().any(|s| s.contains(ip)) {
        return Err(refused("ip", format!("{ip} is in no configured subnet")));
    }
    let hw = parse_mac(&saved.mac).ok_or_else(|| {
        let m = format!("`{}` is not a MAC like 52:54:00:12:34:56", saved.mac);
        refused("mac", m)
    })?;
    let name = match &saved.name {
        None => None,
        Some(n) => {
            let l = n.to_ascii_lowercase();
            if !crate::config::is_label(&l) {
                let m = format!("`{n}` is not a valid host name (RFC 1123 label)");
                return Err(refused("name", m));
            }
            Some(l)
        }
    };
    if let Some(r) = taken.iter().find(|r| r.ip == ip) {
        return Err(conflict("ip", format!("{ip} is already reserved{}", by(r))));
    }
    if let Some(r) = taken.iter().find(|r| r.hwaddr.as_ref() == Some(&hw)) {
        let m = format!("{hw} already has a reservation: {}{}", r.ip, by(r));
        return Err(conflict("mac", m));
    }
    if let Some(l) = &name
        && let Some(r) = taken.iter().find(|r| r.name.as_ref() == Some(l))
    {
        return Err(conflict(
            "name",
            format!("`{l}` is already used by {}", r.ip),
        ));
    }
    Ok(Reservation {
        hwaddr: Some(hw),
        client_id: None,
        ip,
        name,
        lease_time: None,
        options: Vec::new(),
    })
}

fn by(r: &Reservation) -> String {
    match &r.name {
        Some(n) => format!(" (for {n})"),
        None => String::new(),
    }
}

/// `base` with the saved reservations after its own (`[[host]]` order kept, so host settings
/// still line up); a saved one the config contradicts is left out and logged.
pub fn merge(base: &Config, saved: &[Saved]) -> Config {
    let mut cfg = base.clone();
    for s in saved {
        match check(base, &cfg.reservations, s) {
            Ok(r) => {
                cfg.reservations.push(r);
                cfg.dhcp.host_grants.push(GrantSettings::default());
            }
            Err(e) => warn!(ip = %s.ip, mac = %s.mac,
                "saved reservation left out, the config wins: {e}"),
        }
    }
    cfg
}

/// `base` merged with the file beside its lease journal (for the reload's DNS names; the
/// DHCP thread keeps the list itself). An unreadable file is logged and merges nothing.
pub fn merged_from_disk(base: &Config) -> Config {
    match load(&path_for(base)) {
        Ok(saved) => merge(base, &saved),
        Err(e) => {
            warn!("saved reservations not read: {e}");
            base.clone()
        }
    }
}

/// Every reservation of the merged config, marked with where it comes from (`from_config`:
/// how many of the first ones are the config's).
pub fn views(merged: &Config, from_config: usize) -> Vec<ReservationView> {
    merged
        .reservations
        .iter()
        .enumerate()
        .map(|(i, r)| ReservationView {
            ip: r.ip,
            mac: r.hwaddr.as_ref().map(ToString::to_string),
            client_id: r.client_id.as_ref().map(ToString::to_string),
            name: r.name.clone(),
            source: if i < from_config { "config" } else { "api" }.into(),
        })
        .collect()
}

/// The DHCP thread's reservations: the config it was given (`base`) and the saved ones, kept
/// in their file. Only that thread holds one (the single writer of the file).
pub struct Runtime {
    path: PathBuf,
    base: std::sync::Arc<Config>,
    saved: Vec<Saved>,
}

impl Runtime {
    /// Read the file beside `base`'s lease journal (none yet: no saved reservations).
    pub fn open(base: std::sync::Arc<Config>) -> std::io::Result<Runtime> {
        let path = path_for(&base);
        let saved = load(&path)?;
        Ok(Runtime { path, base, saved })
    }

    /// The config and the saved reservations, merged (what the engine and names use).
    pub fn merged(&self) -> Config {
        merge(&self.base, &self.saved)
    }

    /// A reloaded config replaces the base; the saved reservations stay.
    pub fn set_base(&mut self, base: std::sync::Arc<Config>) {
        self.base = base;
    }

    /// Every reservation, the config's first.
    pub fn views(&self, merged: &Config) -> Vec<ReservationView> {
        views(merged, self.base.reservations.len())
    }

    /// Save `req` (completed from `lease`, the lease on its address, if any) and return it
    /// with the new merged config; the file is written before anything changes.
    pub fn add(
        &mut self,
        merged: &Config,
        req: Request,
        lease: Option<&crate::lease::Lease>,
    ) -> Result<(ReservationView, Config), ReserveError> {
        let ip = req.ip.ok_or_else(|| refused("ip", "is required".into()))?;
        let mac = match (req.mac, lease) {
            (Some(mac), _) => mac,
            (None, Some(l)) if l.hwaddr.htype == 1 && l.hwaddr.bytes().len() == 6 => {
                l.hwaddr.to_string()
            }
            (None, Some(l)) => {
                let m = format!("the lease's hardware address {} is not Ethernet", l.hwaddr);
                return Err(refused("mac", m).into());
            }
            (None, None) => return Err(ReserveError::NoLease(ip)),
        };
        let given = req.name.is_some();
        let name = req
            .name
            .or_else(|| lease?.hostname.as_deref().map(str::to_string));
        let mut entry = Saved { ip, mac, name };
        let checked = match check(&self.base, &merged.reservations, &entry) {
            // The lease's own name may be taken by another reservation: reserve without it.
            Err(e) if e.field == "name" && !given => {
                entry.name = None;
                check(&self.base, &merged.reservations, &entry)
            }
            other => other,
        }?;
        entry.mac = checked
            .hwaddr
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default();
        entry.name = checked.name;
        let mut saved = self.saved.clone();
        saved.push(entry);
        save(&self.path, &saved).map_err(|e| ReserveError::Disk(e.to_string()))?;
        self.saved = saved;
        let merged = self.merged();
        let view = self
            .view_of(&merged, ip)
            .ok_or(ReserveError::NotReserved(ip))?;
        Ok((view, merged))
    }

    /// Remove the saved reservation on `ip`; the removed one and the new merged config.
    pub fn remove(&mut self, ip: Ipv4Addr) -> Result<(ReservationView, Config), ReserveError> {
        let Some(pos) = self.saved.iter().position(|s| s.ip == ip) else {
            if self.base.reservations.iter().any(|r| r.ip == ip) {
                return Err(ReserveError::FromConfig(ip));
            }
            return Err(ReserveError::NotReserved(ip));
        };
        let mut saved = self.saved.clone();
        let gone = saved.remove(pos);
        save(&self.path, &saved).map_err(|e| ReserveError::Disk(e.to_string()))?;
        self.saved = saved;
        let view = ReservationView {
            ip,
            mac: Some(gone.mac),
            client_id: None,
            name: gone.name,
            source: "api".into(),
        };
        Ok((view, self.merged()))
    }

    fn view_of(&self, merged: &Config, ip: Ipv4Addr) -> Option<ReservationView> {
        self.views(merged).into_iter().find(|v| v.ip == ip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Config {
        let text = r#"
domain = "lan"
lease_file = "/tmp/x.journal"
[[subnet]]
network = "10.0.0.0/24"
pool_start = "10.0.0.100"
pool_end = "10.0.0.200"
[[host]]
mac = "02:00:00:00:00:01"
ip = "10.0.0.10"
name = "printer"
"#;
        Config::parse(text, "t.toml".as_ref()).expect("valid")
    }

    fn saved(ip: [u8; 4], mac: &str, name: Option<&str>) -> Saved {
        Saved {
            ip: ip.into(),
            mac: mac.into(),
            name: name.map(str::to_string),
        }
    }

    #[test]
    fn the_config_wins_and_saved_ones_follow_it() {
        let base = cfg();
        let list = [
            saved([10, 0, 0, 20], "02:00:00:00:00:02", Some("NAS")),
            saved([10, 0, 0, 10], "02:00:00:00:00:03", None), // the printer's address
            saved([10, 0, 0, 21], "02-00-00-00-00-01", None), // the printer's MAC
            saved([10, 0, 0, 22], "02:00:00:00:00:04", Some("printer")),
            saved([10, 0, 0, 23], "020000000005", None),
        ];
        let merged = merge(&base, &list);
        let ips: Vec<Ipv4Addr> = merged.reservations.iter().map(|r| r.ip).collect();
        assert_eq!(
            ips,
            [[10, 0, 0, 10], [10, 0, 0, 20], [10, 0, 0, 23]].map(Ipv4Addr::from)
        );
        assert_eq!(merged.dhcp.host_grants.len(), 3);
        assert_eq!(merged.reservations[1].name.as_deref(), Some("nas"));
        let v = views(&merged, base.reservations.len());
        assert_eq!(v[0].source, "config");
        assert_eq!(v[2].source, "api");
        assert_eq!(v[2].mac.as_deref(), Some("02:00:00:00:00:05"));
    }

    #[test]
    fn refusals_name_the_field_and_value() {
        let base = cfg();
        let err = |s: Saved| check(&base, &base.reservations, &s).expect_err("refused");
        let e = err(saved([10, 9, 0, 1], "02:00:00:00:00:09", None));
        assert_eq!(e.field, "ip");
        assert!(e.message.contains("10.9.0.1"), "{e}");
        let e = err(saved([10, 0, 0, 30], "02:00:00:00:00", None));
        assert_eq!(
            (e.field, e.message.contains("02:00:00:00:00")),
            ("mac", true)
        );
        let e = err(saved([10, 0, 0, 30], "02:00:00:00:00:09", Some("a b")));
        assert_eq!(e.field, "name");
        let e = err(saved([10, 0, 0, 10], "02:00:00:00:00:09", None));
        assert!(
            e.to_string()
                .starts_with("ip: 10.0.0.10 is already reserved (for printer)")
        );
        let e = err(saved([10, 0, 0, 30], "02:00:00:00:00:01", None));
        assert_eq!(e.field, "mac");
    }

    #[test]
    fn runtime_changes_are_saved_before_they_count() {
        use crate::clock::UnixTime;
        use crate::lease::{ClientId, LeaseState};
        let dir = tempfile::tempdir().expect("tempdir");
        let mut base = cfg();
        base.start.lease_file = dir.path().join("leases.journal");
        let mut rt = Runtime::open(std::sync::Arc::new(base.clone())).expect("open");
        let hw = HwAddr::new(1, &[2, 0, 0, 0, 0, 7]);
        let lease = crate::lease::Lease {
            ip: [10, 0, 0, 107].into(),
            client: ClientId::from_hw(&hw),
            hwaddr: hw,
            hostname: Some("printer".into()), // a [[host]]'s name: reserved without it
            expires: UnixTime(100),
            state: LeaseState::Bound,
        };
        let req = |ip: [u8; 4], name: Option<&str>| Request {
            ip: Some(ip.into()),
            mac: None,
            name: name.map(str::to_string),
        };
        let merged = rt.merged();
        let err = rt.add(&merged, req([10, 0, 0, 108], None), None);
        assert_eq!(
            err.expect_err("no lease"),
            ReserveError::NoLease([10, 0, 0, 108].into())
        );
        let (view, merged) = rt
            .add(&merged, req([10, 0, 0, 107], None), Some(&lease))
            .expect("ok");
        assert_eq!(
            (view.mac.as_deref(), view.name),
            (Some("02:00:00:00:00:07"), None)
        );
        assert_eq!(merged.reservations.len(), 2);
        let again = Runtime::open(std::sync::Arc::new(base.clone())).expect("reopen");
        assert_eq!(again.merged().reservations, merged.reservations, "saved");
        // A given name that is taken is refused, not dropped.
        let mut named = req([10, 0, 0, 109], Some("printer"));
        named.mac = Some("02:00:00:00:00:09".into());
        let e = rt.add(&merged, named, None);
        assert!(matches!(e, Err(ReserveError::Refused(r)) if r.field == "name" && r.conflict));
        assert_eq!(
            rt.remove([10, 0, 0, 10].into()).expect_err("config"),
            ReserveError::FromConfig([10, 0, 0, 10].into())
        );
        // A file that cannot be written changes nothing.
        rt.path = dir.path().join("missing").join("r");
        let e = rt.remove([10, 0, 0, 107].into()).expect_err("disk");
        assert!(matches!(e, ReserveError::Disk(_)), "{e:?}");
        assert_eq!(rt.merged().reservations.len(), 2);
    }

    #[test]
    fn the_file_round_trips_and_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("leases.journal.reservations");
        assert_eq!(load(&path).expect("no file yet"), []);
        let list = vec![saved([10, 0, 0, 20], "02:00:00:00:00:02", Some("nas"))];
        save(&path, &list).expect("saved");
        assert_eq!(load(&path).expect("read"), list);
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o137, 0, "mode {mode:o}");
        std::fs::write(&path, "[{\"ip\":\"10.0.0.1\",\"mac\":\"x\",\"colour\":1}]").expect("w");
        let e = load(&path).expect_err("unknown field");
        assert!(e.to_string().contains("colour"), "{e}");
    }
}
