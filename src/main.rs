//! The `leasedns` command: parse arguments, set up logging, hand over to the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use leasedns::config::Config;

#[derive(Parser)]
#[command(
    name = "leasedns",
    version,
    about = "DHCPv4 server with an embedded DNS server sharing one lease table",
    long_about = "DHCPv4 server with an embedded DNS server sharing one lease table: every \
address it hands out resolves by name (A and PTR) once the client has its ACK, and leaves DNS \
when the lease ends.\n\n\
`leasedns run` serves in the foreground (the systemd unit leasedns.service runs it as user \
leasedns). The config is /etc/leasedns/leasedns.toml unless --config says otherwise; \
`leasedns check-config FILE` validates one. Leases are kept in the config's lease_file \
(packaged default: /var/lib/leasedns/leases.journal) and its .snapshot, mode 0640.\n\n\
Signals: SIGHUP reloads the config without dropping leases (systemctl reload leasedns); \
SIGTERM and SIGINT stop cleanly. Under systemd (Type=notify) it reports READY=1, RELOADING=1, \
STOPPING=1 and watchdog pings. Logs go to stderr; LEASEDNS_LOG=debug logs more."
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
    /// The shared PostgreSQL lease store of `[lease_database]`: create or upgrade its tables,
    /// or move leases between it and the journal (`lease_file`).
    Db {
        #[command(subcommand)]
        action: DbCommand,
        /// The config whose [lease_database] (and lease_file) to use.
        #[arg(
            short,
            long,
            default_value = "/etc/leasedns/leasedns.toml",
            global = true
        )]
        config: PathBuf,
    },
    /// Validate a config file and exit (0 when valid).
    CheckConfig {
        /// The config file.
        file: PathBuf,
    },
    /// List the leases of the running server (over its control API, `[http] api = true`).
    Leases {
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Only leases in this state: `declined` lists the addresses set aside (a DECLINE, or
        /// an answered ping check); `leasedns release IP` frees one.
        #[arg(long, value_parser = ["bound", "declined"])]
        state: Option<String>,
        #[arg(short, long, default_value = "/etc/leasedns/leasedns.toml")]
        config: PathBuf,
    },
    /// Show the running server's version, uptime, lease counts and counters (JSON).
    Status {
        #[arg(short, long, default_value = "/etc/leasedns/leasedns.toml")]
        config: PathBuf,
    },
    /// End the lease on IP now: its name leaves DNS and the address is free (journaled). A
    /// declined address is freed the same way.
    Release {
        /// The leased address.
        ip: String,
        #[arg(short, long, default_value = "/etc/leasedns/leasedns.toml")]
        config: PathBuf,
    },
    /// Make IP a reservation: the client holding its lease (or MAC) gets it from now on,
    /// across restarts (saved beside the lease journal); NAME shows in DNS at once.
    Reserve {
        ip: String,
        /// The host name (default: the lease's).
        #[arg(long)]
        name: Option<String>,
        /// Reserve IP for this MAC (no lease needed).
        #[arg(long)]
        mac: Option<String>,
        #[arg(short, long, default_value = "/etc/leasedns/leasedns.toml")]
        config: PathBuf,
    },
    /// Remove a reservation made with `reserve` (the config's `[[host]]`s stay).
    Unreserve {
        ip: String,
        #[arg(short, long, default_value = "/etc/leasedns/leasedns.toml")]
        config: PathBuf,
    },
    /// List the reservations: the config's and those made with `reserve`.
    Reservations {
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[arg(short, long, default_value = "/etc/leasedns/leasedns.toml")]
        config: PathBuf,
    },
    /// Reload the running server's config (as SIGHUP does); a bad config is refused with
    /// where and why, and the running one stays.
    Reload {
        #[arg(short, long, default_value = "/etc/leasedns/leasedns.toml")]
        config: PathBuf,
    },
    /// Read a password from stdin (one line) and print its Argon2id hash for
    /// `[[dyndns_user]] password_hash`.
    HashPassword,
    /// Write the man pages made from these options (leasedns.1 and one per subcommand, roff)
    /// into a directory; the Debian package ships them.
    #[command(hide = true)]
    Man {
        /// The directory to write them to.
        dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum DbCommand {
    /// Create the tables on an empty database.
    Init,
    /// Upgrade the tables to this build's schema version.
    Migrate,
    /// Copy the live leases of the journal (lease_file) into the database; an address another
    /// client holds there is left alone and listed.
    Import,
    /// Write the database's live leases into the journal (lease_file), which must hold none
    /// (move it aside first): to go back to one node without a database.
    Export,
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
        Command::Leases {
            json,
            state,
            config,
        } => ctl(&config, |t| {
            let query = state.map(|s| format!("state={s}")).unwrap_or_default();
            if json {
                return t.call("GET", &leasedns::ctl::leases_path(&query));
            }
            use leasedns::clock::{Clock, SystemClock};
            Ok(leasedns::ctl::lease_table(
                &t.leases_where(&query)?,
                SystemClock.now().0,
            ))
        }),
        Command::Status { config } => ctl(&config, |t| t.call("GET", "/api/v1/status")),
        Command::Release { ip, config } => ctl(&config, |t| {
            let body = t.call("DELETE", &format!("/api/v1/leases/{ip}"))?;
            let ended: leasedns::dhcp::control::LeaseView = serde_json::from_str(&body)
                .map_err(|e| leasedns::ctl::CtlError::Answer(e.to_string()))?;
            let host = ended.hostname.unwrap_or_else(|| "-".into());
            Ok(format!("released {} ({}, {host})", ended.ip, ended.mac))
        }),
        Command::Reserve {
            ip,
            name,
            mac,
            config,
        } => ctl(&config, |t| leasedns::ctl::reserve(t, &ip, name, mac)),
        Command::Unreserve { ip, config } => ctl(&config, |t| leasedns::ctl::unreserve(t, &ip)),
        Command::Reservations { json, config } => {
            ctl(&config, |t| leasedns::ctl::reservations(t, json))
        }
        Command::Reload { config } => ctl(&config, |t| t.send("POST", "/api/v1/reload", None)),
        Command::Man { dir } => man_pages(&dir),
        Command::Db { action, config } => {
            init_logging();
            use leasedns::dbtool::Action;
            let action = match action {
                DbCommand::Init => Action::Init,
                DbCommand::Migrate => Action::Migrate,
                DbCommand::Import => Action::Import,
                DbCommand::Export => Action::Export,
            };
            match leasedns::dbtool::run(action, &config) {
                Ok(line) => {
                    println!("{line}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
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

/// Load `config`, run one API command, print its output (exit 1 on failure, 2 on a bad config).
fn ctl(
    config: &std::path::Path,
    run: impl FnOnce(&leasedns::ctl::Target) -> Result<String, leasedns::ctl::CtlError>,
) -> ExitCode {
    let cfg = match Config::load(config) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match leasedns::ctl::Target::from_config(&cfg).and_then(|t| run(&t)) {
        Ok(out) => {
            println!("{}", out.trim_end());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Write leasedns(1) and a page per subcommand into `dir`.
fn man_pages(dir: &std::path::Path) -> ExitCode {
    let written =
        std::fs::create_dir_all(dir).and_then(|()| clap_mangen::generate_to(Cli::command(), dir));
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: writing man pages to {}: {e}", dir.display());
            ExitCode::FAILURE
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
        leasedns::lease::journal::Journal::open(&cfg.start.lease_file, cfg.start.durability, now)
            .with_context(|| format!("opening {}", cfg.start.lease_file.display()))?;
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
    let given = std::env::var("LEASEDNS_LOG").ok();
    let directives = leasedns::log_directives(given.as_deref());
    let filter = EnvFilter::try_new(&directives)
        .unwrap_or_else(|_| EnvFilter::new(leasedns::log_directives(None)));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
}
