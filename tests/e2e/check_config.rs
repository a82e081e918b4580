//! `leasedns check-config`: every shipped config passes; a broken one fails with a message naming
//! the file, the line and the field. Needs no namespaces.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Result, bail, ensure};

use crate::proc::{Output, run};
use crate::server::leasedns_bin;

fn check_config(file: &Path) -> Result<Output> {
    run(
        Command::new(leasedns_bin()).arg("check-config").arg(file),
        Duration::from_secs(10),
    )
}

/// A small valid config; `edit` may replace line `n` (1-based) or insert before it.
const BASE: &[&str] = &[
    "domain = \"lan\"",                   // 1
    "interfaces = [\"eth0\"]",            // 2
    "lease_file = (set by write_config)", // 3
    "",                                   // 4
    "[dns]",                              // 5
    "listen = [\"10.0.0.1:53\"]",         // 6
    "",                                   // 7
    "[[subnet]]",                         // 8
    "network = \"10.0.0.0/24\"",          // 9
    "pool_start = \"10.0.0.100\"",        // 10
    "pool_end = \"10.0.0.199\"",          // 11
    "router = \"10.0.0.1\"",              // 12
    "dns_servers = [\"10.0.0.1\"]",       // 13
    "lease_time = 3600",                  // 14
];

/// Writes `lines` to `dir/name`, with line 3 pointing the lease file into `dir`.
fn write_config(dir: &Path, name: &str, lines: &[&str]) -> Result<PathBuf> {
    let path = dir.join(name);
    let lease_line = format!("lease_file = \"{}\"", dir.join("leases.journal").display());
    let mut lines: Vec<&str> = lines.to_vec();
    lines[2] = &lease_line;
    std::fs::write(&path, lines.join("\n") + "\n")?;
    Ok(path)
}

/// True when `number` appears in `text` as a whole number (not inside a longer one).
fn has_number(text: &str, number: usize) -> bool {
    text.split(|c: char| !c.is_ascii_digit())
        .any(|w| w == number.to_string())
}

/// Runs check-config on `lines` and requires a failure naming the file, `field` (the dotted path,
/// and the value and reason where given) and `line` (where given).
fn expect_rejected(
    dir: &Path,
    name: &str,
    lines: &[&str],
    line: Option<usize>,
    field: &str,
) -> Result<()> {
    let path = write_config(dir, name, lines)?;
    let out = check_config(&path)?;
    let message = out.all();
    ensure!(!out.status.success(), "{name} was accepted: {message}");
    ensure!(
        message.contains(name),
        "{name}: message does not name the file: {message}"
    );
    ensure!(
        message.contains(field),
        "{name}: message does not name field {field}: {message}"
    );
    // The path may contain digits; look for the line number in the rest.
    let rest = message
        .replace(&path.display().to_string(), "")
        .replace(name, "");
    if let Some(line) = line {
        ensure!(
            has_number(&rest, line),
            "{name}: message does not name line {line}: {message}"
        );
    }
    Ok(())
}

#[test]
fn check_config_accepts_every_shipped_config() -> Result<()> {
    // A missing file must fail, so exit 0 below means "valid", not "did nothing".
    let dir = tempfile::tempdir()?;
    let missing = check_config(&dir.path().join("missing.toml"))?;
    ensure!(
        !missing.status.success(),
        "check-config accepted a missing file: {}",
        missing.all()
    );

    let conf = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf");
    let mut checked = 0;
    for entry in std::fs::read_dir(&conf)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "toml") {
            let out = check_config(&path)?;
            ensure!(
                out.status.success(),
                "{} rejected: {}",
                path.display(),
                out.all()
            );
            checked += 1;
        }
    }
    if checked == 0 {
        bail!("no .toml files in {}", conf.display());
    }
    Ok(())
}

#[test]
fn check_config_rejects_unknown_key_and_bad_address_naming_line_and_field() -> Result<()> {
    let dir = tempfile::tempdir()?;
    // The base must pass, so each failure below is due to its one edit.
    let base = write_config(dir.path(), "base.toml", BASE)?;
    let out = check_config(&base)?;
    ensure!(
        out.status.success(),
        "the base config was rejected: {}",
        out.all()
    );

    let mut unknown = BASE.to_vec();
    unknown.insert(11, "colour = \"blue\""); // becomes line 12, inside [[subnet]]
    expect_rejected(
        dir.path(),
        "unknown-key.toml",
        &unknown,
        Some(12),
        "subnet[0].colour = \"blue\": unknown field",
    )?;

    let mut bad_addr = BASE.to_vec();
    bad_addr[11] = "router = \"10.0.0.300\""; // line 12
    expect_rejected(
        dir.path(),
        "bad-address.toml",
        &bad_addr,
        Some(12),
        "subnet[0].router = \"10.0.0.300\": invalid IPv4 address",
    )?;

    let mut bad_pool = BASE.to_vec();
    bad_pool[9] = "pool_start = \"10.9.0.100\""; // well-formed, but outside the network
    expect_rejected(
        dir.path(),
        "pool-outside.toml",
        &bad_pool,
        Some(10),
        "subnet[0].pool_start = \"10.9.0.100\": is not a host address",
    )?;

    let mut missing = BASE.to_vec();
    missing[10] = ""; // no pool_end
    expect_rejected(
        dir.path(),
        "missing.toml",
        &missing,
        Some(8),
        "subnet[0].pool_end: is required",
    )?;

    let mut single = BASE.to_vec();
    single[6] = "[dns.record]\nname = \"nas\"\ntype = \"A\"\nvalue = \"10.0.0.5\"";
    expect_rejected(
        dir.path(),
        "single-brackets.toml",
        &single,
        Some(7),
        "dns.record: invalid type: map, expected a sequence; a list of tables is written \
         [[dns.record]]",
    )
}

#[cfg(test)]
mod tests {
    use super::has_number;

    #[test]
    fn has_number_matches_whole_numbers_only() {
        assert!(has_number("bad.toml:12:5: unknown field", 12));
        assert!(has_number("line 12, column 1", 12));
        assert!(!has_number("10.0.0.120", 12));
        assert!(!has_number("3600", 60));
    }
}
