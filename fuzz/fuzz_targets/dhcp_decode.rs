//! DHCP decode: any datagram either decodes to a `Request` or is rejected with an error; never
//! a panic. A decoded request's fields stay inside what the packet could carry.
#![no_main]

use leasedns::dhcp::wire;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = wire::decode(data) {
        // Every client identifier and host name is a slice of the datagram's options.
        assert!(req.client_id.as_ref().is_none_or(|c| c.len() <= data.len()));
        assert!(req.hostname.as_ref().is_none_or(|h| h.len() <= data.len()));
        assert!(req.params.len() <= data.len());
    }
});
