//! TensorBoard event files beside metrics.jsonl (issue 16, item 7): every record's CRCs check, the training file
//! holds the file version and one scalar event per metrics line (train/loss equal to the line's loss as f32), and
//! the evaluation file the headline figures at the last step. (TensorBoard 2.21's own EventAccumulator read the
//! same files: README.)

use physlab_trainer::tensorboard::read_records;

mod common;

/// The protobuf bytes of `Value { tag, simple_value }`, as they stand inside a Summary.
fn value_bytes(tag: &str, v: f32) -> Vec<u8> {
    let mut b = vec![0x0a, tag.len() as u8];
    b.extend_from_slice(tag.as_bytes());
    b.push(0x15);
    b.extend_from_slice(&v.to_le_bytes());
    b
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn a_run_writes_tensorboard_events_of_its_metrics_and_evaluation() {
    let d = tempfile::tempdir().unwrap();
    let ws = d.path().join("ws.toml");
    std::fs::write(
        &ws,
        "[experiment.t]\ndata.people = 20\nmodel.preset = \"gpt2-1-1\"\nmodel.d_model = 16\ntrain.steps = 30\n\
         train.batch_size = 2\ntrain.context = 96\ntrain.log_every = 10\n",
    )
    .unwrap();
    let (ok, _, err) = common::physlab_in(Some(d.path()), &ws, &["run", "t", "--runs", "runs"]);
    assert!(ok, "{err}");
    let run = d.path().join("runs/t/base/s0");
    let files: Vec<_> = std::fs::read_dir(run.join("tb"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    let find = |what: &str| {
        files
            .iter()
            .find(|p| {
                p.to_string_lossy().contains("tfevents") && p.to_string_lossy().ends_with(what)
            })
            .unwrap_or_else(|| panic!("no {what} event file in {files:?}"))
    };
    let train = read_records(&std::fs::read(find(".train")).unwrap()).unwrap();
    assert!(contains(&train[0], b"brain.Event:2"));
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(train.len(), 1 + lines.len());
    for (rec, line) in train[1..].iter().zip(&lines) {
        let loss = line["loss"].as_f64().unwrap() as f32;
        assert!(contains(rec, &value_bytes("train/loss", loss)), "{line}");
    }
    let eval = read_records(&std::fs::read(find(".eval")).unwrap()).unwrap();
    let e: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("eval.json")).unwrap()).unwrap();
    let bits = e["bios"]["bits"].as_f64().unwrap() as f32;
    assert!(contains(&eval[1], &value_bytes("eval/bits", bits)));
}
