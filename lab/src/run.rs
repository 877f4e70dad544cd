//! Running a point: a self-describing run folder `runs/<experiment>/<point>/s<seed>/` with
//! `config.resolved.toml`, `manifest.json`, `data/`, `metrics.jsonl`, `checkpoints/final/`, `eval.json`,
//! `table.txt` and, last, `DONE`. A finished run is never overwritten; an unfinished one is moved aside.

use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use physlab_eval::biod::{evaluate_biod, render_biod, BioDEval};
use physlab_eval::corpus::{
    corpus_eval_from_scores, documents_nll_bits_at, documents_nll_bits_scored, early_stopping,
    render_corpus, CorpusEval, EarlyStopping, Positions,
};
use physlab_eval::qa::{evaluate_qa, render_qa, QaEval};
use physlab_eval::{evaluate_bios, evaluate_bios_own_orders, render_table, BioSEval};
use physlab_generators::biod::BioD;
use physlab_generators::bios::BioS;
use physlab_generators::corpus::write_corpus;
use physlab_generators::corpus::TokenStream;
use physlab_generators::corpus::{
    mixer, mixture_sources, named_sources, Corpus, Dataset, MixSource,
};
use physlab_generators::people::Attribute;
use physlab_generators::rng::{stream, Purpose};
use physlab_generators::zipf::{zipf_probabilities, AliasTable, Uniform, Zipf};
use physlab_generators::DataConfig;
use physlab_generators::WindowMixer;
use physlab_trainer::model::Gpt;
use physlab_trainer::moe::{record_routing, summarize_routing, LayerRouting, Routing};
use physlab_trainer::quant::{quantize, Quant};
use physlab_trainer::train::{train_with_eval, StepEval};
use physlab_trainer::{CpuTrain, GptShape, ParamCounts, TrainOutcome, Windows};
use tracing::info;

use crate::recipe::{Point, RunConfig};

/// Documents per shard of a run's corpus dataset (and of `physlab generate <experiment>` for one).
pub const CORPUS_SHARD_DOCUMENTS: u64 = 4096;

/// Where training and evaluation run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendKind {
    /// burn-flex, f32 (the default; needs nothing).
    Cpu,
    /// burn-cuda, f32 weights with bf16 matrix products by default (a build with `--features cuda` and an NVIDIA
    /// driver).
    Cuda,
}

impl BackendKind {
    pub fn describe(self) -> &'static str {
        match self {
            BackendKind::Cpu => "flex (CPU, f32 tensors)",
            BackendKind::Cuda => "cuda (GPU, f32 tensors)",
        }
    }

    /// `train.precision` as this backend trains it (`auto`: f32 on CPU, bf16-mixed on CUDA).
    pub fn precision(self, p: physlab_trainer::Precision) -> physlab_trainer::Precision {
        use physlab_trainer::Precision;
        match (self, p) {
            (BackendKind::Cpu, Precision::Auto) => Precision::F32,
            (BackendKind::Cuda, Precision::Auto) => Precision::Bf16Mixed,
            (_, p) => p,
        }
    }

    /// Refuses early, with the reason, when this backend cannot run here.
    pub fn check(self) -> Result<()> {
        match self {
            BackendKind::Cpu => Ok(()),
            BackendKind::Cuda => {
                let found = physlab_trainer::cuda_available().map_err(anyhow::Error::msg)?;
                info!("cuda: {found}");
                Ok(())
            }
        }
    }
}

/// The eval.json key of the evaluation in the people's own training biographies
/// ([`physlab_eval::evaluate_bios_own_orders`]).
pub const OWN_ORDERS_KEY: &str = "bios_own_orders";
/// eval.json's key for a mixture of experts' routing in its evaluation (per layer, [`LayerRouting`]).
pub const ROUTING_KEY: &str = "routing";

/// A mixture of experts' per-layer routing from what its evaluation recorded, the tokens over capacity counted at
/// the training capacity factor; None for a model without a mixture.
pub(crate) fn routing_of<B: physlab_trainer::kernels::Kernels>(
    model: &Gpt<B>,
    records: &[Routing],
    capacity_factor: f64,
) -> Option<Vec<LayerRouting>> {
    let layers = model.moe_layers();
    (layers > 0 && !records.is_empty()).then(|| summarize_routing(records, layers, capacity_factor))
}

/// Puts a mixture's routing (if any) into eval.json's entries and its lines into the run's table.
fn add_routing(
    routing: Option<&Vec<LayerRouting>>,
    entries: &mut serde_json::Map<String, serde_json::Value>,
    table: &mut String,
) -> Result<()> {
    if let Some(r) = routing {
        entries.insert(ROUTING_KEY.into(), serde_json::to_value(r)?);
        table.push_str(&render_routing(r));
    }
    Ok(())
}

/// The routing as table lines: per layer, the chosen experts' mean probability (the gate), the busiest expert's
/// share, the experts used and the share over capacity at the training factor.
pub(crate) fn render_routing(layers: &[LayerRouting]) -> String {
    let mut out = String::from("\nrouting in the evaluation (every token routed):\n");
    for l in layers {
        out.push_str(&format!(
            "  mixture layer {}: gate (chosen expert's probability) {:.3} (uniform 1/{} = {:.3}); busiest expert {:.1}% of {} tokens (balanced {:.1}%); {} of {} experts used; {:.1}% over capacity at factor {}\n",
            l.layer,
            l.gate_mean,
            l.experts,
            1.0 / l.experts as f64,
            100.0 * l.top_share,
            l.tokens,
            100.0 / l.experts as f64,
            l.experts_used,
            l.experts,
            100.0 * l.over_capacity,
            l.capacity_factor
        ));
    }
    out
}

/// Whether the people's own training biographies differ from the canonical evaluation biography, so that the
/// own-order evaluation says something of its own: with `multi > 1`, `permute`, or the name in a later sentence
/// (bioS single without permute trains on exactly the canonical biography), and not for `fresh` data (no fixed
/// biographies).
pub fn own_orders_differ(c: &physlab_generators::bios::BioSConfig) -> bool {
    !c.fresh && (c.multi > 1 || c.permute || c.name_sentence > 0)
}

/// The heading of the own-order table.
pub fn own_orders_title(title: &str) -> String {
    format!("{title} — in each person's own training biographies (templates and sentence orders as trained)")
}

/// What training and evaluation of a point produced.
struct Evaluated {
    outcome: TrainOutcome,
    eval: BioSEval,
    /// The evaluation in the people's own training biographies, where it differs from the canonical one.
    own_orders: Option<BioSEval>,
    quantized: Vec<(Quant, BioSEval)>,
    qa: Vec<QaEval>,
    /// A mixture of experts' routing in the canonical evaluation (None for other models).
    routing: Option<Vec<LayerRouting>>,
}

/// Trains on backend `B` and evaluates on its inner backend.
#[allow(clippy::too_many_arguments)]
fn train_eval<B: physlab_trainer::kernels::TrainBackend>(
    cfg: &RunConfig,
    shape: GptShape,
    windows: &mut WindowMixer<'_>,
    tokens_per_exposure: f64,
    dir: &Path,
    resume: bool,
    bios: &BioS,
    params: ParamCounts,
    qa_streams: &[TokenStream],
    curve_streams: &[TokenStream],
) -> Result<Evaluated> {
    let device = B::Device::default();
    // The accuracy curve: greedy exact match on a fixed slice of each curve stream, per question kind.
    let mut curve = |_step: usize, model: &Gpt<B::InnerBackend>| -> Vec<(String, f64)> {
        let mut out = Vec::new();
        for s in curve_streams {
            let e = evaluate_qa::<B::InnerBackend>(
                model,
                s,
                question_kind(s, bios),
                cfg.eval.batch,
                &device,
            );
            out.push((format!("{}/accuracy", s.name), e.accuracy));
            out.extend(
                e.per_kind
                    .into_iter()
                    .map(|(k, v)| (format!("{}/{k}", s.name), v)),
            );
        }
        out
    };
    let (model, outcome) = train_with_eval::<B>(
        &cfg.train,
        shape,
        windows,
        tokens_per_exposure,
        cfg.seed,
        dir,
        &device,
        resume,
        (!curve_streams.is_empty()).then_some(&mut curve as &mut StepEval<'_, B::InnerBackend>),
    )?;
    // Evaluated with every token routed (a mixture of experts drops none; other models are unchanged).
    let model = model.without_token_dropping();
    info!(
        "trained {} steps ({:.1} exposures) in {:.1}s: loss {:.3} → {:.3}, {:.0} tokens/s",
        outcome.steps,
        outcome.exposures,
        outcome.wall_s,
        outcome.first_loss,
        outcome.final_loss,
        outcome.tokens_per_s
    );
    let t2 = Instant::now();
    let (eval, routing) = record_routing(|| {
        evaluate_bios::<B::InnerBackend>(&model, bios, params, cfg.eval.batch, &device)
    });
    let routing = routing_of(&model, &routing, cfg.model.capacity_factor);
    info!(
        "evaluated {} people in {:.1}s",
        eval.people,
        t2.elapsed().as_secs_f64()
    );
    let own_orders = if own_orders_differ(&bios.config) {
        let t = Instant::now();
        let e = evaluate_bios_own_orders::<B::InnerBackend>(
            &model,
            bios,
            params,
            cfg.eval.batch,
            &device,
        );
        if let Some(e) = &e {
            info!(
                "evaluated {} people in their {} own training biographies each in {:.1}s: {:.0} bits (canonical order: {:.0})",
                e.people,
                e.biographies_per_person,
                t.elapsed().as_secs_f64(),
                e.bits,
                eval.bits
            );
        }
        e
    } else {
        None
    };
    let mut quantized = Vec::new();
    for &q in &cfg.eval.quantize {
        let qm = quantize(model.clone(), q);
        let e = evaluate_bios::<B::InnerBackend>(&qm, bios, params, cfg.eval.batch, &device);
        info!(
            "{}: {:.0} bits, R = {:.4} (unquantized {:.0} bits)",
            q.name(),
            e.bits,
            e.capacity_ratio,
            eval.bits
        );
        quantized.push((q, e));
    }
    let qa: Vec<QaEval> = qa_streams
        .iter()
        .map(|s| {
            let t = Instant::now();
            let e = evaluate_qa::<B::InnerBackend>(
                &model,
                s,
                question_kind(s, bios),
                cfg.eval.batch,
                &device,
            );
            info!(
                "QA by generation on {}: {:.1}% of {} questions in {:.1}s",
                s.name,
                100.0 * e.accuracy,
                e.questions,
                t.elapsed().as_secs_f64()
            );
            e
        })
        .collect();
    Ok(Evaluated {
        outcome,
        eval,
        own_orders,
        quantized,
        qa,
        routing,
    })
}

/// The kind of question `i` of stream `s`: the six QA questions per attribute (document i asks about attribute
/// i mod 6); a Part 3.2 task per form, by its control token (`<direct>` or `<hint>`).
fn question_kind<'a>(s: &'a TokenStream, bios: &'a BioS) -> impl Fn(usize) -> String + 'a {
    let is_qa = s.name.starts_with("qa_");
    move |i: usize| {
        if is_qa {
            Attribute::ALL[i % 6].name().to_string()
        } else {
            let first = s
                .question(i)
                .and_then(|(p, _)| p.first().copied())
                .unwrap_or(0);
            format!(
                "{} {}",
                s.name.rsplit_once('_').map_or(s.name.as_str(), |x| x.0),
                bios.tokenizer.decode(&[first])
            )
        }
    }
}

/// The streams of the accuracy curve (`train.eval_every`): every question stream the run trains on whose name
/// ends in `_train` (its P_train questions), followed by its `_test` twin (P_test), each cut to its first
/// `eval.curve_questions` questions. Empty when `train.eval_every` is 0 or the run trains on no questions.
fn curve_streams(
    cfg: &RunConfig,
    manifest: &physlab_generators::Manifest,
    qa_streams: &[TokenStream],
) -> Vec<TokenStream> {
    if cfg.train.eval_every == 0 {
        return Vec::new();
    }
    let trained: Vec<String> = if cfg.train.streams.is_empty() {
        manifest.mixture.iter().map(|m| m.stream.clone()).collect()
    } else {
        cfg.train.streams.clone()
    };
    let find = |name: &str| qa_streams.iter().find(|s| s.name == name);
    let mut out = Vec::new();
    for name in &trained {
        let Some(base) = name.strip_suffix("_train") else {
            continue;
        };
        for n in [name.clone(), format!("{base}_test")] {
            if let Some(s) = find(&n) {
                out.push(s.head(cfg.eval.curve_questions));
            }
        }
    }
    out
}

/// Budget arithmetic for a point, from a sample of its biographies (no files written).
pub struct Plan {
    pub tokens_per_biography: f64,
    pub vocab_size: usize,
    pub steps: usize,
    pub tokens: f64,
    pub perfect_bits: f64,
    pub params_total: usize,
    /// What training the point should hold in memory, by part.
    pub memory: MemoryEstimate,
    /// Passes over each stream trained on besides the biographies (questions, tasks, celebrities, junk).
    pub passes: Vec<StreamPasses>,
}

/// How often a run goes over one of its training streams.
pub struct StreamPasses {
    pub stream: String,
    /// Documents in the stream (questions of P_train for `qa_train`).
    pub documents: u64,
    /// The stream's share of the run's tokens over its size.
    pub passes: f64,
}

/// An estimate of the memory a training run holds at its peak (f32 throughout): the parameters with their
/// gradients and AdamW's two moments (and a spare copy), the activations autodiff keeps for the backward pass
/// (per layer and token about 32·d values for the residual stream, norms, q/k/v and the 4d MLP, plus the h·T
/// attention scores and probabilities; per token 3·V for the logits, their softmax and its gradient) and the
/// dataset's tokens. It counts tensors, not the program itself (about 60 MB more); it is there to refuse a recipe
/// that cannot fit before anything is allocated (a context of 1e8 once aborted asking for 51 GB).
#[derive(Clone, Copy, Debug)]
pub struct MemoryEstimate {
    pub params_bytes: f64,
    pub activation_bytes: f64,
    pub dataset_bytes: f64,
}

impl MemoryEstimate {
    pub fn new(shape: &GptShape, params: usize, batch: usize, dataset_tokens: f64) -> Self {
        let (b, t) = (batch as f64, shape.context as f64);
        let (l, h, d, v) = (
            shape.n_layer as f64,
            shape.n_head as f64,
            shape.d_model as f64,
            shape.vocab_size as f64,
        );
        MemoryEstimate {
            params_bytes: 4.0 * 5.0 * params as f64,
            activation_bytes: 4.0 * b * t * (l * (32.0 * d + 2.0 * h * t) + 3.0 * v),
            dataset_bytes: 4.0 * dataset_tokens,
        }
    }

    pub fn total(&self) -> f64 {
        self.params_bytes + self.activation_bytes + self.dataset_bytes
    }

    /// `about 1.2 GB (parameters, gradients and AdamW moments 0.1 GB; activations 1.0 GB; dataset 0.1 GB)`.
    pub fn describe(&self) -> String {
        let gb = |x: f64| x / 1e9;
        format!(
            "about {:.2} GB (parameters, gradients and AdamW moments {:.2} GB; activations {:.2} GB; dataset {:.2} GB)",
            gb(self.total()),
            gb(self.params_bytes),
            gb(self.activation_bytes),
            gb(self.dataset_bytes)
        )
    }
}

/// The memory this machine has available now (`MemAvailable` of /proc/meminfo), in bytes; None where that is not
/// known.
pub fn available_memory() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024.0)
}

