//! Config parsing: any text is either a valid `Config` or an error that names the file; never a
//! panic. A valid config parses to the same thing twice (no hidden state).
#![no_main]

use std::path::Path;

use leasedns::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("fuzz.toml");
    match Config::parse(text, path) {
        Ok(cfg) => {
            let again = Config::parse(text, path).expect("a config that parsed parses again");
            assert_eq!(format!("{cfg:?}"), format!("{again:?}"));
        }
        Err(e) => assert!(e.to_string().contains("fuzz.toml"), "{e}"),
    }
});
