//! Config loading takes any text without panicking; every rejection names a key.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = billbox_config::from_toml_str(text) {
        assert!(!e.problems().is_empty());
        for p in e.problems() {
            assert!(!p.key.is_empty());
        }
    }
});
