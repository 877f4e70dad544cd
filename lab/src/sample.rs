//! `physlab sample <run>`: a trained model's continuations with a chosen decoding strategy: of given prompts, or
//! of a question stream's prompts with the true answer beside each and the exact-match accuracy.

use std::path::Path;

use anyhow::{bail, Context, Result};
use physlab_eval::decode::{generate, model_next, Decoding};
use physlab_generators::corpus::Dataset;
use physlab_generators::tokenizer::EOT;
use physlab_trainer::train::load_checkpoint;
use physlab_trainer::Cpu;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

pub struct SampleArgs<'a> {
    pub run: &'a Path,
    pub prompts: &'a [String],
    pub questions: Option<&'a str>,
    pub n: usize,
    pub decoding: Decoding,
    pub max_tokens: usize,
    pub seed: u64,
}

pub fn sample(a: SampleArgs<'_>) -> Result<()> {
    let problems = a.decoding.problems();
    if !problems.is_empty() {
        bail!("{}", problems.join("; "));
    }
    let ckpt = a.run.join("checkpoints").join("final");
    let device = Default::default();
    let (model, shape) = load_checkpoint::<Cpu>(&ckpt, &device).with_context(|| {
        format!(
            "loading the model of {} (is the run finished?)",
            a.run.display()
        )
    })?;
    let model = model.without_token_dropping();
    let data = Dataset::open(&crate::run::run_data_dir(a.run)?)
        .with_context(|| format!("opening the dataset of {}", a.run.display()))?;
    let tok = &data.tokenizer;
    let mut next = model_next(&model, shape.context, &device);
    let mut rng = ChaCha8Rng::seed_from_u64(a.seed);
    println!(
        "decoding: {:?}; up to {} tokens, stopping at <eot>",
        a.decoding, a.max_tokens
    );

    // Every prompt starts after an <eot>, as a document does in training.
    let with_eot =
        |p: &[u32]| -> Vec<u32> { std::iter::once(EOT).chain(p.iter().copied()).collect() };
    if !a.prompts.is_empty() {
        for (i, text) in a.prompts.iter().enumerate() {
            let ids = tok
                .encode(text, &format!("--prompt {}", i + 1))
                .with_context(|| {
                    format!("the prompt {text:?} has a word outside the dataset's vocabulary")
                })?;
            let prompts = vec![with_eot(&ids); a.n.max(1)];
            let outs = generate(
                &mut next,
                &prompts,
                a.max_tokens,
                &a.decoding,
                Some(EOT),
                &mut rng,
            );
            println!("\nprompt: {text}");
            for (k, o) in outs.iter().enumerate() {
                println!("  [{}] {}", k + 1, tok.decode(o));
            }
        }
        return Ok(());
    }
    let stream_name = match a.questions {
        Some(s) => s.to_string(),
        None => {
            let q = data
                .manifest
                .streams
                .iter()
                .find(|s| s.prompts && s.materialized);
            match q {
                Some(s) => s.name.clone(),
                None => bail!(
                    "{} has no question stream: give prompts with --prompt \"...\"",
                    a.run.display()
                ),
            }
        }
    };
    let stream = data.load(&stream_name).with_context(|| {
        format!(
            "question stream {stream_name} (streams: {})",
            data.manifest.stream_names()
        )
    })?;
    let n = a.n.min(stream.documents());
    let mut hits = 0;
    println!(
        "\nquestions of {stream_name}: {n} of {}",
        stream.documents()
    );
    for i in 0..n {
        let Some((p, answer)) = stream.question(i) else {
            bail!("{stream_name} is not a question stream");
        };
        let out = generate(
            &mut next,
            &[with_eot(p)],
            a.max_tokens.max(answer.len()),
            &a.decoding,
            Some(EOT),
            &mut rng,
        )
        .remove(0);
        let ok = out.len() >= answer.len() && &out[..answer.len()] == answer;
        hits += ok as usize;
        println!(
            "{} {}\n    true: {}\n    model: {}",
            if ok { "✓" } else { "✗" },
            tok.decode(p),
            tok.decode(answer),
            tok.decode(&out)
        );
    }
    println!(
        "\nexact match: {hits}/{n} = {:.1}%",
        100.0 * hits as f64 / n.max(1) as f64
    );
    Ok(())
}