/// Refuses a point whose estimated training memory exceeds what this machine has available, with the figures.
pub fn check_memory(p: &Point, pl: &Plan) -> Result<()> {
    if let Some(avail) = available_memory() {
        if pl.memory.total() > avail {
            bail!(
                "point {} (seed {}): training needs {}, more than the {:.2} GB this machine has available \
                 (MemAvailable in /proc/meminfo); lower train.batch_size ({}) or train.context ({}), or use a \
                 smaller model",
                p.name,
                p.seed,
                pl.memory.describe(),
                avail / 1e9,
                p.config.train.batch_size,
                p.config.train.context
            );
        }
    }
    Ok(())
}

/// A dry run's estimate of the window targets one pass fills with aligned windows: `docs` documents of about
/// `tokens_per_doc` tokens each (their `<eot>` included) packed whole, ⌊context / tokens_per_doc⌋ to a window
/// (at least one), each window `context` targets. The run itself measures the packing of its first pass.
fn aligned_estimate(docs: f64, tokens_per_doc: f64, context: usize) -> f64 {
    let per_window = (context as f64 / tokens_per_doc).floor().max(1.0);
    (docs / per_window).ceil() * context as f64
}

pub fn plan(cfg: &RunConfig) -> Result<Plan> {
    if let Some(dc) = &cfg.corpus {
        return plan_corpus(cfg, dc);
    }
    let mut sample = cfg.data.clone();
    sample.people = sample.people.min(2000);
    let bios = BioS::build(&sample, cfg.seed)?;
    let n = bios.n_people();
    let tokens: usize = (0..n).map(|p| bios.render(p, 0).tokens.len() + 1).sum();
    let tpb = tokens as f64 / n as f64;
    let mix = bios.mixture();
    let bio_share = mix[0].weight / mix.iter().map(|m| m.weight).sum::<f64>();
    // log2 N0 and log2 S0 depend on the pools only, not on N.
    let perfect = physlab_generators::bits::bios_perfect_bits(
        cfg.data.people,
        bios.log2_n0(),
        bios.log2_s0(),
    );
    let shape = cfg
        .model
        .shape(bios.tokenizer.vocab_size(), cfg.train.context)
        .map_err(anyhow::Error::msg)?;
    let tokens_per_exposure = match cfg.train.windows {
        Windows::Stream => cfg.data.people as f64 * tpb / bio_share,
        Windows::Aligned => {
            aligned_estimate(cfg.data.people as f64, tpb, cfg.train.context) / bio_share
        }
    };
    let steps = cfg.train.total_steps(tokens_per_exposure);
    let params_total = shape.num_params(bios.tokenizer.vocab_size()).total;
    // The streams trained on besides the biographies (a finetune's named streams in equal shares, or the
    // questions mixed into pretraining): their size from the sample, scaled to the whole population.
    let specs = Corpus::streams(&bios);
    let trained: Vec<(String, f64)> = if cfg.train.streams.is_empty() {
        mix.iter()
            .skip(1)
            .map(|m| (m.stream.clone(), m.weight))
            .collect()
    } else {
        let k = cfg.train.streams.len() as f64;
        cfg.train
            .streams
            .iter()
            .map(|s| (s.clone(), 1.0 / k))
            .collect()
    };
    let total_weight = if cfg.train.streams.is_empty() {
        mix.iter().map(|m| m.weight).sum::<f64>()
    } else {
        1.0
    };
    let run_tokens = (steps * cfg.train.tokens_per_step()) as f64;
    let mut passes = Vec::new();
    for (name, weight) in trained {
        let Some(i) = specs.iter().position(|s| s.name == name && s.materialized) else {
            continue;
        };
        let docs = specs[i].documents.min(2000);
        let mut buf = Vec::new();
        let mut measured = 0usize;
        for d in 0..docs {
            buf.clear();
            Corpus::render(&bios, i, d, &mut buf);
            measured += buf.len() + 1;
        }
        let per_doc = measured as f64 / docs.max(1) as f64;
        let full_docs = specs[i].documents as f64 * cfg.data.people as f64 / n as f64;
        let stream_tokens = per_doc * full_docs;
        passes.push(StreamPasses {
            stream: name,
            documents: full_docs.round() as u64,
            passes: run_tokens * weight / total_weight / stream_tokens,
        });
    }
    Ok(Plan {
        tokens_per_biography: tpb,
        vocab_size: bios.tokenizer.vocab_size(),
        steps,
        tokens: (steps * cfg.train.tokens_per_step()) as f64,
        perfect_bits: perfect,
        params_total,
        // The stored streams: the biographies (all of them with multi·permute variants) and the questions.
        memory: MemoryEstimate::new(
            &shape,
            params_total,
            cfg.train.batch_size,
            tokens_per_exposure * cfg.data.multi.max(1) as f64,
        ),
        passes,
    })
}

/// The budget of a corpus run: one exposure is one pass over the documents (each followed by `<eot>`).
fn plan_corpus(cfg: &RunConfig, dc: &DataConfig) -> Result<Plan> {
    let corpus = dc.build(cfg.seed)?;
    let (docs, tokens_per_doc, entropy) = corpus_size(dc);
    let perfect_bits = match dc {
        DataConfig::BioD(c) => BioD::build(c, cfg.seed)?.perfect_recall_bits(),
        // Facts: what a model must store to know every fact of the training set, the expected distinct keys
        // × log2 V.
        DataConfig::Facts(c) => expected_distinct_keys(c) * c.value_bits(),
        _ => entropy * (docs * tokens_per_doc) as f64,
    };
    let tokens_per_exposure = match cfg.train.windows {
        Windows::Stream => docs as f64 * (tokens_per_doc + 1) as f64,
        Windows::Aligned => {
            aligned_estimate(docs as f64, (tokens_per_doc + 1) as f64, cfg.train.context)
        }
    };
    let vocab = corpus.tokenizer().vocab_size();
    let shape = cfg
        .model
        .shape(vocab, cfg.train.context)
        .map_err(anyhow::Error::msg)?;
    let steps = cfg.train.total_steps(tokens_per_exposure);
    let params_total = shape.num_params(vocab).total;
    Ok(Plan {
        tokens_per_biography: (tokens_per_doc + 1) as f64,
        vocab_size: vocab,
        steps,
        tokens: (steps * cfg.train.tokens_per_step()) as f64,
        perfect_bits,
        params_total,
        memory: MemoryEstimate::new(
            &shape,
            params_total,
            cfg.train.batch_size,
            tokens_per_exposure,
        ),
        passes: Vec::new(),
    })
}

/// The expected number of distinct keys among a facts corpus's training facts: Σ_k 1 − (1 − p_k)^n.
fn expected_distinct_keys(c: &physlab_generators::facts::FactsConfig) -> f64 {
    let n = (c.documents * c.facts_per_document) as f64;
    physlab_generators::zipf::zipf_probabilities(c.keys, c.exponent)
        .iter()
        .map(|&p| -f64::exp_m1(n * f64::ln_1p(-p)))
        .sum()
}

/// Documents, content tokens per document and entropy rate (bits/token) of a corpus config.
fn corpus_size(dc: &DataConfig) -> (usize, usize, f64) {
    match dc {
        DataConfig::Zipf(c) | DataConfig::Markov(c) => (
            c.documents,
            c.doc_tokens,
            physlab_generators::zipf::zipf_entropy_bits(c.vocab, c.exponent),
        ),
        DataConfig::Uniform(c) => (c.sequences, c.length, (c.vocab as f64).log2()),
        DataConfig::Facts(c) => (c.documents, c.document_tokens(), c.entropy_bits_per_token()),
        // One exposure = one biography per person; its tokens: 3 + 1 + K·(3 + C·L).
        DataConfig::BioD(c) => (
            c.people,
            4 + c.attributes * (3 + c.chunks * c.value_tokens),
            f64::NAN,
        ),
        DataConfig::BioS(_) => (0, 0, f64::NAN),
    }
}

pub fn plan_line(p: &Point) -> Result<String> {
    plan_line_of(p, &plan(&p.config)?)
}

