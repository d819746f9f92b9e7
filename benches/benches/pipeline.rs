//! The batch pipeline against the emulator (zero processing latency, optimisation off):
//! a 60-image batch at several concurrency levels — `imggo tune`'s sweep as a bench — so
//! the client's own cost per image shows.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use imggo::emulator::{Config, Emulator};
use imggo::http::{Client, PollPolicy};
use imggo::{Concurrency, Inputs, Pipeline, WaitMode};

const IMAGES: usize = 60;

fn pipeline(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let files = imggo_testkit::corpus_variants(dir.path(), IMAGES, 0);
    let handle = rt
        .block_on(Emulator::start(Config::default().api_key("bench")))
        .expect("emulator");
    let client = Client::builder()
        .base_url(handle.base_url())
        .api_key("bench")
        .build()
        .expect("client");
    let mut g = c.benchmark_group("pipeline_batch");
    g.throughput(Throughput::Elements(IMAGES as u64));
    g.sample_size(10);
    for level in [1usize, 10, 50] {
        g.bench_with_input(
            BenchmarkId::new("concurrency", level),
            &level,
            |b, &level| {
                b.iter(|| {
                    // A fresh pattern per batch: every ingest is a new job, nothing is replayed.
                    let pattern = handle.create_pattern("bench", None);
                    rt.block_on(async {
                        let p = Pipeline::builder()
                            .client(client.clone())
                            .pattern(pattern.id)
                            .pattern_version(pattern.version)
                            .optimize(None)
                            .concurrency(Concurrency::Fixed(level))
                            .wait(WaitMode::Poll(PollPolicy {
                                first: Duration::from_millis(1),
                                ..PollPolicy::default()
                            }))
                            .build()
                            .expect("pipeline");
                        let mut run =
                            p.run(Inputs::new(files.iter().map(|f| f.display().to_string())));
                        while run.next_line().await.is_some() {}
                        assert_eq!(run.report().await.snapshot.succeeded, IMAGES as u64);
                    })
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
