//! Property tests of the image entry points on hostile bytes: sniffing, probing and the
//! whole optimiser give a result or a typed error for any bytes, and for real images cut
//! short or with bytes flipped, never a panic.

use imggo_optimize::{probe, sniff, Optimizer, Options};
use proptest::prelude::*;

fn corpus() -> Vec<Vec<u8>> {
    imggo_testkit::corpus_files()
        .into_iter()
        .filter_map(|p| std::fs::read(p).ok())
        .filter(|b| b.len() < 300_000)
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_bytes_are_sniffed_and_probed_without_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..2048),
    ) {
        let _ = sniff(&bytes);
        let _ = probe(&bytes);
    }
}

proptest! {
    // Each case decodes a real image: fewer cases, still a few seconds.
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn damaged_real_images_fail_cleanly(
        pick in any::<prop::sample::Index>(),
        cut in 0.0f64..1.0,
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
    ) {
        thread_local! {
            static CORPUS: Vec<Vec<u8>> = corpus();
        }
        let mut bytes = CORPUS.with(|c| c[pick.index(c.len())].clone());
        bytes.truncate(((bytes.len() as f64) * cut) as usize + 16);
        for (at, value) in flips {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        let _ = probe(&bytes);
        let _ = Optimizer::new(Options::default()).optimize(&bytes);
    }
}
