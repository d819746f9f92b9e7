//! Helpers shared by the pipeline's integration tests.

use std::path::PathBuf;

use imggo_batch::{Inputs, Pipeline, ResultLine};

/// Prepares `pipeline`, runs it over `inputs` and collects every line and the report.
pub async fn run_all(
    pipeline: Pipeline,
    inputs: &[PathBuf],
) -> (Vec<ResultLine>, imggo_batch::Report) {
    pipeline.prepare().await.unwrap();
    let mut run = pipeline.run(Inputs::new(inputs.iter().map(|p| p.display().to_string())));
    let mut lines = Vec::new();
    while let Some(l) = run.next_line().await {
        lines.push(l);
    }
    (lines, run.report().await)
}
