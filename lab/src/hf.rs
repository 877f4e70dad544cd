//! `physlab export-model <run> --format hf --out DIR` and `physlab import-model DIR --out RUN_DIR` (issue 18): a
//! trained model as a folder Hugging Face `transformers` loads (`AutoModelForCausalLM`, `AutoTokenizer`), and back.
//! The tensor mapping is `physlab_trainer::hf`; this module reads the run, writes the files atomically, and puts
//! beside them physlab's own logits and greedy answers for a fixed batch (`physlab_logits.safetensors`), which
//! `bench/hf_check.py` reproduces with transformers.

use std::path::Path;

use anyhow::{bail, Context, Result};
use physlab_eval::decode::{generate, model_next, Decoding};
use physlab_generators::corpus::Dataset;
use physlab_generators::fsio::atomic_write;
use physlab_generators::tokenizer::EOT;
use physlab_trainer::burn::tensor::{Int, Tensor, TensorData};
use physlab_trainer::hf;
use physlab_trainer::train::{load_checkpoint, save_checkpoint};
use physlab_trainer::Cpu;
use rand::SeedableRng;
use serde_json::json;

/// Rows and tokens per row of the fixed batch whose logits are written beside an export.
pub const CHECK_ROWS: usize = 4;
pub const CHECK_TOKENS: usize = 64;
/// Questions (or biography continuations) answered greedily beside an export.
pub const CHECK_ANSWERS: usize = 4;
/// The tolerance `bench/hf_check.py` applies: max |Δlogit| / max |logit| in float32.
pub const CHECK_TOLERANCE: f64 = 1e-4;

/// Refuses an output folder that exists and is not an empty folder.
fn check_empty_out(out: &Path) -> Result<()> {
    match std::fs::read_dir(out) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                bail!(
                    "{} exists and is not empty: export-model writes only into a new or empty folder (nothing was written)",
                    out.display()
                );
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) if out.exists() => bail!(
            "{} exists and is not a folder export-model can write into: {e}",
            out.display()
        ),
        Err(e) => bail!("{}: {e}", out.display()),
    }
}

/// A question's prompt tokens and its answer tokens.
type QuestionPair = (Vec<u32>, Vec<u32>);

