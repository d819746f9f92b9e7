//! The hand-written job decoder: never a panic, and a job it reads equals serde's.
#![no_main]
use imggo_core::{Envelope, Job};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(fast) = Job::from_compact_json(text) {
        let slow = serde_json::from_str::<Envelope<Job>>(text)
            .map(|e| e.data)
            .or_else(|_| serde_json::from_str::<Job>(text))
            .ok();
        assert_eq!(Some(fast), slow, "{text}");
    }
});
