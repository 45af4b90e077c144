//! Field value parsers on arbitrary UTF-8: `parse_size` ("10%", "0.01", "500 USDT") and `parse_exit_level`
//! ("2%", "44000.5"). Only "no panic" is checked.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sentinel::payload::{parse_exit_level, parse_size};

fuzz_target!(|text: &str| {
    let _ = parse_size(text, "USDT");
    let _ = parse_exit_level(text);
});
