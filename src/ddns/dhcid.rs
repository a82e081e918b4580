//! RFC 4701 DHCID records: a client's identity in DNS, as SHA-256 over its identifier and the
//! FQDN in wire format. Pure functions; no I/O, no clock.

use crate::lease::{ClientId, Lease};

/// The DHCID resource record type.
pub const RTYPE: u16 = 49;
/// Identifier types (RFC 4701 section 3.3).
pub const ID_HWADDR: u16 = 0x0000;
pub const ID_CLIENT_ID: u16 = 0x0001;
pub const ID_DUID: u16 = 0x0002;
/// Digest type 1: SHA-256.
const DIGEST_SHA256: u8 = 1;

/// DHCID RDATA: identifier type (2 octets), digest type (1), SHA-256(identifier || FQDN wire).
pub fn rdata(id_type: u16, identifier: &[u8], fqdn: &str) -> Vec<u8> {
    let mut input = identifier.to_vec();
    input.extend_from_slice(&wire_name(fqdn));
    let digest = ring::digest::digest(&ring::digest::SHA256, &input);
    let mut out = Vec::with_capacity(3 + digest.as_ref().len());
    out.extend_from_slice(&id_type.to_be_bytes());
    out.push(DIGEST_SHA256);
    out.extend_from_slice(digest.as_ref());
    out
}

/// The DHCID of a lease's client for `fqdn`. A client that sent option 61 is identified by it
/// (type 1); one that did not by htype and chaddr (type 0). The lease keeps only the bytes, so
/// a client whose option 61 equals htype+chaddr is taken as type 0.
pub fn for_lease(lease: &Lease, fqdn: &str) -> Vec<u8> {
    if lease.client == ClientId::from_hw(&lease.hwaddr) {
        rdata(ID_HWADDR, lease.client.as_bytes(), fqdn)
    } else {
        rdata(ID_CLIENT_ID, lease.client.as_bytes(), fqdn)
    }
}

/// A name in canonical (lowercase, uncompressed) DNS wire format. `fqdn` may end in '.'.
pub fn wire_name(fqdn: &str) -> Vec<u8> {
    let fqdn = fqdn.strip_suffix('.').unwrap_or(fqdn);
    let mut out = Vec::with_capacity(fqdn.len() + 2);
    for label in fqdn.split('.').filter(|l| !l.is_empty()) {
        let bytes = &label.as_bytes()[..label.len().min(63)];
        out.push(bytes.len() as u8);
        out.extend(bytes.iter().map(u8::to_ascii_lowercase));
    }
    out.push(0);
    out
}

/// The presentation format of DHCID RDATA (base64).
pub fn to_base64(rdata: &[u8]) -> String {
    data_encoding::BASE64.encode(rdata)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::UnixTime;
    use crate::lease::{HwAddr, LeaseState};

    #[test]
    fn rfc4701_example_1_duid() {
        let duid = [0, 1, 0, 6, 0x41, 0x2d, 0xf1, 0x66, 1, 2, 3, 4, 5, 6];
        assert_eq!(
            to_base64(&rdata(ID_DUID, &duid, "chi6.example.com.")),
            "AAIBY2/AuCccgoJbsaxcQc9TUapptP69lOjxfNuVAA2kjEA="
        );
    }

    #[test]
    fn rfc4701_example_2_client_id() {
        let client_id = [1, 7, 8, 9, 0x0a, 0x0b, 0x0c];
        let got = rdata(ID_CLIENT_ID, &client_id, "chi.example.com");
        assert_eq!(
            to_base64(&got),
            "AAEBOSD+XR3Os/0LozeXVqcNc7FwCfQdWL3b/NaiUDlW2No="
        );
        // Byte for byte: type 0x0001, digest type 1, then the 32-byte digest.
        assert_eq!(&got[..5], &[0x00, 0x01, 0x01, 0x39, 0x20]);
        assert_eq!(got.len(), 35);
    }

    #[test]
    fn rfc4701_example_3_htype_and_chaddr() {
        let lease = Lease {
            ip: "192.0.2.3".parse().expect("ip"),
            client: ClientId::from_hw(&HwAddr::ethernet([1, 2, 3, 4, 5, 6])),
            hwaddr: HwAddr::ethernet([1, 2, 3, 4, 5, 6]),
            hostname: Some("client".into()),
            expires: UnixTime(0),
            state: LeaseState::Bound,
        };
        let got = for_lease(&lease, "client.example.com");
        assert_eq!(
            to_base64(&got),
            "AAABxLmlskllE0MVjd57zHcWmEH3pCQ6VytcKD//7es/deY="
        );
    }

    #[test]
    fn option_61_client_is_identifier_type_1_and_case_does_not_matter() {
        let lease = Lease {
            ip: "192.0.2.2".parse().expect("ip"),
            client: ClientId::new(&[1, 7, 8, 9, 0x0a, 0x0b, 0x0c]),
            // A client id that is not htype+chaddr (here: another MAC than the one it uses).
            hwaddr: HwAddr::ethernet([2, 0, 0, 0, 0, 9]),
            hostname: Some("chi".into()),
            expires: UnixTime(0),
            state: LeaseState::Bound,
        };
        assert_eq!(
            to_base64(&for_lease(&lease, "CHI.Example.COM.")),
            "AAEBOSD+XR3Os/0LozeXVqcNc7FwCfQdWL3b/NaiUDlW2No="
        );
    }

    #[test]
    fn wire_names() {
        assert_eq!(wire_name("a.bc"), b"\x01a\x02bc\x00".to_vec());
        assert_eq!(wire_name("A.BC."), b"\x01a\x02bc\x00".to_vec());
        assert_eq!(wire_name(""), vec![0]);
        assert_eq!(wire_name(&"x".repeat(70)).len(), 1 + 63 + 1);
    }
}
