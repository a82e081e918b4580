//! A throwaway PostgreSQL server for tests: `initdb` into a temporary directory, `postgres`
//! on a Unix socket there and a free loopback port, run as the `postgres` user when the tests
//! run as root (the server refuses root). Stopped and removed on drop, even when a test fails.
//! Never touches the host's own cluster. `start_tls` runs it with TLS only (`hostssl`), with a
//! certificate for 127.0.0.1 from a throwaway CA (`tests/make-certs.sh`, the `openssl` command).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::PgSettings;

pub struct TestDb {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub port: u16,
    /// With `start_tls`: the CA that signed the server's certificate.
    pub ca: Option<PathBuf>,
}

/// The directory of `initdb` and `postgres` (Debian: /usr/lib/postgresql/<major>/bin).
pub fn bin_dir() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("postgres").exists())
        .collect();
    dirs.sort();
    dirs.pop()
}

fn as_user(cmd: &mut Command) {
    use std::os::unix::process::CommandExt as _;
    if nix::unistd::geteuid().is_root() {
        let user = nix::unistd::User::from_name("postgres")
            .ok()
            .flatten()
            .expect("a postgres user to run the test server as");
        cmd.uid(user.uid.as_raw()).gid(user.gid.as_raw());
    }
}

fn chown_to_postgres(path: &Path) {
    if nix::unistd::geteuid().is_root() {
        let user = nix::unistd::User::from_name("postgres").unwrap().unwrap();
        nix::unistd::chown(path, Some(user.uid), Some(user.gid)).unwrap();
    }
}

fn spawn_server(dir: &Path, port: u16, tls: bool) -> Child {
    let bin = bin_dir().expect("postgres installed");
    let mut pg = Command::new(bin.join("postgres"));
    pg.arg("-D")
        .arg(dir.join("data"))
        .arg("-k")
        .arg(dir)
        .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"])
        .args(["-c", "fsync=off"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if tls {
        pg.args(["-c", "ssl=on", "-c"])
            .arg(format!(
                "ssl_cert_file={}",
                dir.join("server.pem").display()
            ))
            .arg("-c")
            .arg(format!("ssl_key_file={}", dir.join("server.key").display()));
    }
    as_user(&mut pg);
    pg.spawn().unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A CA (`ca.pem`) and a server certificate for 127.0.0.1 it signed (`server.pem`, key
/// `server.key` readable by the server only): `tests/make-certs.sh`, which the end-to-end
/// tests use too.
pub fn make_certificates(dir: &Path) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/make-certs.sh");
    let out = Command::new("sh")
        .arg(script)
        .arg("127.0.0.1")
        .current_dir(dir)
        .output()
        .expect("sh");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "tests/make-certs.sh: {err}");
    chown_to_postgres(&dir.join("server.key"));
}

impl TestDb {
    /// Start one, or `None` when PostgreSQL is not installed (the caller says so and skips).
    pub fn start() -> Option<TestDb> {
        Self::start_with(false)
    }

    /// One that takes TLS connections only (the CA in `ca`).
    pub fn start_tls() -> Option<TestDb> {
        Self::start_with(true)
    }

    fn start_with(tls: bool) -> Option<TestDb> {
        let bin = bin_dir()?;
        let dir = tempfile::tempdir().unwrap();
        chown_to_postgres(dir.path());
        let data = dir.path().join("data");
        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .args(["-A", "trust", "-U", "leasedns", "--no-sync", "-D"])
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        as_user(&mut initdb);
        assert!(initdb.status().unwrap().success(), "initdb failed");
        if tls {
            make_certificates(dir.path());
            // TLS only, on loopback (the Unix socket stays for nothing: tests use TCP).
            let hba = "local all all trust\nhostssl all all 127.0.0.1/32 trust\n";
            std::fs::write(data.join("pg_hba.conf"), hba).unwrap();
        }
        let port = free_port();
        let db = TestDb {
            child: Some(spawn_server(dir.path(), port, tls)),
            ca: tls.then(|| dir.path().join("ca.pem")),
            dir,
            port,
        };
        db.wait_ready();
        Some(db)
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if self.settings().connect().is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the test PostgreSQL did not start");
    }

    pub fn url(&self) -> String {
        format!("postgresql://leasedns@127.0.0.1:{}/postgres", self.port)
    }

    pub fn settings(&self) -> PgSettings {
        PgSettings {
            url: self.url(),
            password: None,
            connect_timeout: Duration::from_secs(2),
            statement_timeout: Duration::from_secs(10),
            tls_ca: self.ca.as_deref().map(|ca| super::tls_roots(ca).unwrap()),
        }
    }

    /// Stop the server (fast shutdown) and wait for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
            let _ = child.wait();
        }
    }

    /// Start it again on the same data and port.
    pub fn restart(&mut self) {
        self.stop();
        self.child = Some(spawn_server(self.dir.path(), self.port, self.ca.is_some()));
        self.wait_ready();
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        self.stop();
    }
}