/// The plan line of `p` from its already computed plan `pl`.
pub fn plan_line_of(p: &Point, pl: &Plan) -> Result<String> {
    let c = &p.config;
    if let Some(dc) = &c.corpus {
        let (docs, len, h) = corpus_size(dc);
        let budget = if c.train.steps > 0 {
            format!("train.steps = {}", c.train.steps)
        } else if c.train.tokens > 0 {
            format!("train.tokens = {}", c.train.tokens)
        } else {
            format!(
                "{docs} documents × {} tokens × {} passes{}",
                len + 1,
                c.train.exposures,
                if c.train.windows == Windows::Aligned {
                    " in aligned windows (their padding estimated)"
                } else {
                    ""
                }
            )
        };
        let what = if let DataConfig::Facts(f) = dc {
            format!(
                "facts corpus, {} training facts, ~{:.0} distinct (expected) × {} log2 {} = {:.0} bits to store",
                f.documents * f.facts_per_document,
                expected_distinct_keys(f),
                f.value_tokens,
                f.values,
                pl.perfect_bits
            )
        } else if h.is_nan() {
            format!(
                "{} corpus, perfect-recall bits {:.0}",
                dc.kind(),
                pl.perfect_bits
            )
        } else {
            format!(
                "{} corpus, H = {h:.4} bits/token, {:.0} bits in all",
                dc.kind(),
                pl.perfect_bits
            )
        };
        let (docs, tokens_per_doc, _) = corpus_size(dc);
        let data_tokens = (docs * tokens_per_doc) as f64;
        let mut extra = if data_tokens > 0.0 {
            format!(
                "; {:.1} passes over the {:.0} data tokens",
                pl.tokens / data_tokens,
                data_tokens
            )
        } else {
            String::new()
        };
        if c.train.eval_every > 0 {
            extra.push_str(&format!(
                "; held-out excess every {} steps, early stopping on {VALIDATION_DOCUMENTS} validation documents",
                c.train.eval_every
            ));
        }
        return Ok(format!(
            "[{}] {}/s{}: {what}; {budget} = {:.2}M tokens = {} steps of {}×{}{extra}; {} ({} params, vocab {}); bits/params {:.3}; memory ≈ {:.2} GB",
            p.index,
            p.name,
            p.seed,
            pl.tokens / 1e6,
            pl.steps,
            c.train.batch_size,
            c.train.context,
            c.model.preset,
            pl.params_total,
            pl.vocab_size,
            pl.perfect_bits / pl.params_total as f64,
            pl.memory.total() / 1e9,
        ));
    }
    let budget = if c.train.steps > 0 {
        format!("train.steps = {}", c.train.steps)
    } else if c.train.tokens > 0 {
        format!("train.tokens = {}", c.train.tokens)
    } else {
        format!(
            "N={} × ~{:.1} tokens/bio × {} exposures{}",
            c.data.people,
            pl.tokens_per_biography,
            c.train.exposures,
            if c.train.windows == Windows::Aligned {
                " in aligned windows (their padding estimated)"
            } else {
                ""
            }
        )
    };
    let mut extra = String::new();
    for s in &pl.passes {
        extra.push_str(&format!(
            "; {:.1} passes over {} ({} documents)",
            s.passes, s.stream, s.documents
        ));
    }
    if c.train.lora_qv_rank > 0 || c.train.lora_embedding_rank > 0 {
        extra.push_str(&format!(
            "; LoRA rank {} on q/v, {} on the embedding (the pretrained weights frozen)",
            c.train.lora_qv_rank, c.train.lora_embedding_rank
        ));
    } else if !c.train.init_from.is_empty() {
        extra.push_str("; full finetune");
    }
    if c.train.eval_every > 0 {
        extra.push_str(&format!(
            "; accuracy curve every {} steps on {} questions a stream",
            c.train.eval_every, c.eval.curve_questions
        ));
    }
    Ok(format!(
        "[{}] {}/s{}: {budget} = {:.2}M tokens = {} steps of {}×{}; {} ({} params, vocab {}); perfect bits {:.0}, R^max ≥ {:.3}{extra}; memory ≈ {:.2} GB",
        p.index,
        p.name,
        p.seed,
        pl.tokens / 1e6,
        pl.steps,
        c.train.batch_size,
        c.train.context,
        c.model.preset,
        pl.params_total,
        pl.vocab_size,
        pl.perfect_bits,
        pl.perfect_bits / pl.params_total as f64,
        pl.memory.total() / 1e9,
    ))
}

/// The training FLOPs of one step above which `validate <experiment>` does not time a point on the CPU unasked
/// (gpt2-2-2 at 16×128 is ~11 GFLOP a step; GPT2-12-12 at 96×512, ~30,000).
pub const CPU_STEP_GFLOP: f64 = 200.0;

/// Whether a point's training step is small enough to time on this CPU in a moment ([`CPU_STEP_GFLOP`]).
pub fn cpu_sized(p: &Point) -> Result<bool> {
    let c = &p.config;
    let pl = plan(c)?;
    let shape = c
        .model
        .shape(pl.vocab_size, c.train.context)
        .map_err(anyhow::Error::msg)?;
    // Timing allocates the step's parameters and activations: never more than a quarter of the free memory.
    let fits = available_memory()
        .is_none_or(|free| pl.memory.total() - pl.memory.dataset_bytes < free / 4.0);
    Ok(fits && shape.flops_per_token() * c.train.tokens_per_step() as f64 <= CPU_STEP_GFLOP * 1e9)
}

/// The training time a point should take on this machine's CPU: its model's training step timed here (5 steps
/// after 2 of warm-up, on random windows of its batch and context; `cache` keeps one timing per model shape and
/// batch), times its steps. Generation and evaluation are not counted.
pub fn predicted_runtime(
    p: &Point,
    cache: &mut std::collections::HashMap<String, f64>,
) -> Result<String> {
    let pl = plan(&p.config)?;
    let step = step_seconds(p, cache)?;
    let secs = step * pl.steps as f64;
    let hms = format!(
        "{}:{:02}:{:02}",
        secs as u64 / 3600,
        (secs as u64 / 60) % 60,
        secs as u64 % 60
    );
    Ok(format!(
        "predicted training time on this CPU: {hms} ({} steps × {:.1} ms/step, timed here over 5 steps; data generation and evaluation not counted)",
        pl.steps,
        step * 1000.0
    ))
}

/// A point's training step on this machine's CPU in seconds (see [`predicted_runtime`]; `cache` keeps one timing
/// per model shape and batch).
pub fn step_seconds(p: &Point, cache: &mut std::collections::HashMap<String, f64>) -> Result<f64> {
    let c = &p.config;
    let pl = plan(c)?;
    let shape = c
        .model
        .shape(pl.vocab_size, c.train.context)
        .map_err(anyhow::Error::msg)?;
    // A LoRA finetune's step carries its adapters too.
    let shape = GptShape {
        lora: physlab_trainer::lora::LoraShape {
            qv_rank: c.train.lora_qv_rank,
            embedding_rank: c.train.lora_embedding_rank,
            alpha: c.train.lora_alpha,
        },
        ..shape
    };
    let key = format!("{shape:?}/{}", c.train.batch_size);
    let step = match cache.get(&key) {
        Some(s) => *s,
        None => {
            let s = crate::bench::time_step::<CpuTrain>(
                &shape,
                c.train.batch_size,
                2,
                5,
                &Default::default(),
                physlab_trainer::Precision::F32,
            )?;
            cache.insert(key, s);
            s
        }
    };
    Ok(step)
}

#[allow(clippy::too_many_arguments)]
pub fn run_experiment(
    experiment: &str,
    points: &[Point],
    only: Option<usize>,
    runs: &Path,
    dry_run: bool,
    resume: bool,
    backend: BackendKind,
    wait: bool,
) -> Result<()> {
    let selected: Vec<&Point> = match only {
        Some(i) => vec![points
            .get(i)
            .with_context(|| format!("--point {i}: {experiment} has {} point(s)", points.len()))?],
        None => points.iter().collect(),
    };
    // `{runs}` in train.init_from is the --runs folder, so a finetune finds the pretraining run wherever runs go.
    let selected: Vec<Point> = with_runs(&selected.into_iter().cloned().collect::<Vec<_>>(), runs);
    preflight(&selected, backend)?;
    for p in &selected {
        if !dry_run {
            pretraining_done(p)?;
        }
    }
    if dry_run {
        return Ok(());
    }
    backend.check()?;
    for p in &selected {
        run_point(
            experiment,
            p,
            &run_dir(runs, experiment, p),
            resume,
            backend,
            wait,
        )?;
    }
    Ok(())
}

/// What every way of running points checks before any of them starts: each point's plan line, and on the CPU its
/// memory estimate against what the machine has free.
pub fn preflight(points: &[Point], backend: BackendKind) -> Result<()> {
    for p in points {
        let pl = plan(&p.config)?;
        info!("{}", plan_line_of(p, &pl)?);
        // On a GPU the activations live in its memory, which this check does not know.
        if backend == BackendKind::Cpu {
            check_memory(p, &pl)?;
        }
    }
    Ok(())
}

/// A finetune's pretraining run must be finished (`DONE` in its `train.init_from`).
pub fn pretraining_done(p: &Point) -> Result<()> {
    let from = &p.config.train.init_from;
    if !from.is_empty() && !Path::new(from).join("DONE").exists() {
        bail!(
            "point {} (seed {}): train.init_from = {from} is not a finished checkpoint (no DONE there): run the \
             pretraining experiment for this seed first",
            p.name,
            p.seed
        );
    }
    Ok(())
}

/// `runs/<experiment>/<point>/s<seed>`.
pub fn run_dir(runs: &Path, experiment: &str, p: &Point) -> PathBuf {
    runs.join(experiment)
        .join(&p.name)
        .join(format!("s{}", p.seed))
}

/// `{runs}` in a finetune's `train.init_from` is the --runs folder.
pub fn with_runs(points: &[Point], runs: &Path) -> Vec<Point> {
    points
        .iter()
        .map(|p| {
            let mut p = p.clone();
            p.config.train.init_from = p
                .config
                .train
                .init_from
                .replace("{runs}", &runs.display().to_string());
            p
        })
        .collect()
}

fn git_sha() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// The run folder's manifest.json: where the run came from (git sha, versions, backend, dataset) and its model.
#[allow(clippy::too_many_arguments)]
fn write_run_manifest(
    dir: &Path,
    experiment: &str,
    p: &Point,
    backend: BackendKind,
    dataset_hash: &str,
    shape: GptShape,
    params: ParamCounts,
    steps: usize,
) -> Result<()> {
    let m = serde_json::json!({
        "experiment": experiment,
        "point": p.name,
        "point_index": p.index,
        "seed": p.seed,
        "git_sha": git_sha(),
        "physlab_version": env!("CARGO_PKG_VERSION"),
        "burn_version": "0.21.0",
        "backend": backend.describe(),
        "precision": backend.precision(p.config.train.precision).name(),
        "dataset_hash": dataset_hash,
        "model_shape": shape,
        "params": params,
        "steps": steps,
    });
    write(&dir.join("manifest.json"), serde_json::to_vec_pretty(&m)?)
}

/// Writes a run file atomically and durably (temporary file, fsync, rename, fsync of the folder): a killed
/// process leaves the old file or the new one, and DONE, written last, follows everything before it to disk.
fn write(path: &Path, bytes: impl AsRef<[u8]>) -> Result<()> {
    physlab_generators::fsio::atomic_write(path, bytes.as_ref())
        .with_context(|| format!("writing {}", path.display()))
}

/// Calls the generic `f::<B>(args)` with the training backend `backend` names: burn-flex on CPU, or burn-cuda in a
/// `--features cuda` build (a build without it refuses the cuda backend with the error of `BackendKind::check`).
macro_rules! on_backend {
    ($backend:expr, $f:ident($($arg:expr),* $(,)?)) => {
        match $backend {
            BackendKind::Cpu => $f::<CpuTrain>($($arg),*),
            #[cfg(feature = "cuda")]
            BackendKind::Cuda => $f::<physlab_trainer::GpuTrain>($($arg),*),
            #[cfg(not(feature = "cuda"))]
            BackendKind::Cuda => match BackendKind::Cuda.check() {
                Err(e) => Err(e),
                Ok(()) => unreachable!("a build without the cuda feature refuses the cuda backend"),
            },
        }
    };
}

