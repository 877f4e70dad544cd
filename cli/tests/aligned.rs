//! `train.windows = "aligned"` end to end (issue 13): a bioS run and a bioD corpus run train on document-aligned
//! windows, say how one pass packs, and end at the exposures asked for; the dry run estimates the same budget.

mod common;
use common::{json, physlab_in};

const WORKSPACE: &str = r#"
[experiment.al]
data.people = 40
model.preset = "gpt2-1-1"
model.d_model = 32
train.exposures = 20
train.batch_size = 8
train.context = 96
train.warmup_steps = 5
train.log_every = 10
train.windows = "aligned"

[experiment.bdal]
corpus = { kind = "bioD", people = 60, attributes = 3, chunks = 2, values = 20, value_tokens = 2, vocab = 50 }
model.preset = "gpt2-1-1"
model.d_model = 32
train.exposures = 10
train.batch_size = 8
train.context = 96
train.warmup_steps = 2
train.log_every = 10
train.windows = "aligned"
"#;

#[test]
fn aligned_runs_pack_whole_documents_and_end_at_their_exposures() {
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().join("workspace.toml");
    std::fs::write(&ws, WORKSPACE).unwrap();
    let runs = dir.path().join("runs");
    let runs_s = runs.to_str().unwrap();
    for (exp, exposures) in [("al", 20.0), ("bdal", 10.0)] {
        let (ok, out, err) = physlab_in(None, &ws, &["validate", exp]);
        assert!(ok, "{out}{err}");
        let (ok, out, err) = physlab_in(None, &ws, &["run", exp, "--runs", runs_s]);
        assert!(ok, "{out}{err}");
        let log = format!("{out}{err}");
        let line = log
            .lines()
            .find(|l| l.contains("aligned windows: ") && l.contains(" fill "))
            .unwrap_or_else(|| panic!("no packing line in {log}"));
        assert!(line.contains("% text"), "{line}");
        assert!(!line.contains("are cut"), "{line}");
        let e = json(&runs.join(format!("{exp}/base/s0/eval.json")));
        let got = e["exposures"].as_f64().unwrap();
        // The budget is whole steps: it ends at most one step's windows past the exposures asked for.
        assert!(
            got >= exposures && got < exposures * 1.1,
            "{exp}: {got} exposures for {exposures}"
        );
        // The run folder records the windows it trained on (a resume or a rerun sees the same config).
        let resolved =
            std::fs::read_to_string(runs.join(format!("{exp}/base/s0/config.resolved.toml")))
                .unwrap();
        assert!(resolved.contains("windows = \"aligned\""), "{resolved}");
    }
}
