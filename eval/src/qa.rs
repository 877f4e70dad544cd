//! Question answering by generation (Part 3.1): for every question document of a stream, the model decodes
//! greedily from the prompt (`… Answer :`) and the answer counts when its tokens are exactly the true answer's
//! (value and the closing `.`). Accuracy is reported per question kind — for the six bioS questions, per
//! attribute (document `i` asks about attribute `i mod 6`).

use physlab_trainer::kernels::Kernels;
use std::collections::BTreeMap;

use burn::tensor::{Int, Tensor, TensorData};
use physlab_generators::corpus::TokenStream;
use physlab_generators::tokenizer::EOT;
use physlab_trainer::model::Gpt;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct QaEval {
    pub stream: String,
    pub questions: usize,
    /// Exact-match accuracy over all questions.
    pub accuracy: f64,
    /// Exact-match accuracy per question kind (attribute name for the six bioS questions).
    pub per_kind: BTreeMap<String, f64>,
}

/// Greedy continuations of `prompts` (all of one length), `steps` tokens each, `batch` prompts per pass. The
/// model sees `<eot>` before each prompt, as a document start in training.
pub fn greedy<B: Kernels>(
    model: &Gpt<B>,
    prompts: &[Vec<u32>],
    steps: usize,
    batch: usize,
    device: &B::Device,
) -> Vec<Vec<u32>> {
    let mut out = Vec::with_capacity(prompts.len());
    for chunk in prompts.chunks(batch.max(1)) {
        let mut seqs: Vec<Vec<u32>> = chunk
            .iter()
            .map(|p| std::iter::once(EOT).chain(p.iter().copied()).collect())
            .collect();
        let plen = seqs[0].len();
        assert!(
            seqs.iter().all(|s| s.len() == plen),
            "one prompt length per call"
        );
        for _ in 0..steps {
            let t = seqs[0].len();
            let x: Vec<i32> = seqs.iter().flatten().map(|&v| v as i32).collect();
            let x = Tensor::<B, 2, Int>::from_data(TensorData::new(x, [seqs.len(), t]), device);
            let logits = model.forward(x); // [b, t, V]
            let [b, _, v] = logits.dims();
            let last = logits.narrow(1, t - 1, 1).reshape([b, v]);
            let next: Vec<i64> = last.argmax(1).into_data().iter::<i64>().collect();
            for (s, n) in seqs.iter_mut().zip(next) {
                s.push(n as u32);
            }
        }
        out.extend(seqs.into_iter().map(|s| s[plen..].to_vec()));
    }
    out
}

/// Exact-match QA accuracy on a question stream; `kind_of(i)` names the kind of question `i`.
pub fn evaluate_qa<B: Kernels>(
    model: &Gpt<B>,
    stream: &TokenStream,
    kind_of: impl Fn(usize) -> String,
    batch: usize,
    device: &B::Device,
) -> QaEval {
    // Group questions by prompt length (one forward shape per group).
    let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for i in 0..stream.documents() {
        let (p, _) = stream.question(i).expect("a question stream");
        groups.entry(p.len()).or_default().push(i);
    }
    let mut hits: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for ids in groups.values() {
        let prompts: Vec<Vec<u32>> = ids
            .iter()
            .map(|&i| stream.question(i).expect("question").0.to_vec())
            .collect();
        let longest = ids
            .iter()
            .map(|&i| stream.question(i).expect("question").1.len())
            .max()
            .unwrap_or(0);
        let gen = greedy(model, &prompts, longest, batch, device);
        for (&i, g) in ids.iter().zip(&gen) {
            let answer = stream.question(i).expect("question").1;
            let e = hits.entry(kind_of(i)).or_default();
            e.0 += (&g[..answer.len()] == answer) as usize;
            e.1 += 1;
        }
    }
    let (h, n) = hits.values().fold((0, 0), |(a, b), (h, n)| (a + h, b + n));
    QaEval {
        stream: stream.name.clone(),
        questions: n,
        accuracy: h as f64 / n.max(1) as f64,
        per_kind: hits
            .into_iter()
            .map(|(k, (h, n))| (k, h as f64 / n.max(1) as f64))
            .collect(),
    }
}

/// The table lines of QA results: one column per stream, one row per question kind (a kind a stream does not
/// ask shows `-`).
pub fn render_qa(evals: &[QaEval]) -> String {
    let mut s = String::new();
    if evals.is_empty() {
        return s;
    }
    let mut kinds: Vec<String> = evals
        .iter()
        .flat_map(|e| e.per_kind.keys().cloned())
        .collect();
    kinds.sort();
    kinds.dedup();
    let width = kinds.iter().map(String::len).max().unwrap_or(0).max(16) + 2;
    let col = evals
        .iter()
        .map(|e| e.stream.len())
        .max()
        .unwrap_or(0)
        .max(10)
        + 2;
    s.push_str(&format!("\n{:<width$}", "exact match (QA)"));
    for e in evals {
        s.push_str(&format!("{:>col$}", e.stream));
    }
    s.push('\n');
    for k in &kinds {
        s.push_str(&format!("{k:<width$}"));
        for e in evals {
            match e.per_kind.get(k) {
                Some(a) => s.push_str(&format!("{:>w$.1}%", 100.0 * a, w = col - 1)),
                None => s.push_str(&format!("{:>col$}", "-")),
            }
        }
        s.push('\n');
    }
    s.push_str(&format!("{:<width$}", "all"));
    for e in evals {
        s.push_str(&format!("{:>w$.1}%", 100.0 * e.accuracy, w = col - 1));
    }
    s.push('\n');
    s
}
