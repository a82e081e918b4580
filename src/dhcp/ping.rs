//! ICMP echo for the DHCP ping check: send one echo request to an address and say whether a
//! reply came back in time. Owns its ICMP socket for the one ping; no DHCP logic, no clock
//! beyond the timeout.
//!
//! Tries an unprivileged ICMP datagram socket first (`net.ipv4.ping_group_range`), then a raw
//! ICMP socket (CAP_NET_RAW). On a raw socket every ICMP packet arrives, IP header included, so
//! replies are matched by source address, identifier and sequence number.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

const ECHO_REQUEST: u8 = 8;
const ECHO_REPLY: u8 = 0;
const PAYLOAD: &[u8; 16] = b"leasedns-pingchk";

#[derive(Debug, thiserror::Error)]
pub enum PingError {
    #[error("cannot open an ICMP socket (datagram: {dgram}; raw: {raw})")]
    Socket { dgram: io::Error, raw: io::Error },
    #[error("ICMP send to {ip} failed: {source}")]
    Send { ip: Ipv4Addr, source: io::Error },
}

/// Send one echo request to `ip`; true when a matching echo reply arrives within `timeout`.
pub async fn ping(ip: Ipv4Addr, timeout: Duration, id: u16, seq: u16) -> Result<bool, PingError> {
    let (sock, raw) = open()?;
    let packet = echo_request(id, seq);
    sock.send_to(&packet, SocketAddr::V4(SocketAddrV4::new(ip, 0)))
        .await
        .map_err(|source| PingError::Send { ip, source })?;
    let wait = async {
        let mut buf = [0u8; 1500];
        loop {
            match sock.recv_from(&mut buf).await {
                Ok((n, from)) if from.ip() == ip => {
                    let bytes = buf.get(..n).unwrap_or_default();
                    if is_reply(bytes, raw, id, seq) {
                        return true;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(%ip, "ICMP receive failed: {e}");
                    return false;
                }
            }
        }
    };
    Ok(tokio::time::timeout(timeout, wait).await.unwrap_or(false))
}

/// An ICMP socket as a tokio datagram socket, and whether it is raw.
fn open() -> Result<(UdpSocket, bool), PingError> {
    let dgram = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::ICMPV4));
    let (sock, raw) = match dgram {
        Ok(s) => (s, false),
        Err(dgram) => match Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4)) {
            Ok(s) => (s, true),
            Err(raw) => return Err(PingError::Socket { dgram, raw }),
        },
    };
    let tokio = sock
        .set_nonblocking(true)
        .and_then(|()| UdpSocket::from_std(std::net::UdpSocket::from(sock)));
    match tokio {
        Ok(s) => Ok((s, raw)),
        Err(e) => Err(PingError::Socket {
            dgram: io::Error::other("not tried"),
            raw: e,
        }),
    }
}

/// Echo request: type 8, code 0, checksum, identifier, sequence, payload.
pub fn echo_request(id: u16, seq: u16) -> Vec<u8> {
    let mut p = vec![ECHO_REQUEST, 0, 0, 0];
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(PAYLOAD);
    let sum = checksum(&p).to_be_bytes();
    p[2] = sum[0];
    p[3] = sum[1];
    p
}

/// Whether `bytes` is the echo reply to our request. On a raw socket the IP header comes
/// first and the identifier must match; a datagram socket's kernel rewrites the identifier
/// and delivers only the socket's own replies, so only the sequence is checked there.
pub fn is_reply(bytes: &[u8], raw: bool, id: u16, seq: u16) -> bool {
    let icmp = if raw {
        let ihl = usize::from(bytes.first().map_or(0, |b| b & 0x0f)) * 4;
        bytes.get(ihl..).unwrap_or_default()
    } else {
        bytes
    };
    let field = |at: usize| {
        icmp.get(at..at + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
    };
    icmp.first() == Some(&ECHO_REPLY) && field(6) == Some(seq) && (!raw || field(4) == Some(id))
}

/// The Internet checksum (RFC 1071).
fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_request_golden_bytes_and_checksum() {
        let p = echo_request(0x1234, 7);
        assert_eq!(&p[..8], &[8, 0, 0xdd, 0x66, 0x12, 0x34, 0, 7]);
        assert_eq!(&p[8..], PAYLOAD);
        // A packet with its checksum in place sums to zero.
        assert_eq!(checksum(&p), 0);
    }

    #[test]
    fn replies_are_matched_by_type_sequence_and_on_raw_sockets_identifier() {
        let mut reply = echo_request(0x1234, 7);
        reply[0] = ECHO_REPLY;
        assert!(is_reply(&reply, false, 0x9999, 7), "kernel rewrote the id");
        assert!(!is_reply(&reply, false, 0x1234, 8), "another sequence");
        let mut ip = vec![0x45u8; 1];
        ip.extend_from_slice(&[0; 19]);
        ip.extend_from_slice(&reply);
        assert!(is_reply(&ip, true, 0x1234, 7));
        assert!(!is_reply(&ip, true, 0x4321, 7), "another process's ping");
        let mut req = ip.clone();
        req[20] = ECHO_REQUEST;
        assert!(
            !is_reply(&req, true, 0x1234, 7),
            "our own request looped back"
        );
        for cut in 0..28 {
            assert!(!is_reply(&ip[..cut], true, 0x1234, 7), "cut at {cut}");
        }
    }

    #[tokio::test]
    async fn loopback_answers_and_an_unused_address_does_not() {
        // Needs an ICMP socket (root or ping_group_range); skip the assertion otherwise.
        if open().is_err() {
            eprintln!("no ICMP socket available; ping not exercised");
            return;
        }
        let t = Duration::from_millis(500);
        let up = ping(Ipv4Addr::LOCALHOST, t, 0x4c44, 1).await;
        assert!(matches!(up, Ok(true)), "{up:?}");
        // 192.0.2.0/24 is TEST-NET-1: nothing answers (sending may fail without a route).
        let down = ping(
            Ipv4Addr::new(192, 0, 2, 77),
            Duration::from_millis(200),
            0x4c44,
            2,
        )
        .await;
        assert!(!matches!(down, Ok(true)), "{down:?}");
    }
}
