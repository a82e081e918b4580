//! `leasedns db init|migrate|import|export`: set up the `[lease_database]` a config names, and
//! move a lease set between the journal (`lease_file`) and the database. Run by an operator,
//! blocking (no async runtime).

use std::path::Path;

use anyhow::{Context, bail};

use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::lease::LeaseChange;
use crate::lease::journal::Journal;
use crate::lease::pg::{PgSettings, tools};

/// What a `db` command did, for its one line of output.
pub enum Action {
    Init,
    Migrate,
    /// Journal (`lease_file`) to database.
    Import,
    /// Database to the journal (`lease_file`, which must hold no live lease).
    Export,
}

fn settings(cfg: &Config) -> anyhow::Result<PgSettings> {
    let Some(db) = &cfg.start.lease_database else {
        bail!(
            "{}: has no [lease_database] section (url = \"postgresql://...\")",
            cfg.path.display()
        );
    };
    db.settings().map_err(anyhow::Error::msg)
}

/// Run `action` for the config at `config`; the line to print.
pub fn run(action: Action, config: &Path) -> anyhow::Result<String> {
    let cfg = Config::load(config)?;
    let s = settings(&cfg)?;
    let what = s.describe();
    let now = SystemClock.now();
    match action {
        Action::Init => {
            let v = tools::init(&s).with_context(|| format!("db init on the {what}"))?;
            Ok(format!("{what}: schema created (version {v})"))
        }
        Action::Migrate => {
            let (from, to) =
                tools::migrate(&s).with_context(|| format!("db migrate on the {what}"))?;
            Ok(format!("{what}: schema version {from} -> {to}"))
        }
        Action::Import => {
            let file = &cfg.start.lease_file;
            let (_, leases) = Journal::open(file, cfg.start.durability, now)
                .with_context(|| format!("opening {}", file.display()))?;
            let done = tools::import(&s, &leases, now)
                .with_context(|| format!("importing into the {what}"))?;
            let refused: Vec<String> = done.refused.iter().map(|ip| ip.to_string()).collect();
            let mut line = format!(
                "imported {} lease(s) from {} into the {what}",
                done.written,
                file.display()
            );
            if !refused.is_empty() {
                line += &format!(
                    "; held by another client there, not imported: {}",
                    refused.join(" ")
                );
            }
            Ok(line)
        }
        Action::Export => {
            let file = &cfg.start.lease_file;
            let leases = tools::export(&s, now).with_context(|| format!("reading the {what}"))?;
            let (mut journal, held) = Journal::open(file, cfg.start.durability, now)
                .with_context(|| format!("opening {}", file.display()))?;
            if !held.is_empty() {
                bail!(
                    "{} holds {} live lease(s) already: move it aside (and its .snapshot) first",
                    file.display(),
                    held.len()
                );
            }
            let changes: Vec<LeaseChange> = leases.into_iter().map(LeaseChange::Upsert).collect();
            journal
                .commit(&changes)
                .with_context(|| format!("writing {}", file.display()))?;
            Ok(format!(
                "exported {} lease(s) from the {what} to {}",
                changes.len(),
                file.display()
            ))
        }
    }
}
