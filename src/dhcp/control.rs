//! Commands from the control API to the DHCP thread. The DHCP thread owns the engine and its
//! lease table (one writer): the API never reads them, it sends a `Command` carrying a oneshot
//! sender and wakes the thread (its eventfd), which answers between batches. No sockets here
//! and no clock; `LeaseView` is the JSON shape of a lease.

use std::net::Ipv4Addr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::config::Config;
use crate::dhcp::reserve::{self, ReservationView, ReserveError};
use crate::lease::{Lease, LeaseState};
use crate::net::Wake;

/// A lease as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseView {
    pub ip: Ipv4Addr,
    /// `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
    /// Hex bytes of option 61 (or the hardware type and MAC when the client sent none).
    pub client_id: String,
    pub hostname: Option<String>,
    /// Unix seconds.
    pub expires: u64,
    /// "bound" or "declined".
    pub state: String,
    /// The subnet holding `ip` (`10.0.0.0/24`), if any does.
    pub subnet: Option<String>,
}

impl LeaseView {
    pub fn new(lease: &Lease, cfg: &Config) -> LeaseView {
        let state = match lease.state {
            LeaseState::Bound => "bound",
            LeaseState::Declined => "declined",
            LeaseState::Offered => "offered",
        };
        LeaseView {
            ip: lease.ip,
            mac: lease.hwaddr.to_string(),
            client_id: lease.client.to_string(),
            hostname: lease.hostname.as_deref().map(str::to_string),
            expires: lease.expires.0,
            state: state.into(),
            subnet: cfg
                .subnets
                .iter()
                .find(|s| s.contains(lease.ip))
                .map(|s| format!("{}/{}", s.network, s.prefix_len)),
        }
    }
}

/// Bound and declined leases, summed over the subnets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseCounts {
    pub bound: u64,
    pub declined: u64,
}

/// Why a command got no answer.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ControlError {
    #[error("the DHCP service is not running")]
    Stopped,
    #[error("the lease journal could not be written; nothing changed")]
    Journal,
}

/// What the DHCP thread is asked to do.
pub enum Command {
    /// Every bound or declined lease.
    Leases(oneshot::Sender<Vec<LeaseView>>),
    Counts(oneshot::Sender<LeaseCounts>),
    /// End the lease on `ip` now, durably (journaled before the answer), its name gone.
    End {
        ip: Ipv4Addr,
        reply: oneshot::Sender<Result<Option<LeaseView>, ControlError>>,
    },
    /// Every reservation (the config's and the saved ones).
    Reservations(oneshot::Sender<Vec<ReservationView>>),
    /// Save a reservation (its file written before the answer); its name shows in DNS at once.
    Reserve {
        req: reserve::Request,
        reply: oneshot::Sender<Result<ReservationView, ReserveError>>,
    },
    /// Remove a saved reservation.
    Unreserve {
        ip: Ipv4Addr,
        reply: oneshot::Sender<Result<ReservationView, ReserveError>>,
    },
}

/// The API's side: send a command, wake the DHCP thread, await its answer.
#[derive(Clone)]
pub struct Control {
    tx: mpsc::UnboundedSender<Command>,
    wake: Arc<Wake>,
}

impl Control {
    /// A handle and the receiver the DHCP thread polls (with `wake` its eventfd).
    pub fn new(wake: Arc<Wake>) -> (Control, mpsc::UnboundedReceiver<Command>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Control { tx, wake }, rx)
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Option<T> {
        let (reply, answer) = oneshot::channel();
        self.tx.send(make(reply)).ok()?;
        self.wake.wake();
        answer.await.ok()
    }

    pub async fn leases(&self) -> Result<Vec<LeaseView>, ControlError> {
        self.ask(Command::Leases).await.ok_or(ControlError::Stopped)
    }

    pub async fn counts(&self) -> Result<LeaseCounts, ControlError> {
        self.ask(Command::Counts).await.ok_or(ControlError::Stopped)
    }

    /// The ended lease, or None when `ip` had none.
    pub async fn end(&self, ip: Ipv4Addr) -> Result<Option<LeaseView>, ControlError> {
        self.ask(|reply| Command::End { ip, reply })
            .await
            .ok_or(ControlError::Stopped)?
    }

    pub async fn reservations(&self) -> Result<Vec<ReservationView>, ControlError> {
        self.ask(Command::Reservations)
            .await
            .ok_or(ControlError::Stopped)
    }

    pub async fn reserve(&self, req: reserve::Request) -> Result<ReservationView, ReserveError> {
        self.ask(|reply| Command::Reserve { req, reply })
            .await
            .ok_or(ReserveError::Stopped)?
    }

    pub async fn unreserve(&self, ip: Ipv4Addr) -> Result<ReservationView, ReserveError> {
        self.ask(|reply| Command::Unreserve { ip, reply })
            .await
            .ok_or(ReserveError::Stopped)?
    }
}
