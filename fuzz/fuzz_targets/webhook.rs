//! A webhook delivery: signature check and event parsing of any bytes.
#![no_main]
use imggo_core::WebhookEvent;
use imggo_http::verify_signature;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (header, body) = data.split_at(data.len().min(80));
    let _ = verify_signature(
        b"whsec_fuzz_secret_0123",
        body,
        &String::from_utf8_lossy(header),
    );
    if let Ok(event) = serde_json::from_slice::<WebhookEvent>(body) {
        let _ = event.sent_at();
    }
});
