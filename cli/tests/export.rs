//! `physlab export --format parquet` (issue 18): the documents and the ground truth as Parquet, read back here with
//! the parquet crate's own reader (and by `datasets.load_dataset("parquet", …)`, see the README). Every stored
//! document is one row; its text is what the tokens decode to; a question's text is its prompt and answer; the
//! person column names the truth row the document is about (checked against the name in each question and
//! biography); a corpus without people leaves it null.

use std::path::Path;
use std::process::Command;

use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::{Field, Row};

fn physlab(cwd: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_physlab"))
        .current_dir(cwd)
        .args(["--workspace", "ws.toml"])
        .args(args)
        .output()
        .expect("runs the binary");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn rows(path: &Path) -> Vec<Row> {
    let r = SerializedFileReader::new(std::fs::File::open(path).unwrap()).unwrap();
    r.get_row_iter(None).unwrap().map(|r| r.unwrap()).collect()
}

fn field<'a>(row: &'a Row, name: &str) -> &'a Field {
    row.get_column_iter()
        .find(|(n, _)| n.as_str() == name)
        .map(|(_, f)| f)
        .unwrap_or_else(|| panic!("no column {name}"))
}

fn text(row: &Row, name: &str) -> Option<String> {
    match field(row, name) {
        Field::Str(s) => Some(s.clone()),
        Field::Null => None,
        other => panic!("{name}: {other:?}"),
    }
}

fn long(row: &Row, name: &str) -> Option<i64> {
    match field(row, name) {
        Field::Long(v) => Some(*v),
        Field::Null => None,
        other => panic!("{name}: {other:?}"),
    }
}

#[test]
fn parquet_export_holds_every_document_its_person_and_the_truth() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(
        d.path().join("ws.toml"),
        "[dataset.small]\npeople = 20\nmulti = 2\nqa.enabled = true\n\n[dataset.z]\nkind = \"zipf\"\nvocab = 64\ndocuments = 10\ndoc_tokens = 15\n",
    )
    .unwrap();
    for ds in ["small", "z"] {
        let (ok, out) = physlab(d.path(), &["generate", ds, "--out", ds, "--jsonl"]);
        assert!(ok, "{out}");
        let (ok, out) = physlab(d.path(), &["export", ds, "--format", "parquet"]);
        assert!(ok, "{out}");
    }
    // bioS: the same documents as the JSONL export, in order.
    let docs = rows(&d.path().join("small/parquet/documents.parquet"));
    let jsonl: Vec<serde_json::Value> = std::fs::read_to_string(d.path().join("small/text.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(docs.len(), jsonl.len());
    assert_eq!(
        docs.len(),
        20 * 2 + 20 * 6 / 2 + 20 * 6 / 2,
        "40 biographies and 120 questions"
    );
    let truth = rows(&d.path().join("small/parquet/truth.parquet"));
    assert_eq!(truth.len(), 20);
    let names: Vec<String> = truth.iter().map(|r| text(r, "name").unwrap()).collect();
    for (i, t) in truth.iter().enumerate() {
        assert_eq!(long(t, "id"), Some(i as i64));
    }
    for (r, j) in docs.iter().zip(&jsonl) {
        assert_eq!(text(r, "stream").as_deref(), j["stream"].as_str());
        assert_eq!(long(r, "doc"), j["doc"].as_i64());
        let t = text(r, "text").unwrap();
        assert_eq!(Some(t.as_str()), j["text"].as_str());
        let person = long(r, "person").expect("every bioS document has a person") as usize;
        assert!(
            t.contains(&names[person]),
            "{t} is not about {}",
            names[person]
        );
        match (text(r, "prompt"), text(r, "answer")) {
            (Some(p), Some(a)) => assert_eq!(format!("{p} {a}"), t),
            (None, None) => assert_eq!(text(r, "stream").as_deref(), Some("bio")),
            other => panic!("{other:?}"),
        }
    }
    // A Zipf corpus has no people: a null person column and no truth file.
    let z = rows(&d.path().join("z/parquet/documents.parquet"));
    assert_eq!(z.len(), 10);
    assert!(z.iter().all(|r| long(r, "person").is_none()));
    assert!(!d.path().join("z/parquet/truth.parquet").exists());
    // An existing export is replaced only with --force.
    let (ok, out) = physlab(d.path(), &["export", "small", "--format", "parquet"]);
    assert!(!ok && out.contains("--force"), "{out}");
    let (ok, out) = physlab(
        d.path(),
        &["export", "small", "--format", "parquet", "--force"],
    );
    assert!(ok, "{out}");
}
