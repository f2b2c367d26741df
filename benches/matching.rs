//! criterion: 1:N matching of one protected probe over 1k, 10k and 100k protected templates (one thread),
//! next to its bound: a plain streaming read of the same matrix (the memory-bandwidth floor for a scan).
//! The templates are random unit vectors under a random key, not faces.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use facegate::policy::matching::Gallery;
use facegate::protect::{Rotation, TransformKey};
use facegate::vision::embed::{Embedding, EMBEDDING_DIM};
use rand::{Rng, SeedableRng};

fn random_embedding(rng: &mut impl Rng) -> Embedding {
    let raw: Vec<f32> = (0..EMBEDDING_DIM).map(|_| rng.random::<f32>() - 0.5).collect();
    Embedding::from_raw(&raw).expect("non-zero")
}

fn benches(c: &mut Criterion) {
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
    let rotation = Rotation::from_key(&TransformKey::generate());
    let probe = rotation.protect(&random_embedding(&mut rng));
    let mut group = c.benchmark_group("match_1_to_n");
    for n in [1_000u32, 10_000, 100_000] {
        let mut gallery = Gallery::new(rotation.id());
        let mut flat = Vec::with_capacity(n as usize * EMBEDDING_DIM);
        for slot in 0..n {
            let template = rotation.protect(&random_embedding(&mut rng));
            flat.extend_from_slice(template.as_slice());
            gallery.insert(slot, &template).expect("same transform");
        }
        group.throughput(Throughput::Bytes(u64::from(n) * EMBEDDING_DIM as u64 * 4));
        group.bench_with_input(BenchmarkId::new("gallery_best", n), &n, |b, _| {
            b.iter(|| gallery.best(&probe).expect("non-empty"))
        });
        group.bench_with_input(BenchmarkId::new("bound_stream_read", n), &n, |b, _| {
            b.iter(|| {
                let mut acc = [0.0f32; 8];
                for chunk in flat.chunks_exact(8) {
                    for i in 0..8 {
                        acc[i] += chunk[i];
                    }
                }
                acc.iter().sum::<f32>()
            })
        });
    }
    group.finish();
}

criterion_group!(matching, benches);
criterion_main!(matching);
