//! Headless Chromium for the status page tests, driven over the W3C WebDriver protocol by
//! Debian's chromedriver (packages `chromium`, `chromium-driver`). Both run inside a namespace
//! of the test's LAN (a browser on the LAN); the test talks to chromedriver's loopback port
//! from a thread that entered that namespace (setns affects the calling thread only). The LAN
//! guard ends every process left in its namespaces; `Browser`'s Drop closes the session first.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::netns::Host;
use crate::proc::Daemon;

const PORT: u16 = 9515;
/// The WebDriver key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Browser {
    ns: String,
    session: String,
    _driver: Daemon,
}

/// One HTTP request to chromedriver from inside `ns`: the decoded JSON `value`.
fn call(ns: &str, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
    let ns = ns.to_string();
    let body = body.map(Value::to_string).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{PORT}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let reply = std::thread::spawn(move || -> Result<String> {
        let netns = std::fs::File::open(format!("/run/netns/{ns}"))?;
        nix::sched::setns(netns, nix::sched::CloneFlags::CLONE_NEWNET)?;
        let mut stream = TcpStream::connect(("127.0.0.1", PORT))?;
        stream.set_read_timeout(Some(Duration::from_secs(120)))?;
        stream.write_all(req.as_bytes())?;
        read_reply(&mut stream)
    })
    .join()
    .map_err(|_| anyhow::anyhow!("WebDriver thread panicked"))??;
    let (head, body) = reply.split_once("\r\n\r\n").context("no HTTP header")?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)?
    } else {
        body.to_string()
    };
    let v: Value = serde_json::from_str(&body).with_context(|| format!("{path}: {body}"))?;
    if !head.starts_with("HTTP/1.1 200") {
        bail!("WebDriver {method} {path}: {}", v["value"]);
    }
    Ok(v["value"].clone())
}

/// One HTTP reply: chromedriver may keep the connection open despite `Connection: close`, so
/// the body ends at its Content-Length (or at the end of the stream when there is none).
fn read_reply(stream: &mut TcpStream) -> Result<String> {
    let mut reply = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        reply.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&reply);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse::<usize>().ok())?
            });
            if length.is_some_and(|len| body.len() >= len) {
                break;
            }
        }
    }
    Ok(String::from_utf8_lossy(&reply).into_owned())
}

fn dechunk(mut body: &str) -> Result<String> {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n").context("chunk size")?;
        let size = usize::from_str_radix(size.trim(), 16)?;
        if size == 0 {
            return Ok(out);
        }
        out.push_str(rest.get(..size).context("short chunk")?);
        body = rest.get(size + 2..).context("chunk end")?;
    }
}

impl Browser {
    /// chromedriver in `host`'s namespace and a headless Chromium session with its profile in
    /// `dir`, a window of `width` x `height`, that reaches `server` by address and nothing else.
    pub fn start(host: &Host, dir: &Path, server: Ipv4Addr, size: (u32, u32)) -> Result<Browser> {
        let (width, height) = size;
        let mut driver = Daemon::spawn(
            "chromedriver",
            host.exec("chromedriver").arg(format!("--port={PORT}")),
            &dir.join("chromedriver.log"),
        )?;
        driver.wait_for_log("started successfully", Duration::from_secs(60))?;
        let profile = dir.join("chromium-profile");
        let args = [
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-default-apps".into(),
            // The page is reached by address: no name lookups (Chromium's own background ones
            // would otherwise go to the LAN's DNS server).
            format!("--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE {server}"),
            format!("--user-data-dir={}", profile.display()),
            format!("--window-size={width},{height}"),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args},
        }}});
        let created = call(&host.ns, "POST", "/session", Some(&caps))
            .with_context(|| format!("chromedriver log:\n{}", driver.log()))?;
        let session = created["sessionId"]
            .as_str()
            .context("no session id")?
            .to_string();
        Ok(Browser {
            ns: host.ns.clone(),
            session,
            _driver: driver,
        })
    }

    fn at(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
        call(
            &self.ns,
            method,
            &format!("/session/{}{path}", self.session),
            body,
        )
    }

    pub fn open(&self, url: &str) -> Result<()> {
        self.at("POST", "/url", Some(&json!({ "url": url })))
            .map(drop)
    }

    /// Run `script` (a function body; `arguments` are `args`) in the page: its return value.
    pub fn eval(&self, script: &str, args: Value) -> Result<Value> {
        let body = json!({ "script": script, "args": args });
        self.at("POST", "/execute/sync", Some(&body))
    }

    fn element(&self, css: &str) -> Result<String> {
        let found = self.at(
            "POST",
            "/element",
            Some(&json!({"using": "css selector", "value": css})),
        )?;
        Ok(found[ELEMENT]
            .as_str()
            .with_context(|| format!("{css}: {found}"))?
            .to_string())
    }

    /// A real click (WebDriver moves the pointer and presses it) on the first match of `css`.
    pub fn click(&self, css: &str) -> Result<()> {
        let id = self.element(css)?;
        self.at("POST", &format!("/element/{id}/click"), Some(&json!({})))
            .map(drop)
    }

    /// Type `text` into the first match of `css`.
    pub fn type_into(&self, css: &str, text: &str) -> Result<()> {
        let id = self.element(css)?;
        self.at(
            "POST",
            &format!("/element/{id}/value"),
            Some(&json!({ "text": text })),
        )
        .map(drop)
    }

    pub fn resize(&self, width: u32, height: u32) -> Result<()> {
        let rect = json!({ "width": width, "height": height });
        self.at("POST", "/window/rect", Some(&rect)).map(drop)
    }

    /// A PNG of the viewport, written to `path`.
    pub fn screenshot(&self, path: &Path) -> Result<()> {
        let b64 = self.at("GET", "/screenshot", None)?;
        let png = data_encoding::BASE64
            .decode(b64.as_str().context("screenshot")?.as_bytes())
            .context("screenshot base64")?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, png).with_context(|| path.display().to_string())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.at("DELETE", "", None);
    }
}
