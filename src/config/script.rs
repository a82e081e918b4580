//! `dhcp_script`, `dhcp_script_timeout`, `dhcp_script_on_renewal`: the lease-change script
//! (`crate::script`), started with the daemon (a start-only setting).

use std::path::PathBuf;
use std::time::Duration;

use super::error::Ctx;
use super::{ConfigError, defaults, raw};

/// The lease-change script and how long one call may take.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DhcpScript {
    pub path: PathBuf,
    /// `dhcp_script_timeout` (seconds, default 10): a call running longer is killed, logged.
    pub timeout: Duration,
    /// `dhcp_script_on_renewal` (dnsmasq's `--script-on-renewal`): `old` on every written
    /// renewal, not only when the name changes. Default false.
    pub on_renewal: bool,
}

/// `dhcp_script` (an absolute path) and `dhcp_script_timeout` (1 to 3600 s, default 10).
pub(super) fn dhcp_script(cx: &Ctx, raw: &raw::Root) -> Result<Option<DhcpScript>, ConfigError> {
    let timeout = match &raw.dhcp_script_timeout {
        None => Duration::from_secs(defaults::DHCP_SCRIPT_TIMEOUT),
        Some(t) if (1..=3600).contains(t.get_ref()) => Duration::from_secs(*t.get_ref()),
        Some(t) => {
            return Err(cx.err(
                t.span(),
                "dhcp_script_timeout",
                "must be 1 to 3600 (seconds)",
            ));
        }
    };
    let Some(p) = &raw.dhcp_script else {
        return Ok(None);
    };
    if !p.get_ref().starts_with('/') {
        return Err(cx.err(p.span(), "dhcp_script", "must be an absolute path"));
    }
    Ok(Some(DhcpScript {
        path: PathBuf::from(p.get_ref()),
        timeout,
        on_renewal: raw
            .dhcp_script_on_renewal
            .unwrap_or(defaults::DHCP_SCRIPT_ON_RENEWAL),
    }))
}
