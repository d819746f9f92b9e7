//! Deterministic randomness: splitmix64 keyed by seed, stream and counter.
//!
//! Every random choice is a pure function of `(seed, stream, n)`, so a run with the same
//! seed makes the same choices for the n-th request, job or delivery, whatever the timing.

/// Streams keep independent choices apart.
#[derive(Debug, Clone, Copy)]
#[repr(u64)]
pub(crate) enum Stream {
    Ids = 1,
    Faults = 2,
    Latency = 3,
    JobFail = 4,
    WebhookLoss = 5,
    Secrets = 6,
    RaceDup = 7,
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// 64 random bits for draw `n` of `stream` under `seed`.
pub(crate) fn bits(seed: u64, stream: Stream, n: u64) -> u64 {
    splitmix(splitmix(seed ^ (stream as u64).wrapping_mul(0xD6E8_FEB8_6659_FD93)) ^ n)
}

/// A uniform draw in `[0, 1)`.
pub(crate) fn unit(seed: u64, stream: Stream, n: u64) -> f64 {
    (bits(seed, stream, n) >> 11) as f64 / (1u64 << 53) as f64
}

/// A standard normal draw (Box-Muller over two sub-draws).
pub(crate) fn normal(seed: u64, stream: Stream, n: u64) -> f64 {
    let u1 = unit(seed, stream, n.wrapping_mul(2)).max(f64::MIN_POSITIVE);
    let u2 = unit(seed, stream, n.wrapping_mul(2).wrapping_add(1));
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// A UUID-shaped (version 4 layout) id for draw `n` of the id stream.
pub(crate) fn uuid(seed: u64, kind: u64, n: u64) -> String {
    let a = bits(seed, Stream::Ids, n.wrapping_mul(8).wrapping_add(kind));
    let b = bits(
        seed ^ 0x5555,
        Stream::Ids,
        n.wrapping_mul(8).wrapping_add(kind),
    );
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0x0fff,
        0x8000 | ((b >> 48) & 0x3fff),
        b & 0xffff_ffff_ffff
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_spread() {
        assert_eq!(bits(1, Stream::Faults, 5), bits(1, Stream::Faults, 5));
        assert_ne!(bits(1, Stream::Faults, 5), bits(2, Stream::Faults, 5));
        assert_ne!(bits(1, Stream::Faults, 5), bits(1, Stream::Latency, 5));
        let mean: f64 = (0..10_000).map(|n| unit(9, Stream::Faults, n)).sum::<f64>() / 1e4;
        assert!((mean - 0.5).abs() < 0.02, "{mean}");
        let id = uuid(0, 1, 0);
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert_ne!(uuid(0, 1, 0), uuid(0, 1, 1));
        assert_ne!(uuid(0, 1, 0), uuid(0, 2, 0));
    }

    #[test]
    fn normal_has_unit_variance() {
        let xs: Vec<f64> = (0..20_000).map(|n| normal(3, Stream::Latency, n)).collect();
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / xs.len() as f64;
        assert!(mean.abs() < 0.05, "{mean}");
        assert!((var - 1.0).abs() < 0.05, "{var}");
    }
}
