//! DNS sockets (UDP and TCP per listen address) and the hickory catalog.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::clock::Clock;
use crate::config::Config;
use crate::dns::names::SharedNames;

pub struct DnsServer {}

impl DnsServer {
    /// Bind every listen address (UDP and TCP) and build the catalog. Logs one line per
    /// listener: "listening for DNS on udp 127.0.0.1:5353".
    pub async fn bind(
        _cfg: &Config,
        _names: SharedNames,
        _clock: Arc<dyn Clock>,
    ) -> std::io::Result<DnsServer> {
        todo!()
    }
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        todo!()
    }
    /// Serve until `shutdown` completes.
    pub async fn run(self, _shutdown: crate::Shutdown) -> std::io::Result<()> {
        todo!()
    }
}
