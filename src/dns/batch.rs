//! Batched UDP I/O for the DNS listener: up to `BATCH` datagrams read by one recvmmsg and up to
//! as many answers sent by one sendmmsg, so a busy socket costs two system calls per batch
//! instead of two per query. Owns the receive buffers; knows nothing of DNS.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;

use nix::sys::socket::{
    ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg,
};
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Datagrams per system call.
pub const BATCH: usize = 32;
/// Bytes kept per datagram; a longer one is reported truncated (and dropped by the caller).
const SLOT: usize = 4096;

/// One datagram read by `Batch::recv`.
#[derive(Clone, Copy, Debug)]
pub struct Got {
    pub len: usize,
    pub from: Option<SocketAddr>,
    pub truncated: bool,
}

pub struct Batch {
    bufs: Vec<Vec<u8>>,
    got: Vec<Got>,
}

impl Default for Batch {
    fn default() -> Self {
        Batch {
            bufs: (0..BATCH).map(|_| vec![0u8; SLOT]).collect(),
            got: Vec::with_capacity(BATCH),
        }
    }
}

impl Batch {
    /// Read the datagrams waiting on `socket` (at most `BATCH`) without blocking; WouldBlock
    /// (and tokio's readiness cleared) when there are none.
    pub fn recv(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        let Batch { bufs, got } = self;
        got.clear();
        socket.try_io(Interest::READABLE, || {
            // The headers hold raw pointers (not Send): built per call, never kept across
            // an `.await`.
            let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
            let mut iovs: Vec<[IoSliceMut<'_>; 1]> =
                bufs.iter_mut().map(|b| [IoSliceMut::new(b)]).collect();
            let results = recvmmsg(
                socket.as_raw_fd(),
                &mut headers,
                iovs.iter_mut(),
                MsgFlags::MSG_DONTWAIT,
                None,
            )
            .map_err(io::Error::from)?;
            for r in results {
                got.push(Got {
                    len: r.bytes.min(SLOT),
                    from: r.address.and_then(|a| to_std(&a)),
                    truncated: r.flags.contains(MsgFlags::MSG_TRUNC) || r.bytes > SLOT,
                });
            }
            Ok(got.len())
        })
    }

    /// Datagram `i` of the last `recv`.
    pub fn datagram(&self, i: usize) -> (Got, &[u8]) {
        let got = self.got[i];
        (got, &self.bufs[i][..got.len])
    }
}

/// Send `replies` with as few system calls as the socket allows, without blocking; returns
/// how many went out (the caller sends the rest one by one).
pub fn send(socket: &UdpSocket, replies: &[(Vec<u8>, SocketAddr)]) -> usize {
    if replies.is_empty() {
        return 0;
    }
    let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(replies.len(), None);
    let slices: Vec<[IoSlice<'_>; 1]> = replies.iter().map(|(b, _)| [IoSlice::new(b)]).collect();
    let addrs: Vec<Option<SockaddrStorage>> = replies
        .iter()
        .map(|(_, a)| Some(SockaddrStorage::from(*a)))
        .collect();
    let none: &[ControlMessage<'_>] = &[];
    sendmmsg(
        socket.as_raw_fd(),
        &mut headers,
        slices.iter(),
        addrs,
        none,
        MsgFlags::MSG_DONTWAIT,
    )
    .map_or(0, Iterator::count)
}

fn to_std(a: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(SocketAddr::V4(SocketAddrV4::new(v4.ip(), v4.port())));
    }
    let v6 = a.as_sockaddr_in6()?;
    Some(SocketAddr::V6(SocketAddrV6::new(
        v6.ip(),
        v6.port(),
        v6.flowinfo(),
        v6.scope_id(),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_batch_in_and_out() {
        let server = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let client = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let to = server.local_addr().expect("addr");
        for i in 0..40u8 {
            client.send_to(&[i; 3], to).await.expect("send");
        }
        server.readable().await.expect("readable");
        let mut batch = Batch::default();
        let mut seen = Vec::new();
        while let Ok(n) = batch.recv(&server) {
            for i in 0..n {
                let (got, bytes) = batch.datagram(i);
                assert_eq!(got.from, Some(client.local_addr().expect("addr")));
                assert!(!got.truncated);
                seen.push(bytes[0]);
            }
        }
        assert_eq!(seen, (0..40).collect::<Vec<u8>>());
        let from = client.local_addr().expect("addr");
        let replies: Vec<(Vec<u8>, SocketAddr)> = (0..5u8).map(|i| (vec![i], from)).collect();
        assert_eq!(send(&server, &replies), 5);
        let mut buf = [0u8; 8];
        for i in 0..5u8 {
            let (n, _) = client.recv_from(&mut buf).await.expect("recv");
            assert_eq!(&buf[..n], &[i]);
        }
    }
}
