//! Image bytes: sniff, probe and the whole optimiser give a result or a typed error.
#![no_main]
use imggo_optimize::{probe, sniff, Optimizer, Options};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = sniff(data);
    let _ = probe(data);
    let _ = Optimizer::new(Options::default()).optimize(data);
});