/// The run's dataset. Datasets live in a content-addressed store shared by every point, seed and experiment of a
/// runs folder, `<runs>/.datasets/<key>/` (the key: sha256 of the data recipe, i.e. kind, seed, config and writer),
/// written once under a lock while other runs asking for it wait; the run folder records which in `dataset.json`
/// (its path relative to the run, the key and the dataset hash), and a resumed run refuses a dataset whose hash
/// differs from the one it recorded. A run folder of an older build with its own `data/` keeps using it (when it
/// was made by this recipe; one of another recipe found there is moved aside, never reused or overwritten).
fn open_or_write(
    dir: &Path,
    resuming: bool,
    corpus: &dyn Corpus,
    writer: &str,
    generate: impl FnOnce(&Path) -> Result<()>,
) -> Result<Dataset> {
    let same_recipe = |d: &Dataset| {
        d.manifest.kind == corpus.kind()
            && d.manifest.seed == corpus.seed()
            && d.manifest.config == corpus.config_json()
    };
    let data_dir = dir.join("data");
    if resuming && data_dir.exists() {
        match Dataset::open(&data_dir) {
            Ok(d) if same_recipe(&d) => {
                info!("resuming: reusing the dataset in {}", data_dir.display());
                return Ok(d);
            }
            other => {
                let aside = aside_path(&data_dir);
                std::fs::rename(&data_dir, &aside)
                    .with_context(|| format!("moving {} aside", data_dir.display()))?;
                tracing::warn!(
                    "{} holds {}: moved to {}; this run's dataset comes from the shared store",
                    data_dir.display(),
                    match other {
                        Ok(d) => format!(
                            "a dataset of another recipe (kind {}, seed {}; this run: kind {}, seed {})",
                            d.manifest.kind,
                            d.manifest.seed,
                            corpus.kind(),
                            corpus.seed()
                        ),
                        Err(e) => format!("an incomplete or damaged dataset ({e})"),
                    },
                    aside.display()
                );
            }
        }
    }
    let key = dataset_key(corpus, writer);
    let store = dir
        .ancestors()
        .nth(3)
        .map(|runs| runs.join(DATASETS))
        .unwrap_or_else(|| dir.join(DATASETS));
    let ds_dir = store.join(&key);
    let record_path = dir.join("dataset.json");
    let recorded: Option<serde_json::Value> = std::fs::read(&record_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let ds = {
        // One writer per dataset; the others wait for it (and then find it written).
        let _lock = crate::lease::RunLease::acquire(&ds_dir, true)?;
        match Dataset::open(&ds_dir) {
            Ok(d) if same_recipe(&d) => {
                info!("dataset {} (shared, written before)", ds_dir.display());
                d
            }
            found => {
                if ds_dir.exists() {
                    // The store is physlab's own: an incomplete or foreign dataset there is moved aside, not deleted.
                    let aside = aside_path(&ds_dir);
                    std::fs::rename(&ds_dir, &aside)
                        .with_context(|| format!("moving {} aside", ds_dir.display()))?;
                    tracing::warn!(
                        "{} was {}: moved to {}",
                        ds_dir.display(),
                        match found {
                            Ok(_) => "a dataset of another recipe".to_string(),
                            Err(e) => format!("incomplete ({e})"),
                        },
                        aside.display()
                    );
                }
                generate(&ds_dir)?;
                Dataset::open(&ds_dir)?
            }
        }
    };
    if let Some(r) = &recorded {
        let want = r["dataset_hash"].as_str().unwrap_or_default();
        if resuming && want != ds.manifest.dataset_hash {
            bail!(
                "{}: this run was trained on dataset {want}, but {} now holds {}: it is not resumed on other data \
                 (start it again without --resume, or restore that dataset)",
                record_path.display(),
                ds_dir.display(),
                ds.manifest.dataset_hash
            );
        }
    }
    let rel = pathdiff(&ds_dir, dir);
    write(
        &record_path,
        serde_json::to_vec_pretty(&serde_json::json!({
            "path": rel,
            "key": key,
            "dataset_hash": ds.manifest.dataset_hash,
        }))?,
    )?;
    Ok(ds)
}

/// The shared dataset store inside a runs folder (a name no experiment can take: names may not start with `.`).
pub const DATASETS: &str = ".datasets";

/// The store key of a data recipe: sha256 over its kind, seed, config and the writer (with its shard size).
fn dataset_key(corpus: &dyn Corpus, writer: &str) -> String {
    use sha2::{Digest, Sha256};
    let recipe = serde_json::json!({
        "kind": corpus.kind(),
        "seed": corpus.seed(),
        "config": corpus.config_json(),
        "writer": writer,
        "format": physlab_generators::corpus::FORMAT_VERSION,
    });
    let h = Sha256::digest(serde_json::to_vec(&recipe).expect("json"));
    h.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// `to` relative to the folder `from` (both under one root), e.g. `../../../.datasets/<key>`.
fn pathdiff(to: &Path, from: &Path) -> String {
    let (t, f): (Vec<_>, Vec<_>) = (to.components().collect(), from.components().collect());
    let common = t.iter().zip(&f).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<String> = f[common..].iter().map(|_| "..".to_string()).collect();
    parts.extend(
        t[common..]
            .iter()
            .map(|c| c.as_os_str().to_string_lossy().to_string()),
    );
    parts.join("/")
}

/// The dataset folder of a run: its own `data/` (older runs, imported models), or the shared one its
/// `dataset.json` names.
pub fn run_data_dir(run: &Path) -> Result<PathBuf> {
    let own = run.join("data");
    if own.exists() {
        return Ok(own);
    }
    let record = run.join("dataset.json");
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&record).with_context(|| {
            format!(
                "{}: the run records no dataset (no data/ either)",
                record.display()
            )
        })?)
        .with_context(|| format!("parsing {}", record.display()))?;
    let rel = v["path"]
        .as_str()
        .with_context(|| format!("{}: no path", record.display()))?;
    Ok(run.join(rel))
}

/// `<path>.incomplete-<unix seconds>`: where an unfinished folder physlab wrote is moved aside.
fn aside_path(path: &Path) -> PathBuf {
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    PathBuf::from(format!("{}.incomplete-{stamp}", path.display()))
}

