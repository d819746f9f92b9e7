//! imggo-core: content hashing, metrics recording and job decoding.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use imggo::batch::{Outcome, Tracker};
use imggo_core::{ContentHash, Envelope, Job};

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

/// A job answer as the emulator writes it (665 bytes): serde against the hand-written
/// fast path that `Client::get_job` tries first.
fn job_decode(c: &mut Criterion) {
    let body = r#"{"success":true,"data":{"id":"7e13bab8-8a42-4c4d-8543-6ad018164566","pattern_id":"ad8531c7-ce55-4744-9bc9-6b71afa209cc","image_url":null,"status":"succeeded","manifest":{"_emulator":{"bytes":36178,"content_hash":"xxh3-6051f3decf69554039d9a87f5f70663e","emulated":true,"format":"jpeg","height":350,"pattern_id":"ad8531c7-ce55-4744-9bc9-6b71afa209cc","pattern_version":1,"width":460}},"error":null,"latency_ms":0,"created_at":"2026-11-27T08:06:38.480Z","updated_at":"2026-11-27T08:06:38.480Z","started_at":"2026-11-27T08:06:38.480Z","completed_at":"2026-11-27T08:06:38.480Z","idempotency_key":null,"requested_by":"00000000-0000-4000-8000-000000000001","extras":null}}"#;
    let mut g = c.benchmark_group("job_decode");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("serde", |b| {
        b.iter(|| serde_json::from_str::<Envelope<Job>>(black_box(body)).unwrap())
    });
    g.bench_function("compact", |b| {
        b.iter(|| Job::from_compact_json(black_box(body)).unwrap())
    });
    g.finish();
}

criterion_group!(benches, hashing, tracker, job_decode);
criterion_main!(benches);
