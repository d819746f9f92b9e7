//! Property tests of webhook signature verification: any header, body and secret give a
//! verdict, never a panic; a signature verifies its own body and no other.

use imggo_http::{sign, verify_signature};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_header_gets_a_verdict(
        secret in prop::collection::vec(any::<u8>(), 0..64),
        body in prop::collection::vec(any::<u8>(), 0..256),
        header in any::<String>(),
    ) {
        let _ = verify_signature(&secret, &body, &header);
    }

    #[test]
    fn a_signature_verifies_its_body_and_no_other(
        secret in prop::collection::vec(any::<u8>(), 1..64),
        body in prop::collection::vec(any::<u8>(), 1..256),
        flip in any::<prop::sample::Index>(),
    ) {
        let sig = sign(&secret, &body);
        prop_assert!(verify_signature(&secret, &body, &sig));
        // Upper-case hex and surrounding blanks are accepted too.
        let loose = format!("  {}  ", sig.to_uppercase().replace("SHA256=", "sha256="));
        prop_assert!(verify_signature(&secret, &body, &loose));
        let mut other = body.clone();
        let i = flip.index(other.len());
        other[i] ^= 0x01;
        prop_assert!(!verify_signature(&secret, &other, &sig));
    }
}
