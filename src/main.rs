//! The `leasedns` command: parse arguments, set up logging, hand over to the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use leasedns::config::Config;

#[derive(Parser)]
#[command(
    name = "leasedns",
    version,
    about = "DHCPv4 server with an embedded DNS server sharing one lease table"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server in the foreground.
    Run {
        /// The config file.
        #[arg(short, long, default_value = "/etc/leasedns/leasedns.toml")]
        config: PathBuf,
    },
    /// Add the leases of a dnsmasq lease file to our journal (stop leasedns first).
    ImportDnsmasqLeases {
        /// The dnsmasq lease file (e.g. /var/lib/misc/dnsmasq.leases).
        file: PathBuf,
        /// The config whose lease_file receives the leases.
        #[arg(short, long, default_value = "/etc/leasedns/leasedns.toml")]
        config: PathBuf,
    },
    /// Validate a config file and exit (0 when valid).
    CheckConfig {
        /// The config file.
        file: PathBuf,
    },
    /// Read a password from stdin (one line) and print its Argon2id hash for
    /// `[[dyndns_user]] password_hash`.
    HashPassword,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { file } => match Config::load(&file) {
            Ok(cfg) => {
                println!(
                    "{}: ok ({} subnet(s), {} reservation(s))",
                    file.display(),
                    cfg.subnets.len(),
                    cfg.reservations.len()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
        Command::HashPassword => hash_password(),
        Command::ImportDnsmasqLeases { file, config } => {
            init_logging();
            match import(&file, &config) {
                Ok(n) => {
                    println!("imported {n} lease(s) from {}", file.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Run { config } => {
            init_logging();
            let cfg = match Config::load(&config) {
                Ok(cfg) => cfg,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            match leasedns::daemon::run(cfg) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Import a dnsmasq lease file into the journal of `config`; returns how many leases were added.
fn import(file: &std::path::Path, config: &std::path::Path) -> anyhow::Result<usize> {
    use anyhow::Context;
    use leasedns::clock::{Clock, SystemClock};
    use leasedns::lease::LeaseChange;
    let cfg = Config::load(config)?;
    let now = SystemClock.now();
    let leases = leasedns::lease::journal::import_dnsmasq(file)?;
    let live: Vec<LeaseChange> = leases
        .into_iter()
        .filter(|l| l.expires > now)
        .filter(|l| cfg.subnets.iter().any(|s| s.contains(l.ip)))
        .map(LeaseChange::Upsert)
        .collect();
    let (mut journal, _) =
        leasedns::lease::journal::Journal::open(&cfg.lease_file, cfg.durability, now)
            .with_context(|| format!("opening {}", cfg.lease_file.display()))?;
    journal.commit(&live)?;
    Ok(live.len())
}

/// `leasedns hash-password`: stdin's first line (without its line ending) to a PHC string.
fn hash_password() -> ExitCode {
    let mut line = String::new();
    if let Err(e) = std::io::stdin().read_line(&mut line) {
        eprintln!("error: reading stdin: {e}");
        return ExitCode::FAILURE;
    }
    let password = line.trim_end_matches(['\n', '\r']);
    if password.is_empty() {
        eprintln!("error: empty password");
        return ExitCode::from(2);
    }
    match leasedns::http::auth::hash_password(password) {
        Ok(hash) => {
            println!("{hash}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("LEASEDNS_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
}
