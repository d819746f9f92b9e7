//! imggo-core: content hashing and metrics recording.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use imggo_core::{ContentHash, Outcome, Tracker};

fn hashing(c: &mut Criterion) {
    let data: Vec<u8> = (0..4 << 20)
        .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let mut g = c.benchmark_group("content_hash");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("slice_4MiB", |b| {
        b.iter(|| ContentHash::of(black_box(&data)))
    });
    g.bench_function("reader_4MiB", |b| {
        b.iter(|| ContentHash::from_reader(black_box(&data[..])).unwrap())
    });
    g.finish();
}

fn tracker(c: &mut Criterion) {
    let t = Tracker::new();
    c.bench_function("tracker_record", |b| {
        b.iter(|| t.record(Outcome::Succeeded, black_box(Duration::from_micros(1234))))
    });
    c.bench_function("tracker_snapshot", |b| b.iter(|| black_box(t.snapshot())));
}

criterion_group!(benches, hashing, tracker);
criterion_main!(benches);