pub fn export_model(run: &Path, format: &str, out: &Path) -> Result<()> {
    if format != "hf" {
        bail!("--format {format:?}: the one format is hf (Hugging Face transformers)");
    }
    check_empty_out(out)?;
    let ckpt = run.join("checkpoints").join("final");
    let device = Default::default();
    let (model, shape) = load_checkpoint::<Cpu>(&ckpt, &device).with_context(|| {
        format!(
            "loading the model of {} (is the run finished?)",
            run.display()
        )
    })?;
    let arch = hf::hf_arch(&shape).map_err(|why| {
        anyhow::anyhow!("{}: cannot export to transformers: {why}", run.display())
    })?;
    let data = Dataset::open(&crate::run::run_data_dir(run)?)
        .with_context(|| format!("opening the dataset of {}", run.display()))?;
    let tok = &data.tokenizer;
    if tok.vocab_size() != shape.vocab_size {
        bail!(
            "{}: the dataset's vocabulary has {} words but the model {}",
            run.display(),
            tok.vocab_size(),
            shape.vocab_size
        );
    }
    let state: serde_json::Value = std::fs::read(ckpt.join("state.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(json!({}));
    let (arch2, tensors) = hf::to_hf_tensors(
        &shape,
        &hf::model_tensors(&model).map_err(anyhow::Error::msg)?,
    )
    .map_err(anyhow::Error::msg)?;
    debug_assert_eq!(arch, arch2);
    let physlab = json!({
        "family": shape.arch.family.name(),
        "rotary_dims": shape.rotary_dims,
        "step": state.get("step"),
        "tokens": state.get("tokens"),
        "exported_from": run.display().to_string(),
        "dataset_hash": data.manifest.dataset_hash,
        "physlab_version": env!("CARGO_PKG_VERSION"),
    });
    let config = hf::hf_config(&shape, arch, physlab);
    let generation = json!({
        "bos_token_id": EOT, "eos_token_id": EOT, "pad_token_id": EOT, "do_sample": false,
    });

    // The fixed batch: the first documents of the dataset's first stream, each after an <eot> as in training,
    // cut into CHECK_ROWS rows of min(context, CHECK_TOKENS) tokens.
    let model = model.without_token_dropping();
    let first = data
        .manifest
        .streams
        .iter()
        .find(|s| s.materialized)
        .context("the dataset has no stored stream")?
        .name
        .clone();
    let stream = data.load(&first)?;
    let t = shape.context.min(CHECK_TOKENS);
    let mut flat: Vec<u32> = Vec::new();
    for i in 0..stream.documents() {
        if flat.len() >= CHECK_ROWS * t {
            break;
        }
        flat.push(EOT);
        flat.extend_from_slice(stream.document(i));
    }
    let rows = (flat.len() / t).clamp(1, CHECK_ROWS);
    flat.resize(rows * t, EOT);
    let ids: Vec<i32> = flat.iter().map(|&x| x as i32).collect();
    let x = Tensor::<Cpu, 2, Int>::from_data(TensorData::new(ids, [rows, t]), &device);
    let logits: Vec<f32> = model.forward(x).into_data().iter::<f32>().collect();
    let input_ids: Vec<Vec<u32>> = flat.chunks(t).map(|c| c.to_vec()).collect();

    // Greedy answers: the first questions of the first question stream, else continuations of biographies.
    let mut next = model_next(&model, shape.context, &device);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let qstream = data
        .manifest
        .streams
        .iter()
        .find(|s| s.prompts && s.materialized)
        .map(|s| s.name.clone());
    let mut answers = Vec::new();
    let (source, pairs): (String, Vec<QuestionPair>) = match &qstream {
        Some(name) => {
            let qs = data.load(name)?;
            let pairs = (0..qs.documents().min(CHECK_ANSWERS))
                .filter_map(|i| qs.question(i).map(|(p, a)| (p.to_vec(), a.to_vec())))
                .collect();
            (name.clone(), pairs)
        }
        None => {
            let pairs = (0..stream.documents().min(CHECK_ANSWERS))
                .map(|i| {
                    let d = stream.document(i);
                    let cut = d.len().min(8);
                    (d[..cut].to_vec(), d[cut..d.len().min(cut + 8)].to_vec())
                })
                .collect();
            (format!("{first} (continuations)"), pairs)
        }
    };
    for (p, a) in pairs {
        let prompt: Vec<u32> = std::iter::once(EOT).chain(p.iter().copied()).collect();
        let steps = a.len().max(1);
        let got = generate(
            &mut next,
            std::slice::from_ref(&prompt),
            steps,
            &Decoding::Greedy,
            Some(EOT),
            &mut rng,
        )
        .remove(0);
        answers.push(json!({
            "prompt_ids": prompt,
            "prompt": tok.decode(&p),
            "true_answer": tok.decode(&a),
            "new_tokens": steps,
            "physlab_ids": got,
            "physlab_answer": tok.decode(&got),
            "correct": got.len() >= a.len() && got[..a.len()] == a[..],
        }));
    }
    let check = json!({
        "about": "physlab's own logits of `input_ids` (float32 [rows, T, vocab], CPU backend) and its greedy \
                  answers (stopping at <eot>), for bench/hf_check.py to reproduce with transformers",
        "input_ids": input_ids,
        "tolerance": {"max_abs_diff_over_max_abs_logit": CHECK_TOLERANCE},
        "answers_from": source,
        "answers": answers,
    });
    let check_text = serde_json::to_string(&check)?;
    let mut lt = hf::Tensors::new();
    lt.insert(
        "logits".into(),
        hf::Tensor32 {
            shape: vec![rows, t, shape.vocab_size],
            data: logits,
        },
    );
    let logits_file = hf::write_safetensors(&lt, &[("format", "pt"), ("physlab", &check_text)]);

    let mut files: Vec<(&str, Vec<u8>)> = vec![
        (
            "model.safetensors",
            hf::write_safetensors(&tensors, &[("format", "pt")]),
        ),
        ("config.json", serde_json::to_vec_pretty(&config)?),
        (
            "generation_config.json",
            serde_json::to_vec_pretty(&generation)?,
        ),
    ];
    files.extend(tok.hf_files(shape.context));
    files.push(("physlab_logits.safetensors", logits_file));
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    for (name, bytes) in &files {
        let p = out.join(name);
        atomic_write(&p, bytes).with_context(|| format!("writing {}", p.display()))?;
    }
    println!(
        "{} ({} {}-{}-{}) → {} as {} ({} tensors); tokenizer of {} words; physlab_logits.safetensors: {} × {} tokens, {} greedy answers from {}",
        run.display(),
        shape.arch.family.name(),
        shape.arch.family.name(),
        shape.n_layer,
        shape.n_head,
        out.display(),
        arch.class(),
        tensors.len(),
        tok.vocab_size(),
        rows,
        t,
        answers.len(),
        source
    );
    Ok(())
}

/// Reads a transformers folder written by [`export_model`] (or saved by transformers from one) into physlab's
/// shape and tensors.
pub fn read_hf_folder(
    dir: &Path,
) -> Result<(physlab_trainer::GptShape, hf::Tensors, serde_json::Value)> {
    let cpath = dir.join("config.json");
    let config: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&cpath).with_context(|| format!("reading {}", cpath.display()))?,
    )
    .with_context(|| format!("{}", cpath.display()))?;
    let (shape, _) =
        hf::shape_from_hf_config(&config).map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
    let wpath = dir.join("model.safetensors");
    let bytes = std::fs::read(&wpath).with_context(|| {
        format!(
            "reading {} (one unsharded safetensors file is what physlab imports)",
            wpath.display()
        )
    })?;
    let hf_tensors =
        hf::read_safetensors(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", wpath.display()))?;
    let tensors = hf::from_hf_tensors(&shape, &hf_tensors)
        .map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
    Ok((shape, tensors, config))
}

pub fn import_model(dir: &Path, out: &Path) -> Result<()> {
    let dst = out.join("checkpoints").join("final");
    if dst.exists() {
        bail!(
            "{} exists: import-model never replaces a checkpoint (nothing was written)",
            dst.display()
        );
    }
    let (shape, tensors, config) = read_hf_folder(dir)?;
    let device = Default::default();
    let model = hf::model_from_tensors::<Cpu>(&shape, &tensors, &device)
        .map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
    let meta = config.get("physlab");
    let num = |k: &str| {
        meta.and_then(|m| m.get(k))
            .and_then(|v| v.as_u64())
            .unwrap_or(0)
    };
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let written = save_checkpoint(&model, &shape, out, num("step") as usize, num("tokens"))?;
    // What physlab's loaders do with it.
    load_checkpoint::<Cpu>(&written, &device)?;
    println!(
        "{} → {} ({}-{}-{}, d = {}, vocab {}, {} tensors)",
        dir.display(),
        written.display(),
        shape.arch.family.name(),
        shape.n_layer,
        shape.n_head,
        shape.d_model,
        shape.vocab_size,
        tensors.len()
    );
    if !out.join("data").exists() {
        println!(
            "  (to sample or evaluate it, put the dataset it was trained on at {}: `physlab sample` reads the vocabulary there)",
            out.join("data").display()
        );
    }
    Ok(())
}
