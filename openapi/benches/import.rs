//! How long `portcullis import openapi` takes on GitHub's REST description (about 1,200
//! operations; `npm ci --prefix openapi/specs` installs it), parsing included:
//! `cargo bench -p portcullis-openapi`. BENCHMARKS.md has the figure.

use criterion::{criterion_group, criterion_main, Criterion};
use portcullis_openapi::{import, Options};
use std::path::Path;

fn github(c: &mut Criterion) {
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("specs/node_modules/@octokit/openapi/generated/api.github.com.json");
    let src = std::fs::read_to_string(&file).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run `npm ci --prefix openapi/specs`)",
            file.display()
        )
    });
    let mut group = c.benchmark_group("import");
    group.sample_size(10);
    group.bench_function("github_rest_api", |b| {
        b.iter(|| import(&src, &Options::default()).map(|i| i.routes))
    });
    group.finish();
}

criterion_group!(benches, github);
criterion_main!(benches);
