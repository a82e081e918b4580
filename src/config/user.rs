//! `user` and `group`: who the daemon runs as after binding (`privdrop` does the switch).
//! Resolved against the system's accounts when the config is loaded, so an unknown name is a
//! config error naming file, line and key.

use std::ops::Range;

use nix::unistd::{Group, User};
use toml::Spanned;

/// `user` and `group` as the config gives them, resolved against the system's accounts when
/// the config is loaded (an unknown name is a config error).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunAs {
    /// `user`: name and uid (None: `DEFAULT_USER` if it exists at start, else stay root).
    pub user: Option<(String, u32)>,
    /// `group`: name and gid (None: the user's primary group).
    pub group: Option<(String, u32)>,
}

/// Resolve the raw `user` and `group` keys. An error names the field, its span and why.
pub fn run_as(
    user: &Option<Spanned<String>>,
    group: &Option<Spanned<String>>,
) -> Result<RunAs, (&'static str, Range<usize>, String)> {
    let mut run_as = RunAs::default();
    if let Some(u) = user {
        let name = u.get_ref();
        match User::from_name(name) {
            Ok(Some(found)) => run_as.user = Some((name.clone(), found.uid.as_raw())),
            Ok(None) => return Err(("user", u.span(), "no such user".to_string())),
            Err(e) => return Err(("user", u.span(), e.to_string())),
        }
    }
    if let Some(g) = group {
        let name = g.get_ref();
        match Group::from_name(name) {
            Ok(Some(found)) => run_as.group = Some((name.clone(), found.gid.as_raw())),
            Ok(None) => return Err(("group", g.span(), "no such group".to_string())),
            Err(e) => return Err(("group", g.span(), e.to_string())),
        }
    }
    Ok(run_as)
}
