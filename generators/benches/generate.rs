//! Generator throughput: biographies rendered (tokenized: rendering emits token ids directly) per second on one
//! core, and whole datasets written to shards (render + hash + write + ground-truth table) on all cores.
//! `cargo bench -p physlab-generators --bench generate`

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use physlab_generators::bios::{BioS, BioSConfig};
use physlab_generators::corpus::{write_corpus, Corpus, Exposure, StreamSpec, StreamSummary};
use physlab_generators::Tokenizer;

/// The same corpus without its ground-truth table: only the biographies' shards are written.
struct ShardsOnly<'a>(&'a BioS);

impl Corpus for ShardsOnly<'_> {
    fn kind(&self) -> &'static str {
        self.0.kind()
    }
    fn seed(&self) -> u64 {
        Corpus::seed(self.0)
    }
    fn config_json(&self) -> serde_json::Value {
        self.0.config_json()
    }
    fn tokenizer(&self) -> &Tokenizer {
        Corpus::tokenizer(self.0)
    }
    fn streams(&self) -> Vec<StreamSpec> {
        self.0.streams()
    }
    fn render(&self, stream: usize, doc: u64, out: &mut Vec<u32>) -> u32 {
        Corpus::render(self.0, stream, doc, out)
    }
    fn exposure(&self, m: &[StreamSummary]) -> Exposure {
        self.0.exposure(m)
    }
    fn facts(&self, m: &[StreamSummary]) -> serde_json::Value {
        self.0.facts(m)
    }
}

fn bench(c: &mut Criterion) {
    let bios = BioS::build(
        &BioSConfig {
            people: 1_000_000,
            ..BioSConfig::default()
        },
        0,
    )
    .unwrap();
    let n = 100_000u64;
    let mut g = c.benchmark_group("bioS");
    g.sample_size(10);
    g.throughput(Throughput::Elements(n));
    // Rendering emits token ids directly (pools and templates are tokenized once): this is render + tokenize.
    g.bench_function("render 100K biographies, one core", |b| {
        let mut out = Vec::with_capacity(1 << 24);
        b.iter(|| {
            out.clear();
            for d in 0..n {
                Corpus::render(&bios, 0, d, &mut out);
            }
            out.len()
        })
    });
    // The same documents counted in tokens.
    let mut probe = Vec::new();
    (0..n).for_each(|d| {
        Corpus::render(&bios, 0, d, &mut probe);
    });
    g.throughput(Throughput::Elements(probe.len() as u64));
    g.bench_function("render 100K biographies, one core, in tokens", |b| {
        let mut out = Vec::with_capacity(1 << 24);
        b.iter(|| {
            out.clear();
            for d in 0..n {
                Corpus::render(&bios, 0, d, &mut out);
            }
            out.len()
        })
    });
    // Tokenizing text (the path for text read back from a JSONL export): words → ids.
    let texts: Vec<String> = (0..10_000)
        .map(|d| bios.tokenizer.decode(&bios.render(d, 0).tokens))
        .collect();
    let words: usize = texts.iter().map(|t| t.split(' ').count()).sum();
    g.throughput(Throughput::Elements(words as u64));
    g.bench_function(
        "tokenize 10K biographies of text, one core, in tokens",
        |b| {
            b.iter(|| {
                texts
                    .iter()
                    .map(|t| bios.tokenizer.encode(t, "bench").unwrap().len())
                    .sum::<usize>()
            })
        },
    );
    let people = 1_000_000u64;
    g.throughput(Throughput::Elements(people));
    g.bench_function(
        "write 1M biographies to shards (+ people.jsonl), all cores",
        |b| {
            b.iter_batched(
                || tempfile::tempdir().unwrap(),
                |dir| {
                    write_corpus(&bios, dir.path(), 1 << 20, |_| {}).unwrap();
                    dir
                },
                BatchSize::PerIteration,
            )
        },
    );
    g.bench_function("write 1M biographies to shards only, all cores", |b| {
        b.iter_batched(
            || tempfile::tempdir().unwrap(),
            |dir| {
                write_corpus(&ShardsOnly(&bios), dir.path(), 1 << 20, |_| {}).unwrap();
                dir
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

fn zipf(c: &mut Criterion) {
    use physlab_generators::zipf::{Zipf, ZipfConfig};
    let mut g = c.benchmark_group("zipf");
    g.sample_size(10);
    for order in [0usize, 2] {
        let z = Zipf::build(
            &ZipfConfig {
                vocab: 4096,
                exponent: 1.0,
                order,
                documents: 256,
                doc_tokens: 4096,
            },
            0,
        )
        .unwrap();
        g.throughput(Throughput::Elements(256 * 4096));
        g.bench_function(format!("order {order}, V=4096: 1M tokens, one core"), |b| {
            let mut out = Vec::with_capacity(1 << 21);
            b.iter(|| {
                out.clear();
                for d in 0..256 {
                    Corpus::render(&z, 0, d, &mut out);
                }
                out.len()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench, zipf);
criterion_main!(benches);