/// Writes eval.json, table.txt and DONE (last: a run without DONE is unfinished), and prints the table.
fn finish_run(dir: &Path, report: &serde_json::Value, table: &str, started: Instant) -> Result<()> {
    // The headline evaluation as TensorBoard scalars at the last step.
    let step = report["train"]["steps"].as_u64().unwrap_or(0);
    let mut scalars: Vec<(String, f64)> = Vec::new();
    for (section, prefix) in [
        ("bios", "eval/"),
        (OWN_ORDERS_KEY, "eval/own_orders/"),
        ("biod", "eval/"),
        ("corpus", "eval/"),
    ] {
        if let Some(m) = report[section].as_object() {
            for (k, v) in m {
                if let Some(x) = v.as_f64() {
                    scalars.push((format!("{prefix}{k}"), x));
                }
            }
        }
    }
    if let Some(qa) = report["qa"].as_array() {
        for q in qa {
            if let (Some(s), Some(a)) = (q["stream"].as_str(), q["accuracy"].as_f64()) {
                scalars.push((format!("eval/qa/{s}"), a));
            }
        }
    }
    if !scalars.is_empty() {
        let r = physlab_trainer::tensorboard::EventWriter::create(dir, "eval").and_then(|mut w| {
            let v: Vec<(&str, f64)> = scalars.iter().map(|(k, x)| (k.as_str(), *x)).collect();
            w.scalars(step, &v)?;
            w.flush()
        });
        if let Err(e) = r {
            tracing::warn!("TensorBoard events in {}: {e}", dir.join("tb").display());
        }
    }
    write(&dir.join("eval.json"), serde_json::to_vec_pretty(report)?)?;
    write(&dir.join("table.txt"), table)?;
    write(&dir.join("DONE"), b"")?;
    println!("{table}");
    info!(
        "run folder: {} ({:.1}s in all)",
        dir.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Whether the run folder `dir` was made for `cfg`: its config.resolved.toml parsed and compared as a config, so
/// that a key added later with a default (absent from older files, or written out at its default) still matches,
/// while any real difference, or a key this build does not know, does not. The experiment's `description` is
/// prose, not part of the run: a reworded description still matches.
fn same_config(dir: &Path, cfg: &crate::recipe::RunConfig) -> bool {
    std::fs::read_to_string(dir.join("config.resolved.toml"))
        .ok()
        .and_then(|t| toml::from_str::<crate::recipe::RunConfig>(&t).ok())
        .is_some_and(|mut c| {
            c.description.clone_from(&cfg.description);
            &c == cfg
        })
}

/// Runs one point into `dir`. With `resume`, an unfinished folder of the same config is continued from its newest
/// complete checkpoint (its dataset is reused when complete); otherwise it is moved aside and the run starts over.
pub fn run_point(
    experiment: &str,
    p: &Point,
    dir: &Path,
    resume: bool,
    backend: BackendKind,
    wait: bool,
) -> Result<()> {
    // One owner at a time, taken before anything is read or written (released when this returns).
    let _lease = crate::lease::RunLease::acquire(dir, wait)?;
    let title = format!("{experiment} / {} / seed {}", p.name, p.seed);
    if dir.join("DONE").exists() {
        if !same_config(dir, &p.config) {
            bail!(
                "{} holds a finished run of a different config (compare its config.resolved.toml): it is not \
                 overwritten; choose another --runs folder or delete that one",
                dir.display()
            );
        }
        let table = std::fs::read_to_string(dir.join("table.txt")).unwrap_or_default();
        println!("{table}");
        info!("{} is finished already (DONE exists): not overwritten; delete the folder to run it again", dir.display());
        return Ok(());
    }
    let resuming = resume && dir.exists() && same_config(dir, &p.config);
    if resume && dir.exists() && !resuming {
        info!(
            "{} holds an unfinished run of another config: it is moved aside, not resumed",
            dir.display()
        );
    }
    if dir.exists() && !resuming {
        // Only a folder physlab made for a run (its config.resolved.toml, written first) is ever moved; an empty
        // one is simply used.
        let empty = std::fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .next()
            .is_none();
        if !empty && !dir.join("config.resolved.toml").is_file() {
            bail!(
                "{} exists and is not a physlab run folder (no config.resolved.toml): it is left as it is; choose \
                 another --runs folder or move it yourself",
                dir.display()
            );
        }
    }
    if dir.exists() && !resuming && dir.join("config.resolved.toml").is_file() {
        let aside = aside_path(dir);
        std::fs::rename(dir, &aside)
            .with_context(|| format!("moving the unfinished {} aside", dir.display()))?;
        info!(
            "an unfinished run was in {}: moved to {}",
            dir.display(),
            aside.display()
        );
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let cfg = &p.config;
    write(
        &dir.join("config.resolved.toml"),
        toml::to_string_pretty(cfg)?,
    )?;
    let started = Instant::now();
    let run = Run {
        experiment,
        point: p,
        dir,
        resuming,
        resume,
        backend,
        title: &title,
        started,
    };
    match &cfg.corpus {
        Some(dc) => execute(&run, &CorpusRun::new(cfg, dc)?),
        None => execute(&run, &BioSRun::new(cfg)?),
    }
}

/// One run in progress: its point, folder and how it was started.
struct Run<'a> {
    experiment: &'a str,
    point: &'a Point,
    dir: &'a Path,
    /// The folder holds this config's unfinished run, which continues (its dataset is reused).
    resuming: bool,
    /// `--resume`: training continues from the last step checkpoint.
    resume: bool,
    backend: BackendKind,
    title: &'a str,
    started: Instant,
}

/// What training needs beyond the windows: the model's shape and counts and the dataset.
struct Training<'a> {
    run: &'a Run<'a>,
    cfg: &'a RunConfig,
    dataset: &'a Dataset,
    shape: GptShape,
    params: ParamCounts,
    tokens_per_exposure: f64,
}

/// The steps in which the kinds of run (a bioS run; a corpus run: Zipf, Markov, uniform, bioD) differ. [`execute`]
/// takes each through the same sequence: data, training windows, model and budget, manifest.json, training and
/// evaluation, eval.json, table.txt and DONE.
trait Pipeline {
    /// The generator the training windows are rendered from.
    fn corpus(&self) -> &dyn Corpus;
    /// Writes the data, or opens the dataset already written for this recipe, and logs what it holds.
    fn data(&self, run: &Run<'_>) -> Result<Dataset>;
    /// The training windows' sources and weights.
    fn sources<'a>(&'a self, ds: &Dataset) -> Result<Vec<(MixSource<'a>, f64)>> {
        Ok(mixture_sources(ds, Some(self.corpus()))?)
    }
    /// Checks that need the data, before any training.
    fn check(&self) -> Result<()> {
        Ok(())
    }
    /// Trains on `windows` and evaluates on the run's backend (eval.json's common entries are experiment, point,
    /// seed, exposures, train and wall_s).
    fn train_eval(&self, t: &Training<'_>, windows: &mut WindowMixer<'_>) -> Result<Evaluation>;
}

/// What a pipeline's training and evaluation return: the outcome, eval.json's entries beyond those every run has,
/// and the table printed and kept in table.txt.
struct Evaluation {
    outcome: TrainOutcome,
    entries: serde_json::Map<String, serde_json::Value>,
    table: String,
}

/// Documents packed to measure aligned windows' padding (the first pass's first ones, in training's order).
const ALIGNED_SAMPLE_DOCUMENTS: u64 = 200_000;

/// Training tokens (window targets, padding included) for one exposure with aligned windows: the stream budget
/// ([`physlab_generators::Manifest::tokens_for_exposures`]) times the padding overhead, measured by packing the
/// first documents of the exposure stream in the order training reads them. Logs the packing.
fn aligned_tokens_per_exposure(
    cfg: &RunConfig,
    manifest: &physlab_generators::Manifest,
    sources: &[(MixSource<'_>, f64)],
) -> Result<f64> {
    let stream = &manifest.exposure.stream;
    let names: Vec<&str> = if cfg.train.streams.is_empty() {
        manifest.mixture.iter().map(|m| m.stream.as_str()).collect()
    } else {
        cfg.train.streams.iter().map(String::as_str).collect()
    };
    let Some(i) = names.iter().position(|n| n == stream) else {
        bail!(
            "train.windows = \"aligned\" with an exposure budget needs the exposure stream {stream:?} among the \
             training streams ({}); set train.steps or train.tokens instead",
            names.join(", ")
        );
    };
    let context = cfg.train.context;
    let p = physlab_generators::corpus::aligned_packing(
        &sources[i].0,
        cfg.seed,
        i as u64,
        context + 1,
        ALIGNED_SAMPLE_DOCUMENTS,
    );
    let overhead = p.overhead(context + 1);
    info!(
        "aligned windows: {} documents of {stream:?} fill {} windows of {context} targets ({:.1}% text, the rest \
         padding; budget ×{overhead:.4}){}",
        p.documents,
        p.windows,
        100.0 / overhead,
        if p.cut > 0 {
            format!(
                "; {} of them are longer than the window and are cut",
                p.cut
            )
        } else {
            String::new()
        }
    );
    Ok(manifest.tokens_for_exposures(1.0) * overhead)
}

/// Takes a run through its pipeline, in a folder already owned, created and holding config.resolved.toml.
fn execute(run: &Run<'_>, pipeline: &dyn Pipeline) -> Result<()> {
    let cfg = &run.point.config;
    let dataset = pipeline.data(run)?;
    pipeline.check()?;
    let manifest = &dataset.manifest;
    let sources = pipeline.sources(&dataset)?;
    let mut windows = mixer(&sources, cfg.seed)?;
    let tokens_per_exposure = match cfg.train.windows {
        Windows::Stream => manifest.tokens_for_exposures(1.0),
        Windows::Aligned => aligned_tokens_per_exposure(cfg, manifest, &sources)?,
    };
    let shape = cfg
        .model
        .shape(manifest.vocab_size, cfg.train.context)
        .map_err(anyhow::Error::msg)?;
    let params = shape.num_params(manifest.used_vocab);
    let steps = cfg.train.total_steps(tokens_per_exposure);
    info!(
        "model {}: {} layers, {} heads, d={}, {} params ({} non-embedding, {} with the used embedding rows only); {:.1} MFLOP/token",
        cfg.model.preset,
        shape.n_layer,
        shape.n_head,
        shape.d_model,
        params.total,
        params.non_embedding,
        params.capacity,
        shape.flops_per_token() / 1e6
    );
    if cfg.train.steps > 0 || cfg.train.tokens > 0 {
        info!(
            "budget: {} steps of {}×{} tokens (set by train.{})",
            steps,
            cfg.train.batch_size,
            cfg.train.context,
            if cfg.train.steps > 0 {
                "steps"
            } else {
                "tokens"
            }
        );
    } else {
        info!(
            "budget: {} exposures of {:.0} tokens each ({}; {:.3} of the window targets) → {} steps of {}×{} tokens",
            cfg.train.exposures,
            manifest.exposure.tokens,
            manifest.exposure.unit,
            manifest.exposure.tokens / tokens_per_exposure,
            steps,
            cfg.train.batch_size,
            cfg.train.context
        );
    }
    write_run_manifest(
        run.dir,
        run.experiment,
        run.point,
        run.backend,
        &manifest.dataset_hash,
        shape,
        params,
        steps,
    )?;
    let training = Training {
        run,
        cfg,
        dataset: &dataset,
        shape,
        params,
        tokens_per_exposure,
    };
    let Evaluation {
        outcome,
        entries,
        table,
    } = pipeline.train_eval(&training, &mut windows)?;
    let mut report = serde_json::json!({
        "experiment": run.experiment,
        "point": run.point.name,
        "seed": run.point.seed,
        "exposures": outcome.exposures,
        "train": outcome,
        // This process's seconds (data, training, evaluation) plus the training seconds of the earlier processes of
        // a resumed run: what the run cost in all (their data and evaluation time is not recorded).
        "wall_s": run.started.elapsed().as_secs_f64() + outcome.resumed_wall_s,
    });
    for (k, v) in entries {
        report[k] = v;
    }
    finish_run(run.dir, &report, &table, run.started)
}

/// A bioS run: biographies (and the question streams of QA and the Part 3.2 tasks), evaluated in bits of knowledge,
/// in the people's own training orders where they differ, quantized, and by generation on every question stream.
struct BioSRun<'c> {
    cfg: &'c RunConfig,
    bios: BioS,
    built: Instant,
}

impl<'c> BioSRun<'c> {
    fn new(cfg: &'c RunConfig) -> Result<Self> {
        let built = Instant::now();
        Ok(BioSRun {
            cfg,
            bios: BioS::build(&cfg.data, cfg.seed)?,
            built,
        })
    }
}

impl Pipeline for BioSRun<'_> {
    fn corpus(&self) -> &dyn Corpus {
        &self.bios
    }

    fn data(&self, run: &Run<'_>) -> Result<Dataset> {
        let cfg = self.cfg;
        let writer = format!("bios.write/{}", cfg.data.shard_biographies);
        let dataset = open_or_write(run.dir, run.resuming, &self.bios, &writer, |data_dir| {
            self.bios.write(data_dir, |p| {
                info!("generated {}/{} documents", p.done, p.total)
            })?;
            Ok(())
        })?;
        let manifest = &dataset.manifest;
        let bio = manifest
            .stream("bio")
            .context("a bioS dataset has a bio stream")?;
        info!(
            "data: {} people, {} biographies{}, {} tokens ({:.2} per biography, measured), vocab {} ({} used), perfect-recall bits {:.0} ({:.2}/person) in {:.1}s",
            cfg.data.people,
            bio.documents,
            if bio.materialized { "" } else { " per pass, rendered on the fly" },
            bio.tokens,
            bio.tokens_per_document,
            manifest.vocab_size,
            manifest.used_vocab,
            manifest.fact("perfect_recall_bits").unwrap_or(f64::NAN),
            manifest.fact("perfect_bits_per_person").unwrap_or(f64::NAN),
            self.built.elapsed().as_secs_f64()
        );
        Ok(dataset)
    }

    fn sources<'a>(&'a self, ds: &Dataset) -> Result<Vec<(MixSource<'a>, f64)>> {
        let streams = &self.cfg.train.streams;
        if streams.is_empty() {
            return Ok(mixture_sources(ds, Some(&self.bios))?);
        }
        info!("training on the streams {streams:?} in equal shares");
        Ok(named_sources(ds, Some(&self.bios), streams)?)
    }

    fn check(&self) -> Result<()> {
        let cfg = self.cfg;
        let longest = (0..self.bios.n_people())
            .map(|i| self.bios.render_eval(i).tokens.len() + 1)
            .max()
            .unwrap_or(0);
        if longest > cfg.train.context {
            bail!("an evaluation biography has {longest} tokens (with <eot>), longer than train.context = {}", cfg.train.context);
        }
        Ok(())
    }

    fn train_eval(&self, t: &Training<'_>, windows: &mut WindowMixer<'_>) -> Result<Evaluation> {
        let (cfg, manifest) = (t.cfg, &t.dataset.manifest);
        // Every question stream (QA and Part 3.2 tasks, P_train and P_test) is evaluated by generation.
        let qa_streams: Vec<TokenStream> = manifest
            .streams
            .iter()
            .filter(|s| s.prompts && s.materialized)
            .map(|s| t.dataset.load(&s.name))
            .collect::<Result<_, _>>()?;
        let curve = curve_streams(cfg, manifest, &qa_streams);
        if cfg.train.eval_every > 0 {
            if curve.is_empty() {
                bail!(
                    "train.eval_every = {}: this run trains on no question stream ending in _train (streams {:?}, mixture {:?}), so there is no accuracy curve to draw",
                    cfg.train.eval_every,
                    cfg.train.streams,
                    manifest.mixture.iter().map(|m| m.stream.as_str()).collect::<Vec<_>>()
                );
            }
            info!(
                "accuracy curve every {} steps on the first {} questions of {}",
                cfg.train.eval_every,
                cfg.eval.curve_questions,
                curve
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        let run = t.run;
        let Evaluated {
            outcome,
            eval,
            own_orders,
            quantized,
            qa,
            routing,
        } = on_backend!(
            run.backend,
            train_eval(
                cfg,
                t.shape,
                windows,
                t.tokens_per_exposure,
                run.dir,
                run.resume,
                &self.bios,
                t.params,
                &qa_streams,
                &curve,
            )
        )?;
        let mut entries = serde_json::Map::new();
        entries.insert("bios".into(), serde_json::to_value(&eval)?);
        entries.insert("qa".into(), serde_json::to_value(&qa)?);
        entries.insert(
            "quantized".into(),
            quantized
                .iter()
                .map(|(q, e)| Ok((q.name().to_string(), serde_json::to_value(e)?)))
                .collect::<Result<serde_json::Map<_, _>>>()?
                .into(),
        );
        let mut table = render_table(run.title, &eval, outcome.exposures);
        if let Some(own) = &own_orders {
            entries.insert(OWN_ORDERS_KEY.into(), serde_json::to_value(own)?);
            table.push('\n');
            table.push_str(&render_table(
                &own_orders_title(run.title),
                own,
                outcome.exposures,
            ));
        }
        table.push_str(&render_qa(&qa));
        add_routing(routing.as_ref(), &mut entries, &mut table)?;
        for (q, e) in &quantized {
            table.push_str(&format!(
                "\n{:<36}{:.0} bits, R = {:.4} (p1 {:.3}, p2 {:.3})",
                format!("quantized {}", q.name()),
                e.bits,
                e.capacity_ratio,
                e.loss_name,
                e.loss_value
            ));
        }
        Ok(Evaluation {
            outcome,
            entries,
            table,
        })
    }
}

/// How a corpus run is evaluated.
enum CorpusCheck<'a> {
    /// Loss against the exact entropy, on `docs` (held out, or the training set for memorization).
    Entropy {
        docs: &'a [Vec<u32>],
        entropy: f64,
        /// Σ −log2 p(token) of `docs` under the source, when known.
        surprisal: Option<f64>,
        memorization: bool,
        /// Validation documents and their surprisal under the source (Zipf, Markov, facts): with
        /// `train.eval_every`, the excess on them and on `docs` is measured while training, for early stopping.
        validation: Option<(&'a [Vec<u32>], f64)>,
        /// The positions scored (facts: the value tokens; otherwise every token).
        at: Positions,
        /// Facts: whether each scored position of `docs` (in order) is a fact whose key the training set holds.
        seen: Option<&'a [bool]>,
        /// Facts: the value loss under the key law itself ([`ExpectedCheck`]).
        expected: Option<&'a ExpectedCheck>,
    },
    /// Bits of knowledge (Def. 4.1).
    BioD(&'a BioD),
}

enum CorpusResult {
    Entropy(CorpusEval, Option<EarlyStopping>, Option<FactsSplit>),
    BioD(BioDEval),
}

/// A facts run's held-out value loss split by whether the fact's key occurs in the training set (bits/fact).
#[derive(Clone, Debug, serde::Serialize)]
struct FactsSplit {
    /// At the end of training.
    seen_bits_per_fact: f64,
    unseen_bits_per_fact: f64,
    /// At the early-stopping step (when the run stopped early).
    seen_bits_per_fact_at_best: Option<f64>,
    unseen_bits_per_fact_at_best: Option<f64>,
    #[serde(flatten)]
    expected: Option<ExpectedValueLoss>,
}

/// Facts: how many of the most frequent facts the expected value loss scores one by one, and how many facts it
/// draws from the ranks past them.
const EXPECTED_TOP_RANKS: usize = 16_384;
const EXPECTED_TAIL_SAMPLES: usize = 1024;
/// The tail samples' stream index under `Purpose::EvalSampling`.
const EXPECTED_TAIL_STREAM: u64 = 0x7461_696c;

/// A facts run's value loss under the key law itself rather than on a sample of documents: each of the `top` most
/// frequent facts scored once (a document of that fact alone), weighted by its probability p_k, plus the mass of
/// the other ranks times the mean cost of facts drawn from the law past `top`. Given the model it is fixed up to
/// the tail's share (~0.6% of the mass at K = 2^20, s = 1.5), and it is the same facts whatever the training set's
/// size, so runs on different data or of different widths compare without the held-out sample's noise (a
/// held-out sample of 2,048 facts has ~120 facts past a small model's capacity: ±9%).
struct ExpectedCheck {
    /// One document a fact: the `top` most frequent in rank order, then the tail's samples.
    docs: Vec<Vec<u32>>,
    /// Each document's weight: p_k for the top ranks, the tail's mass over the samples for the others (Σ = 1).
    weights: Vec<f64>,
    top: usize,
    tail_mass: f64,
    /// M·log2 V.
    value_bits: f64,
}

impl ExpectedCheck {
    fn new(f: &physlab_generators::facts::Facts, seed: u64) -> Self {
        let c = &f.config;
        let probs = zipf_probabilities(c.keys, c.exponent);
        let top = c.keys.min(EXPECTED_TOP_RANKS);
        let fact = |rank: u64| {
            let mut v = Vec::with_capacity(c.fact_tokens());
            f.key(rank, &mut v);
            f.value(rank, &mut v);
            v
        };
        let mut docs: Vec<Vec<u32>> = (0..top as u64).map(fact).collect();
        let mut weights = probs[..top].to_vec();
        let tail_mass: f64 = probs[top..].iter().sum();
        if top < c.keys {
            let table = AliasTable::new(&probs[top..]);
            let mut rng = stream(seed, Purpose::EvalSampling, EXPECTED_TAIL_STREAM);
            for _ in 0..EXPECTED_TAIL_SAMPLES {
                docs.push(fact((top + table.sample(&mut rng)) as u64));
                weights.push(tail_mass / EXPECTED_TAIL_SAMPLES as f64);
            }
        }
        ExpectedCheck {
            docs,
            weights,
            top,
            tail_mass,
            value_bits: c.value_bits(),
        }
    }

    /// Each document's value cost (bits), in order.
    fn costs<B: physlab_trainer::kernels::Kernels>(
        &self,
        model: &Gpt<B>,
        at: Positions,
        context: usize,
        batch: usize,
        device: &B::Device,
    ) -> Vec<f64> {
        documents_nll_bits_scored(model, &self.docs, at, context, batch, device)
            .iter()
            .map(|units| units.iter().sum())
            .collect()
    }
}

/// eval.json `facts.expected_*` and `facts.stored_*` ([`ExpectedCheck`]).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
struct ExpectedValueLoss {
    /// Σ_k p_k · cost_k: the value loss of a fact drawn from the key law (bits/fact), at the end of training.
    expected_value_bits_per_fact: f64,
    /// The same at the early-stopping step (from the curve), when the run evaluated while training.
    expected_value_bits_per_fact_at_best: Option<f64>,
    /// The ranks scored one by one, and the probability mass past them.
    expected_top_ranks: usize,
    expected_tail_mass: f64,
    /// The mean cost of the facts drawn past the top ranks (none when the top ranks are all of them).
    expected_tail_bits_per_fact: Option<f64>,
    /// Σ over the top ranks of max(0, M·log2 V − cost_k): what the model holds about the most frequent facts'
    /// values, in bits, in facts' worth (÷ M·log2 V) and per parameter (÷ all parameters).
    stored_value_bits: f64,
    stored_facts: f64,
    stored_bits_per_param: f64,
    /// The quanta model's value loss for a model holding `stored_facts` facts' worth as the most frequent facts:
    /// M·log2 V × the probability mass past rank `stored_facts` (the fractional rank interpolated). Beside the
    /// measured loss it says whether the bits held are the frequent facts (equal) or spread thinner (measured above).
    quanta_value_bits_per_fact: f64,
}

/// The expected value loss and the bits held from the documents' costs (as [`ExpectedCheck::costs`] gives them).
fn expected_value_loss(check: &ExpectedCheck, costs: &[f64], params: f64) -> ExpectedValueLoss {
    let expected = check.weights.iter().zip(costs).map(|(w, c)| w * c).sum();
    let tail = &costs[check.top.min(costs.len())..];
    let stored: f64 = costs[..check.top.min(costs.len())]
        .iter()
        .map(|c| (check.value_bits - c).max(0.0))
        .sum();
    let stored_facts = stored / check.value_bits;
    let top = &check.weights[..check.top.min(check.weights.len())];
    let whole = (stored_facts.floor() as usize).min(top.len());
    let past: f64 = top[whole..].iter().sum::<f64>()
        - (stored_facts - whole as f64) * top.get(whole).copied().unwrap_or(0.0)
        + check.tail_mass;
    ExpectedValueLoss {
        expected_value_bits_per_fact: expected,
        expected_value_bits_per_fact_at_best: None,
        expected_top_ranks: check.top,
        expected_tail_mass: check.tail_mass,
        expected_tail_bits_per_fact: (!tail.is_empty())
            .then(|| tail.iter().sum::<f64>() / tail.len() as f64),
        stored_value_bits: stored,
        stored_facts,
        stored_bits_per_param: stored / params,
        quanta_value_bits_per_fact: check.value_bits * past.max(0.0),
    }
}

/// The mean of `nll` over the positions where `seen` is `want` (NaN when there are none).
fn split_mean(nll: &[f64], seen: &[bool], want: bool) -> f64 {
    let (sum, n) = nll
        .iter()
        .zip(seen)
        .filter(|(_, &s)| s == want)
        .fold((0.0, 0usize), |(a, n), (v, _)| (a + v, n + 1));
    if n == 0 {
        f64::NAN
    } else {
        sum / n as f64
    }
}

/// The excess loss of `model` on `docs` over their true surprisal `surprisal_bits` (bits/token).
fn excess_on<B: physlab_trainer::kernels::Kernels>(
    model: &Gpt<B>,
    docs: &[Vec<u32>],
    at: Positions,
    surprisal_bits: f64,
    context: usize,
    batch: usize,
    device: &B::Device,
) -> f64 {
    let (bits, tokens) = documents_nll_bits_at(model, docs, at, context, batch, device)
        .iter()
        .fold((0.0, 0), |(b, t), &(db, dt)| (b + db, t + dt));
    (bits - surprisal_bits) / tokens.max(1) as f64
}

/// Curve keys of the held-out excess (`train.eval_every` on a Zipf, Markov or facts run).
const CURVE_VALIDATION: &str = "validation/excess_bits_per_token";
const CURVE_TEST: &str = "held_out/excess_bits_per_token";
/// Facts: the test excess over the facts whose key the training set holds, and over the others.
const CURVE_SEEN: &str = "held_out_seen/excess_bits_per_token";
const CURVE_UNSEEN: &str = "held_out_unseen/excess_bits_per_token";
/// Facts: the value loss under the key law ([`ExpectedCheck`]).
const CURVE_EXPECTED: &str = "expected/value_bits_per_fact";

/// The lines of a run's curve.jsonl, parsed (an unparsable line is an error naming the file and line).
fn read_curve_lines(path: &Path) -> Result<Vec<serde_json::Value>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .enumerate()
        .map(|(i, line)| {
            serde_json::from_str(line)
                .with_context(|| format!("{} line {}: not JSON", path.display(), i + 1))
        })
        .collect()
}

/// The (step, validation, test) excess triples among curve.jsonl's lines.
fn excess_triples(lines: &[serde_json::Value]) -> Vec<(usize, f64, f64)> {
    lines
        .iter()
        .filter_map(|v| {
            let get = |k: &str| v.get(k).and_then(serde_json::Value::as_f64);
            Some((
                v.get("step").and_then(serde_json::Value::as_u64)? as usize,
                get(CURVE_VALIDATION)?,
                get(CURVE_TEST)?,
            ))
        })
        .collect()
}

/// Trains on a corpus of known content and evaluates it (`physlab_eval::corpus`, `physlab_eval::biod`).
#[allow(clippy::too_many_arguments)]
fn train_eval_corpus<B: physlab_trainer::kernels::TrainBackend>(
    cfg: &RunConfig,
    shape: GptShape,
    windows: &mut WindowMixer<'_>,
    tokens_per_exposure: f64,
    dir: &Path,
    resume: bool,
    kind: &str,
    check: &CorpusCheck<'_>,
    params: ParamCounts,
) -> Result<(TrainOutcome, CorpusResult, Option<Vec<LayerRouting>>)> {
    let device = B::Device::default();
    // Early stopping (Zipf / Markov with train.eval_every): the excess on the validation and the held-out test
    // documents, measured every eval_every steps; the report takes the test figure at the validation minimum.
    let held_out = match check {
        CorpusCheck::Entropy {
            docs,
            surprisal: Some(test_bits),
            validation: Some((vdocs, vbits)),
            memorization: false,
            at,
            ..
        } if cfg.train.eval_every > 0 => Some((*docs, *test_bits, *vdocs, *vbits, *at)),
        _ => None,
    };
    let (seen, expected) = match check {
        CorpusCheck::Entropy { seen, expected, .. } => (*seen, *expected),
        CorpusCheck::BioD(_) => (None, None),
    };
    let (context, batch) = (cfg.train.context, cfg.eval.batch);
    let mut curve = |_step: usize, model: &Gpt<B::InnerBackend>| -> Vec<(String, f64)> {
        let Some((docs, test_bits, vdocs, vbits, at)) = held_out else {
            return Vec::new();
        };
        let mut out = vec![(
            CURVE_VALIDATION.to_string(),
            excess_on(model, vdocs, at, vbits, context, batch, &device),
        )];
        match seen {
            // Facts: one pass over the test documents gives the excess and its split (their surprisal is 0).
            Some(seen) => {
                let nll: Vec<f64> =
                    documents_nll_bits_scored(model, docs, at, context, batch, &device).concat();
                out.push((
                    CURVE_TEST.to_string(),
                    (nll.iter().sum::<f64>() - test_bits) / nll.len().max(1) as f64,
                ));
                out.push((CURVE_SEEN.to_string(), split_mean(&nll, seen, true)));
                out.push((CURVE_UNSEEN.to_string(), split_mean(&nll, seen, false)));
                if let Some(x) = expected {
                    let costs = x.costs(model, at, context, batch, &device);
                    let e = expected_value_loss(x, &costs, params.total as f64);
                    out.push((CURVE_EXPECTED.to_string(), e.expected_value_bits_per_fact));
                }
            }
            None => out.push((
                CURVE_TEST.to_string(),
                excess_on(model, docs, at, test_bits, context, batch, &device),
            )),
        }
        out
    };
    let (model, outcome) = train_with_eval::<B>(
        &cfg.train,
        shape,
        windows,
        tokens_per_exposure,
        cfg.seed,
        dir,
        &device,
        resume,
        held_out
            .is_some()
            .then_some(&mut curve as &mut StepEval<'_, B::InnerBackend>),
    )?;
    // Evaluated with every token routed (a mixture of experts drops none; other models are unchanged).
    let model = model.without_token_dropping();
    info!(
        "trained {} steps ({:.1} passes) in {:.1}s: loss {:.3} → {:.3} nats/token, {:.0} tokens/s",
        outcome.steps,
        outcome.exposures,
        outcome.wall_s,
        outcome.first_loss,
        outcome.final_loss,
        outcome.tokens_per_s
    );
    let t = Instant::now();
    let (result, routing) = record_routing(|| -> Result<CorpusResult> {
        Ok(match check {
            CorpusCheck::Entropy {
                docs,
                entropy,
                surprisal,
                memorization,
                at,
                ..
            } => {
                // Scored once: the evaluation and (facts) its seen/unseen split read the same NLLs.
                let scored = documents_nll_bits_scored(&model, docs, *at, context, batch, &device);
                let e = corpus_eval_from_scores(
                    kind,
                    &scored,
                    *entropy,
                    *surprisal,
                    !memorization,
                    *memorization,
                    params,
                );
                info!(
                "scored {} documents ({} tokens) in {:.1}s: {:.4} bits/token, H = {:.4}, excess {:.4}",
                e.documents,
                e.tokens,
                t.elapsed().as_secs_f64(),
                e.loss_bits_per_token,
                e.entropy_bits_per_token,
                e.excess_bits_per_token
            );
                // curve.jsonl, read once: the early-stopping step and (facts) the split there.
                let curve_lines = if held_out.is_some() {
                    let path = dir.join(physlab_trainer::train::CURVE_FILE);
                    Some((read_curve_lines(&path)?, path))
                } else {
                    None
                };
                let stopped = match &curve_lines {
                    Some((lines, path)) => {
                        let es = early_stopping(&excess_triples(lines)).with_context(|| {
                            format!(
                                "{}: no held-out excess curve to stop early on",
                                path.display()
                            )
                        })?;
                        info!(
                        "early stopping: lowest validation excess {:.4} at step {} of {} ({} evaluations): held-out excess {:.4} there, {:.4} at the end{}",
                        es.validation_excess_bits_per_token,
                        es.best_step,
                        es.last_step,
                        es.evaluations,
                        es.excess_bits_per_token,
                        es.last_excess_bits_per_token,
                        if es.best_is_last { " (the best step is the last: training may not have reached its best point)" } else { "" }
                    );
                        Some(es)
                    }
                    None => None,
                };
                let split = seen.map(|seen| {
                    let nll: Vec<f64> = scored.concat();
                    // At the early-stopping step: the curve's split there (the step's last line wins).
                    let at_best = |key: &str| -> Option<f64> {
                        let best = stopped.as_ref()?.best_step as u64;
                        curve_lines
                            .as_ref()?
                            .0
                            .iter()
                            .filter(|v| {
                                v.get("step").and_then(serde_json::Value::as_u64) == Some(best)
                            })
                            .filter_map(|v| v.get(key).and_then(serde_json::Value::as_f64))
                            .next_back()
                    };
                    let expected = expected.map(|x| {
                        let t = Instant::now();
                        let costs = x.costs(&model, *at, context, batch, &device);
                        let e = ExpectedValueLoss {
                            expected_value_bits_per_fact_at_best: at_best(CURVE_EXPECTED),
                            ..expected_value_loss(x, &costs, params.total as f64)
                        };
                        info!(
                            "scored the {} most frequent facts once each (and {} past them) in {:.1}s: expected value loss {:.4} bits/fact under the key law",
                            x.top,
                            x.docs.len() - x.top,
                            t.elapsed().as_secs_f64(),
                            e.expected_value_bits_per_fact
                        );
                        e
                    });
                    FactsSplit {
                        seen_bits_per_fact: split_mean(&nll, seen, true),
                        unseen_bits_per_fact: split_mean(&nll, seen, false),
                        seen_bits_per_fact_at_best: at_best(CURVE_SEEN),
                        unseen_bits_per_fact_at_best: at_best(CURVE_UNSEEN),
                        expected,
                    }
                });
                CorpusResult::Entropy(e, stopped, split)
            }
            CorpusCheck::BioD(data) => {
                let e =
                    evaluate_biod::<B::InnerBackend>(&model, data, params, cfg.eval.batch, &device);
                info!(
                    "evaluated {} people in {:.1}s: {:.0} bits, R = {:.4}",
                    e.people,
                    t.elapsed().as_secs_f64(),
                    e.bits,
                    e.capacity_ratio
                );
                CorpusResult::BioD(e)
            }
        })
    });
    let routing = routing_of(&model, &routing, cfg.model.capacity_factor);
    Ok((outcome, result?, routing))
}

/// Documents scored on held-out data for Zipf and Markov corpora: fresh samples past the training set.
const HELD_OUT_DOCUMENTS: usize = 1024;
/// Validation documents for early stopping (Zipf and Markov with `train.eval_every`): fresh samples past the
/// held-out test documents.
const VALIDATION_DOCUMENTS: usize = 512;
/// eval.json's key for the early-stopping figure ([`EarlyStopping`]).
pub const EARLY_STOPPING_KEY: &str = "early_stopping";

/// What the held-out facts of a facts corpus are, against its training set: the quanta model's prediction is
/// that the value loss is about `unseen_fraction` × M·log2 V when every seen fact is learned.
#[derive(Clone, Debug, serde::Serialize)]
struct FactsHeldOut {
    /// Facts in the training set, and their distinct keys.
    training_facts: u64,
    distinct_training_keys: u64,
    /// Held-out facts scored.
    held_out_facts: u64,
    /// Share of the held-out facts whose key never occurs in the training set (the unseen probability mass,
    /// measured on this sample).
    unseen_fraction: f64,
    /// Share whose key occurs exactly once in the training set.
    seen_once_fraction: f64,
    /// M·log2 V: a value's cost to a model that never saw its key.
    value_bits: f64,
    /// unseen_fraction × value_bits: the value loss of a model that knows every seen fact and nothing else.
    unseen_value_bits_per_fact: f64,
}

/// A corpus run: Zipf, Markov or uniform tokens evaluated against their exact entropy (uniform: memorization of the
/// training set), facts evaluated on their value tokens, or bioD evaluated in bits of knowledge.
struct CorpusRun<'c> {
    cfg: &'c RunConfig,
    dc: &'c DataConfig,
    corpus: Box<dyn Corpus>,
    biod: Option<BioD>,
    /// The documents scored: the training set (uniform) or held-out documents (Zipf, Markov); none for bioD.
    eval_docs: Vec<Vec<u32>>,
    /// Σ −log2 p(token) of `eval_docs` under the source, where known (Zipf, Markov).
    surprisal: Option<f64>,
    /// Validation documents for early stopping and their surprisal (Zipf, Markov with `train.eval_every`).
    validation: Option<(Vec<Vec<u32>>, f64)>,
    /// The positions scored (facts: the value tokens).
    at: Positions,
    /// Facts: the held-out sample against the training set.
    facts: Option<FactsHeldOut>,
    /// Facts: whether each held-out fact (in document and position order) has a key the training set holds.
    test_seen: Option<Vec<bool>>,
    /// Facts: the value loss under the key law.
    expected: Option<ExpectedCheck>,
    built: Instant,
}

impl<'c> CorpusRun<'c> {
    fn new(cfg: &'c RunConfig, dc: &'c DataConfig) -> Result<Self> {
        let built = Instant::now();
        let corpus = dc.build(cfg.seed)?;
        let (docs, _, _) = corpus_size(dc);
        let biod = match dc {
            DataConfig::BioD(c) => Some(BioD::build(c, cfg.seed)?),
            _ => None,
        };
        // Uniform: the training set itself (memorization). Zipf / Markov: held-out documents, with their own
        // surprisal under the source (each token's true probability is known).
        let mut validation = None;
        let (mut at, mut facts, mut test_seen, mut expected) = (Positions::ALL, None, None, None);
        let (eval_docs, surprisal): (Vec<Vec<u32>>, Option<f64>) = match dc {
            DataConfig::Facts(c) => {
                // Held-out and validation documents past the training set; only value tokens are scored, and a
                // value is certain given its key, so their surprisal under the source is 0.
                let f = physlab_generators::facts::Facts::build(c, cfg.seed)?;
                let render = |from: usize, to: usize| -> Vec<Vec<u32>> {
                    (from as u64..to as u64)
                        .map(|i| {
                            let mut v = Vec::new();
                            f.render_document(i, &mut v);
                            v
                        })
                        .collect()
                };
                let test_end = docs + HELD_OUT_DOCUMENTS;
                if cfg.train.eval_every > 0 {
                    validation = Some((render(test_end, test_end + VALIDATION_DOCUMENTS), 0.0));
                }
                // A fact's value, its M tokens summed, is one scored unit: the figures are per fact.
                at = Positions {
                    period: c.fact_tokens(),
                    offset: c.key_tokens,
                    span: c.value_tokens,
                };
                let counts = f.key_counts(docs as u64);
                let (mut n, mut unseen, mut once) = (0u64, 0u64, 0u64);
                let mut seen = Vec::new();
                for d in docs..test_end {
                    for r in f.document_ranks(d as u64) {
                        n += 1;
                        seen.push(counts.contains_key(&r));
                        match counts.get(&r) {
                            None => unseen += 1,
                            Some(1) => once += 1,
                            _ => {}
                        }
                    }
                }
                test_seen = Some(seen);
                expected = Some(ExpectedCheck::new(&f, cfg.seed));
                let unseen_fraction = unseen as f64 / n.max(1) as f64;
                facts = Some(FactsHeldOut {
                    training_facts: docs as u64 * c.facts_per_document as u64,
                    distinct_training_keys: counts.len() as u64,
                    held_out_facts: n,
                    unseen_fraction,
                    seen_once_fraction: once as f64 / n.max(1) as f64,
                    value_bits: c.value_bits(),
                    unseen_value_bits_per_fact: unseen_fraction * c.value_bits(),
                });
                (render(docs, test_end), Some(0.0))
            }
            DataConfig::Uniform(c) => {
                let u = Uniform::build(c, cfg.seed)?;
                let docs = (0..docs as u64)
                    .map(|i| {
                        let mut v = Vec::new();
                        u.render_sequence(i, &mut v);
                        v
                    })
                    .collect();
                (docs, None)
            }
            DataConfig::Zipf(c) | DataConfig::Markov(c) => {
                let z = Zipf::build(c, cfg.seed)?;
                // Documents i in [from, to) with their total surprisal under the source.
                let sample = |from: usize, to: usize| -> (Vec<Vec<u32>>, f64) {
                    let docs: Vec<Vec<u32>> = (from as u64..to as u64)
                        .map(|i| {
                            let mut v = Vec::new();
                            z.render_document(i, &mut v);
                            v
                        })
                        .collect();
                    let bits = docs
                        .iter()
                        .map(|d| z.surprisal_bits(d).iter().sum::<f64>())
                        .sum::<f64>();
                    (docs, bits)
                };
                let test_end = docs + HELD_OUT_DOCUMENTS;
                if cfg.train.eval_every > 0 {
                    validation = Some(sample(test_end, test_end + VALIDATION_DOCUMENTS));
                }
                let (docs, bits) = sample(docs, test_end);
                (docs, Some(bits))
            }
            DataConfig::BioD(_) => (Vec::new(), None),
            DataConfig::BioS(_) => {
                bail!("corpus.kind {}: not a corpus run", dc.kind())
            }
        };
        Ok(CorpusRun {
            cfg,
            dc,
            corpus,
            biod,
            eval_docs,
            surprisal,
            validation,
            at,
            facts,
            test_seen,
            expected,
            built,
        })
    }
}

impl Pipeline for CorpusRun<'_> {
    fn corpus(&self) -> &dyn Corpus {
        self.corpus.as_ref()
    }

    fn data(&self, run: &Run<'_>) -> Result<Dataset> {
        let writer = format!("write_corpus/{CORPUS_SHARD_DOCUMENTS}");
        let dataset = open_or_write(
            run.dir,
            run.resuming,
            self.corpus.as_ref(),
            &writer,
            |data_dir| {
                write_corpus(
                    self.corpus.as_ref(),
                    data_dir,
                    CORPUS_SHARD_DOCUMENTS,
                    |pr| info!("generated {}/{} documents", pr.done, pr.total),
                )?;
                Ok(())
            },
        )?;
        let manifest = &dataset.manifest;
        let entropy = manifest.fact("entropy_bits_per_token").unwrap_or(f64::NAN);
        // bioD's content is counted in bits of knowledge (perfect-recall bits), not as an entropy rate.
        let content = if entropy.is_finite() {
            format!("H = {entropy:.4} bits/token")
        } else {
            format!(
                "perfect-recall bits {:.0}",
                manifest.fact("perfect_recall_bits").unwrap_or(f64::NAN)
            )
        };
        info!(
            "data: {} corpus, {} documents, {} tokens, vocab {} ({} used), {content}, in {:.1}s",
            self.dc.kind(),
            corpus_size(self.dc).0,
            manifest.exposure.tokens,
            manifest.vocab_size,
            manifest.used_vocab,
            self.built.elapsed().as_secs_f64()
        );
        Ok(dataset)
    }

    fn train_eval(&self, t: &Training<'_>, windows: &mut WindowMixer<'_>) -> Result<Evaluation> {
        let (run, dc) = (t.run, self.dc);
        let check = match &self.biod {
            Some(b) => CorpusCheck::BioD(b),
            None => CorpusCheck::Entropy {
                docs: &self.eval_docs,
                // Facts: the value tokens scored carry no entropy given their keys.
                entropy: if self.facts.is_some() {
                    0.0
                } else {
                    t.dataset
                        .manifest
                        .fact("entropy_bits_per_token")
                        .unwrap_or(f64::NAN)
                },
                surprisal: self.surprisal,
                memorization: matches!(dc, DataConfig::Uniform(_)),
                validation: self.validation.as_ref().map(|(d, b)| (d.as_slice(), *b)),
                at: self.at,
                seen: self.test_seen.as_deref(),
                expected: self.expected.as_ref(),
            },
        };
        let (outcome, e, routing) = on_backend!(
            run.backend,
            train_eval_corpus(
                self.cfg,
                t.shape,
                windows,
                t.tokens_per_exposure,
                run.dir,
                run.resume,
                dc.kind(),
                &check,
                t.params,
            )
        )?;
        let (key, value, table) = match &e {
            CorpusResult::Entropy(c, _, _) => (
                "corpus",
                serde_json::to_value(c)?,
                render_corpus(run.title, c, outcome.exposures),
            ),
            CorpusResult::BioD(b) => (
                "biod",
                serde_json::to_value(b)?,
                render_biod(run.title, b, outcome.exposures),
            ),
        };
        let (docs, tokens_per_doc, _) = corpus_size(dc);
        let mut entries = serde_json::Map::new();
        entries.insert(key.into(), value);
        let mut table = table;
        if let Some(f) = &self.facts {
            let mut v = serde_json::to_value(f)?;
            if let (CorpusResult::Entropy(_, _, Some(split)), Some(m)) = (&e, v.as_object_mut()) {
                if let serde_json::Value::Object(sp) = serde_json::to_value(split)? {
                    m.extend(sp);
                }
                table.push_str(&format!(
                    "facts: value loss {:.4} bits/fact on facts whose key the training set holds, {:.4} on the others (M·log2 V = {:.3}){}\n",
                    split.seen_bits_per_fact,
                    split.unseen_bits_per_fact,
                    f.value_bits,
                    match (split.seen_bits_per_fact_at_best, split.unseen_bits_per_fact_at_best) {
                        (Some(a), Some(b)) => format!("; at the early-stopping step {a:.4} and {b:.4}"),
                        _ => String::new(),
                    }
                ));
                if let Some(x) = &split.expected {
                    table.push_str(&format!(
                        "facts: value loss under the key law {:.4} bits/fact{} (the {} most frequent facts scored once each, p_k-weighted; the {:.3}% of the mass past them at {}); the model holds {:.0} bits of those facts' values: {:.1} facts' worth, {:.3} bits/param; held as the most frequent facts they would leave {:.4} bits/fact (the quanta model)\n",
                        x.expected_value_bits_per_fact,
                        match x.expected_value_bits_per_fact_at_best {
                            Some(b) => format!(" ({b:.4} at the early-stopping step)"),
                            None => String::new(),
                        },
                        x.expected_top_ranks,
                        100.0 * x.expected_tail_mass,
                        match x.expected_tail_bits_per_fact {
                            Some(t) => format!("{t:.2} bits/fact over {EXPECTED_TAIL_SAMPLES} drawn from it"),
                            None => "nothing: there is none".into(),
                        },
                        x.stored_value_bits,
                        x.stored_facts,
                        x.stored_bits_per_param,
                        x.quanta_value_bits_per_fact
                    ));
                }
            }
            entries.insert("facts".into(), v);
            table.push_str(&format!(
                "facts: {} training facts ({} distinct keys); of {} held-out facts {:.2}% have a key never seen in training, {:.2}% one seen once: a model that knows every seen fact and nothing else scores {:.4} bits/fact on the values (M·log2 V = {:.3})\n",
                f.training_facts,
                f.distinct_training_keys,
                f.held_out_facts,
                100.0 * f.unseen_fraction,
                100.0 * f.seen_once_fraction,
                f.unseen_value_bits_per_fact,
                f.value_bits
            ));
        }
        if let CorpusResult::Entropy(_, Some(es), _) = &e {
            entries.insert(EARLY_STOPPING_KEY.into(), serde_json::to_value(es)?);
            table.push_str(&format!(
                "\nearly stopping: held-out excess {:.4} bits/token at step {} (lowest validation excess, {:.4}; {} evaluations), {:.4} at the last step {}{}\n",
                es.excess_bits_per_token,
                es.best_step,
                es.validation_excess_bits_per_token,
                es.evaluations,
                es.last_excess_bits_per_token,
                es.last_step,
                if es.best_is_last { " (the best step is the last)" } else { "" }
            ));
        }
        add_routing(routing.as_ref(), &mut entries, &mut table)?;
        entries.insert(
            "data_tokens".into(),
            (docs as f64 * tokens_per_doc as f64).into(),
        );
        Ok(Evaluation {
            outcome,
            entries,
            table,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use physlab_generators::BioSConfig;

    fn bios(seed: u64) -> BioS {
        BioS::build(
            &BioSConfig {
                people: 20,
                ..BioSConfig::default()
            },
            seed,
        )
        .unwrap()
    }

    /// The expected value loss weighs each cost by its document's weight, the bits held count only the top ranks
    /// and only what a cost leaves of M·log2 V (hand numbers: three top facts of weights 0.5, 0.3, 0.1 costing 0,
    /// 2 and 7 bits of 6; two tail facts of weight 0.05 costing 6 and 8).
    #[test]
    fn the_expected_value_loss_weighs_the_costs_and_counts_the_top_facts_held() {
        let check = ExpectedCheck {
            docs: vec![Vec::new(); 5],
            weights: vec![0.5, 0.3, 0.1, 0.05, 0.05],
            top: 3,
            tail_mass: 0.1,
            value_bits: 6.0,
        };
        let e = expected_value_loss(&check, &[0.0, 2.0, 7.0, 6.0, 8.0], 5.0);
        assert!(
            (e.expected_value_bits_per_fact - 2.0).abs() < 1e-12,
            "{e:?}"
        );
        assert_eq!(e.expected_tail_bits_per_fact, Some(7.0));
        assert!((e.stored_value_bits - 10.0).abs() < 1e-12, "{e:?}");
        assert!((e.stored_facts - 10.0 / 6.0).abs() < 1e-12, "{e:?}");
        assert!((e.stored_bits_per_param - 2.0).abs() < 1e-12, "{e:?}");
        assert_eq!((e.expected_top_ranks, e.expected_tail_mass), (3, 0.1));
        // 10/6 facts' worth as the most frequent: the mass past rank 1.667 is 0.3 + 0.1 − 0.667 · 0.3 + 0.1 = 0.3.
        assert!(
            (e.quanta_value_bits_per_fact - 6.0 * 0.3).abs() < 1e-12,
            "{e:?}"
        );
        // No tail: no tail figure.
        let all = ExpectedCheck {
            docs: vec![Vec::new(); 2],
            weights: vec![0.75, 0.25],
            top: 2,
            tail_mass: 0.0,
            value_bits: 6.0,
        };
        let e = expected_value_loss(&all, &[1.0, 3.0], 1.0);
        assert_eq!(e.expected_tail_bits_per_fact, None);
        assert!((e.expected_value_bits_per_fact - 1.5).abs() < 1e-12);
    }

    /// The expected value loss's documents: the top ranks are the facts of ranks 0, 1, … in order (key and value as
    /// the generator renders them), weighted by p_k; the tail's samples are facts past the top ranks, weighted by
    /// the tail's mass over their number; the weights sum to 1. With K at most the top ranks there is no tail.
    #[test]
    fn the_expected_check_scores_the_top_ranks_once_and_samples_the_tail() {
        use physlab_generators::facts::{Facts, FactsConfig};
        let c = FactsConfig {
            keys: 20_000,
            key_tokens: 3,
            key_alphabet: 30,
            values: 7,
            value_tokens: 2,
            documents: 10,
            facts_per_document: 4,
            ..FactsConfig::default()
        };
        let f = Facts::build(&c, 3).unwrap();
        let x = ExpectedCheck::new(&f, 3);
        assert_eq!(x.top, EXPECTED_TOP_RANKS);
        assert_eq!(x.docs.len(), EXPECTED_TOP_RANKS + EXPECTED_TAIL_SAMPLES);
        let probs = zipf_probabilities(c.keys, c.exponent);
        for r in [0usize, 1, 77, EXPECTED_TOP_RANKS - 1] {
            let mut v = Vec::new();
            f.key(r as u64, &mut v);
            f.value(r as u64, &mut v);
            assert_eq!(x.docs[r], v, "rank {r}");
            assert_eq!(x.weights[r], probs[r]);
        }
        let tail: f64 = probs[EXPECTED_TOP_RANKS..].iter().sum();
        assert!((x.tail_mass - tail).abs() < 1e-15 && tail > 0.0);
        assert!((x.weights.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        let top_keys: std::collections::HashSet<&[u32]> =
            x.docs[..x.top].iter().map(|d| &d[..3]).collect();
        assert!(x.docs[x.top..]
            .iter()
            .all(|d| d.len() == 5 && !top_keys.contains(&d[..3])));
        // The same seed draws the same tail.
        assert_eq!(ExpectedCheck::new(&f, 3).docs, x.docs);
        let small = Facts::build(&FactsConfig { keys: 300, ..c }, 3).unwrap();
        let x = ExpectedCheck::new(&small, 3);
        assert_eq!((x.top, x.docs.len(), x.tail_mass), (300, 300, 0.0));
    }

    /// The dry run's expected distinct keys of a facts corpus, Σ_k 1 − (1 − p_k)^n, agrees with what the generator
    /// draws: the mean over 40 seeds of the distinct keys among 500 facts is within 4 standard errors of it.
    #[test]
    fn the_expected_distinct_keys_match_the_generator() {
        use physlab_generators::facts::{Facts, FactsConfig};
        let c = FactsConfig {
            keys: 500,
            key_tokens: 2,
            key_alphabet: 30,
            values: 7,
            documents: 50,
            facts_per_document: 10,
            ..FactsConfig::default()
        };
        let want = expected_distinct_keys(&c);
        let got: Vec<f64> = (0..40)
            .map(|seed| Facts::build(&c, seed).unwrap().key_counts(50).len() as f64)
            .collect();
        let mean = got.iter().sum::<f64>() / got.len() as f64;
        let var = got.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (got.len() - 1) as f64;
        let se = (var / got.len() as f64).sqrt();
        assert!(
            (mean - want).abs() < 4.0 * se.max(0.5),
            "{mean} ± {se} vs {want}"
        );
        assert!(want > 50.0 && want < 500.0, "{want}");
    }

    /// A resumed run of an older build reuses its own `data/`, but one of another seed found there (copied in
    /// from another run) is moved aside and this run's is taken from the shared store: it once resumed on the
    /// other seed's data ("reusing the dataset").
    #[test]
    fn a_resumed_run_never_reuses_the_dataset_of_another_recipe() {
        let d = tempfile::tempdir().unwrap();
        let run = d.path().join("exp/point/s0");
        std::fs::create_dir_all(&run).unwrap();
        let (s0, s1) = (bios(0), bios(1));
        s1.write(&run.join("data"), |_| {}).unwrap();
        let written = std::cell::Cell::new(0);
        let gen = |dir: &Path| {
            written.set(written.get() + 1);
            s0.write(dir, |_| {})?;
            Ok(())
        };
        let ds = open_or_write(&run, true, &s0, "w", gen).unwrap();
        assert_eq!(written.get(), 1);
        assert_eq!(ds.manifest.seed, 0);
        let aside: Vec<_> = std::fs::read_dir(&run)
            .unwrap()
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("data.incomplete-")
            })
            .collect();
        assert_eq!(aside.len(), 1, "the other dataset is kept, aside");
        assert_eq!(
            run_data_dir(&run).unwrap(),
            run.join("../../../.datasets").join(dataset_key(&s0, "w"))
        );
    }

    /// The shared store: a second run of the same data recipe (another point or experiment) opens the dataset
    /// the first wrote, without writing it again; a resumed run whose recorded dataset hash differs from the
    /// store's is refused.
    #[test]
    fn runs_of_one_data_recipe_share_one_dataset_written_once() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("e1/p/s0"), d.path().join("e2/q/s0"));
        let s0 = bios(0);
        let written = std::cell::Cell::new(0);
        let gen = |dir: &Path| {
            written.set(written.get() + 1);
            s0.write(dir, |_| {})?;
            Ok(())
        };
        for run in [&a, &b] {
            std::fs::create_dir_all(run).unwrap();
            open_or_write(run, false, &s0, "w", gen).unwrap();
        }
        assert_eq!(written.get(), 1, "written once");
        assert_eq!(
            run_data_dir(&a).unwrap().canonicalize().unwrap(),
            run_data_dir(&b).unwrap().canonicalize().unwrap()
        );
        let store = std::fs::read_dir(d.path().join(DATASETS))
            .unwrap()
            .flatten()
            .filter(|e| e.path().is_dir())
            .count();
        assert_eq!(store, 1);
        // Another recipe (seed 1) gets its own.
        let c = d.path().join("e1/p/s1");
        std::fs::create_dir_all(&c).unwrap();
        open_or_write(&c, false, &bios(1), "w", |dir: &Path| {
            bios(1).write(dir, |_| {})?;
            Ok(())
        })
        .unwrap();
        assert_ne!(run_data_dir(&c).unwrap(), run_data_dir(&a).unwrap());
        // A recorded hash that differs from the store's: refused on resume.
        let rec = a.join("dataset.json");
        let mut v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&rec).unwrap()).unwrap();
        v["dataset_hash"] = "0000".into();
        std::fs::write(&rec, serde_json::to_vec(&v).unwrap()).unwrap();
        let e = open_or_write(&a, true, &s0, "w", |_: &Path| Ok(()))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("this run was trained on dataset 0000"), "{e}");
    }
}
