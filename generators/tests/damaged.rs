//! Hostile inputs (issue 17): a damaged dataset folder is an error naming the file and what is wrong, on one line;
//! never a panic, never an allocation sized by a damaged count. Each test is a case a tester found (the comment
//! says what the code before this fix did); `fuzz.rs` searches for more.

mod common;

use std::path::Path;

use physlab_generators::corpus::Dataset;
use physlab_generators::GenError;

/// The error's message is one line and names `file`.
fn names(err: &GenError, file: &str) -> String {
    let msg = err.to_string();
    assert!(!msg.contains('\n'), "more than one line: {msg}");
    assert!(msg.contains(file), "does not name {file}: {msg}");
    msg
}

fn open_err(dir: &Path) -> GenError {
    match Dataset::open(dir) {
        Ok(_) => panic!("a damaged dataset opened"),
        Err(e) => e,
    }
}

fn set_offset(dir: &Path, file: &str, slot: usize, value: u64) {
    let p = dir.join(file);
    let mut b = std::fs::read(&p).unwrap();
    b[slot * 8..slot * 8 + 8].copy_from_slice(&value.to_le_bytes());
    std::fs::write(&p, b).unwrap();
}

/// Case 1 (inspect = open + peek): an index offset of 2^40 made `peek` allocate 4 TB and abort; offsets that go
/// down made it slice `tokens[10..5]` and panic; a truncated or padded index went unnoticed by `peek`.
#[test]
fn a_damaged_index_is_an_error_not_a_panic_or_an_abort() {
    type Damage = Box<dyn Fn(&Path)>;
    let cases: Vec<(&str, Damage)> = vec![
        (
            "an offset of 2^40",
            Box::new(|d| set_offset(d, "bio-00000.idx", 3, 1 << 40)),
        ),
        (
            "offsets that go down",
            Box::new(|d| {
                set_offset(d, "bio-00000.idx", 1, 10);
                set_offset(d, "bio-00000.idx", 2, 5);
            }),
        ),
        (
            "a first offset that is not 0",
            Box::new(|d| set_offset(d, "bio-00000.idx", 0, 7)),
        ),
        (
            "a last offset short of the shard's tokens",
            Box::new(|d| set_offset(d, "bio-00000.idx", 256, 9)),
        ),
        (
            "u64::MAX everywhere",
            Box::new(|d| std::fs::write(d.join("bio-00000.idx"), vec![0xff; 257 * 8]).unwrap()),
        ),
        (
            "truncated",
            Box::new(|d| {
                let p = d.join("bio-00000.idx");
                let b = std::fs::read(&p).unwrap();
                std::fs::write(&p, &b[..b.len() / 2]).unwrap();
            }),
        ),
        (
            "garbage appended",
            Box::new(|d| {
                let p = d.join("bio-00000.idx");
                let mut b = std::fs::read(&p).unwrap();
                b.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8, 9]);
                std::fs::write(&p, b).unwrap();
            }),
        ),
    ];
    for (what, damage) in cases {
        let dir = tempfile::tempdir().unwrap();
        common::bios(dir.path());
        damage(dir.path());
        let ds = Dataset::open(dir.path()).unwrap();
        let peek = ds.peek("bio", 3).expect_err(what);
        let msg = names(&peek, "bio-00000.idx");
        println!("{what}: {msg}");
        names(&ds.load("bio").expect_err(what), "bio-00000.idx");
        names(&ds.verify().expect_err(what), "bio-00000.idx");
    }
}

/// Case 1, counts: a manifest whose counts promise 2^60 tokens made `load` reserve 4 EB up front (a capacity
/// overflow panic or an abort); the files' real sizes now bound every allocation.
#[test]
fn a_manifest_promising_huge_shards_is_an_error_not_an_allocation() {
    let dir = tempfile::tempdir().unwrap();
    common::bios(dir.path());
    common::edit_manifest(dir.path(), |m| {
        let s = &mut m["streams"][0];
        let extra = (1u64 << 60) - s["shards"][0]["tokens"].as_u64().unwrap();
        s["tokens"] = (s["tokens"].as_u64().unwrap() + extra).into();
        s["shards"][0]["tokens"] = (1u64 << 60).into();
    });
    let ds = Dataset::open(dir.path()).expect("the manifest is consistent");
    names(&ds.load("bio").unwrap_err(), "bio-00000.tok");
    names(&ds.peek("bio", 2).unwrap_err(), "bio-00000.tok");
}

/// Case 2: `peek` showed documents of a shard with a flipped byte; it now checks the shard it reads against the
/// manifest's sha256 (the only hash the format records per shard).
#[test]
fn peek_checks_the_shard_it_shows() {
    let dir = tempfile::tempdir().unwrap();
    common::bios(dir.path());
    let p = dir.path().join("bio-00000.tok");
    let mut b = std::fs::read(&p).unwrap();
    b[5] ^= 0x10;
    std::fs::write(&p, b).unwrap();
    let ds = Dataset::open(dir.path()).unwrap();
    let msg = names(&ds.peek("bio", 2).unwrap_err(), "bio-00000.tok");
    assert!(msg.contains("sha256"), "{msg}");
    // The prompt file of a question stream is covered too.
    let p = dir.path().join("qa_train-00000.prompt");
    let mut b = std::fs::read(&p).unwrap();
    b[0] ^= 1;
    std::fs::write(&p, b).unwrap();
    let msg = names(
        &ds.peek("qa_train", 2).unwrap_err(),
        "qa_train-00000.prompt",
    );
    assert!(msg.contains("sha256"), "{msg}");
}

/// Case 2: `verify` checks every file against the manifest and names every damaged one, on one line.
#[test]
fn verify_checks_every_file_and_names_each_damaged_one() {
    let dir = tempfile::tempdir().unwrap();
    common::bios(dir.path());
    let ds = Dataset::open(dir.path()).unwrap();
    let report = ds.verify().unwrap();
    let m = &ds.manifest;
    let shards: usize = m.streams.iter().map(|s| s.shards.len()).sum();
    let docs: u64 = m
        .streams
        .iter()
        .filter(|s| s.materialized)
        .map(|s| s.documents)
        .sum();
    let tokens: u64 = m
        .streams
        .iter()
        .filter(|s| s.materialized)
        .map(|s| s.tokens)
        .sum();
    assert_eq!(
        (report.shards, report.documents, report.tokens),
        (shards, docs, tokens)
    );
    println!("{report:?}");
    // The last shard of bio and the truth table, damaged after the open.
    for f in ["bio-00001.tok", "people.jsonl"] {
        let p = dir.path().join(f);
        let mut b = std::fs::read(&p).unwrap();
        let n = b.len();
        b[n - 2] ^= 1;
        std::fs::write(&p, b).unwrap();
    }
    let err = ds.verify().unwrap_err();
    let msg = names(&err, "bio-00001.tok");
    names(&err, "people.jsonl");
    assert!(msg.contains("2 damaged files"), "{msg}");
}

/// Case 3: a vocabulary missing a word (its hash edited to match) decoded every later id to the next word.
#[test]
fn a_vocabulary_of_the_wrong_length_is_refused_naming_both_sizes() {
    let dir = tempfile::tempdir().unwrap();
    common::bios(dir.path());
    let mut words: Vec<String> =
        serde_json::from_slice(&std::fs::read(dir.path().join("vocab.json")).unwrap()).unwrap();
    let n = words.len();
    words.remove(n / 2);
    let bytes = serde_json::to_vec(&words).unwrap();
    common::replace_with_hash(dir.path(), "vocab.json", &bytes, "vocab_sha256");
    let msg = names(&open_err(dir.path()), "vocab.json");
    assert!(
        msg.contains(&(n - 1).to_string()) && msg.contains(&n.to_string()),
        "{msg}"
    );
    // Not a list of words (the hash edited to match): an error, not a panic.
    common::replace_with_hash(dir.path(), "vocab.json", b"{\"a\": 1}", "vocab_sha256");
    names(&open_err(dir.path()), "vocab.json");
}

/// Case 4: the truth table was never checked; `open` now checks its sha256 and its row count.
#[test]
fn the_truth_table_is_checked_on_open() {
    let dir = tempfile::tempdir().unwrap();
    common::bios(dir.path());
    let p = dir.path().join("people.jsonl");
    let good = std::fs::read(&p).unwrap();
    let mut b = good.clone();
    b[40] ^= 1;
    std::fs::write(&p, b).unwrap();
    let msg = names(&open_err(dir.path()), "people.jsonl");
    assert!(msg.contains("truth_sha256"), "{msg}");
    // A row dropped, the hash edited to match: the row count says so.
    let text = String::from_utf8(good.clone()).unwrap();
    let fewer: String = text.lines().skip(1).map(|l| format!("{l}\n")).collect();
    common::replace_with_hash(dir.path(), "people.jsonl", fewer.as_bytes(), "truth_sha256");
    let msg = names(&open_err(dir.path()), "people.jsonl");
    assert!(msg.contains("129 rows") && msg.contains("130"), "{msg}");
    // Missing.
    std::fs::remove_file(&p).unwrap();
    names(&open_err(dir.path()), "people.jsonl");
}

/// Case 5: manifest fields out of range are errors naming manifest.json (before: accepted, and a later reader
/// panicked, allocated by them, or read files outside the folder).
#[test]
fn out_of_range_manifest_fields_are_errors() {
    type Edit = Box<dyn Fn(&mut serde_json::Value)>;
    let huge = serde_json::json!(u64::MAX);
    let cases: Vec<(&str, Edit)> = vec![
        (
            "format_version from the future",
            Box::new(|m| m["format_version"] = 3.into()),
        ),
        (
            "format_version a string",
            Box::new(|m| m["format_version"] = "2".into()),
        ),
        (
            "negative vocab_size",
            Box::new(|m| m["vocab_size"] = (-1).into()),
        ),
        (
            "vocab_size 2^40",
            Box::new(|m| m["vocab_size"] = (1u64 << 40).into()),
        ),
        (
            "used_vocab over vocab_size",
            Box::new(|m| m["used_vocab"] = (1u64 << 20).into()),
        ),
        (
            "a stream of u64::MAX documents",
            Box::new(move |m| m["streams"][0]["documents"] = huge.clone()),
        ),
        (
            "a shard of 2^62 documents",
            Box::new(|m| {
                m["streams"][0]["shards"][0]["documents"] = (1u64 << 62).into();
                m["streams"][0]["documents"] = ((1u64 << 62) + 4).into();
            }),
        ),
        (
            "a stream's tokens that are not its shards'",
            Box::new(|m| m["streams"][0]["tokens"] = 12.into()),
        ),
        (
            "negative tokens_per_document",
            Box::new(|m| m["streams"][0]["tokens_per_document"] = (-1.5).into()),
        ),
        (
            "a negative weight",
            Box::new(|m| m["mixture"][0]["weight"] = (-1.0).into()),
        ),
        (
            "a zero weight",
            Box::new(|m| m["mixture"][0]["weight"] = 0.0.into()),
        ),
        (
            "a mixture stream that does not exist",
            Box::new(|m| m["mixture"][0]["stream"] = "nope".into()),
        ),
        (
            "negative exposure tokens",
            Box::new(|m| m["exposure"]["tokens"] = (-5.0).into()),
        ),
        (
            "truth_rows u64::MAX",
            Box::new(|m| m["truth_rows"] = u64::MAX.into()),
        ),
        (
            "a shard file outside the folder",
            Box::new(|m| m["streams"][0]["shards"][0]["tokens_file"] = "../../etc/passwd".into()),
        ),
        (
            "a truth file outside the folder",
            Box::new(|m| m["truth_file"] = "/etc/passwd".into()),
        ),
        (
            "a shard listed twice",
            Box::new(|m| {
                let s = m["streams"][0]["shards"][0].clone();
                m["streams"][0]["shards"][1] = s;
            }),
        ),
        (
            "a prompt file missing from a question stream",
            Box::new(|m| {
                let qa = m["streams"]
                    .as_array_mut()
                    .unwrap()
                    .iter_mut()
                    .find(|s| s["prompts"] == true)
                    .unwrap();
                qa["shards"][0]
                    .as_object_mut()
                    .unwrap()
                    .remove("prompt_file");
            }),
        ),
        (
            "a shard sha256 that is not hex",
            Box::new(|m| m["streams"][0]["shards"][0]["sha256"] = "x\ny".into()),
        ),
        (
            "no streams",
            Box::new(|m| m["streams"] = serde_json::json!([])),
        ),
        ("a number past f64", Box::new(|_| {})), // the raw text below
    ];
    for (what, edit) in cases {
        let dir = tempfile::tempdir().unwrap();
        common::bios(dir.path());
        common::edit_manifest(dir.path(), edit);
        if what == "a number past f64" {
            let p = dir.path().join("manifest.json");
            let t = std::fs::read_to_string(&p).unwrap();
            let t = t.replacen("\"weight\": 0.8", "\"weight\": 1e400", 1);
            std::fs::write(&p, t).unwrap();
        }
        // The row count is checked against the file itself, so that error names the truth table.
        let file = if what.starts_with("truth_rows") {
            "people.jsonl"
        } else {
            "manifest.json"
        };
        let msg = names(&open_err(dir.path()), file);
        println!("{what}: {msg}");
    }
}

/// A valid dataset still opens, loads, peeks and verifies, and `peek` shows what `load` loads.
#[test]
fn valid_datasets_read_as_before() {
    for make in [common::bios, common::zipf] {
        let dir = tempfile::tempdir().unwrap();
        make(dir.path());
        let ds = Dataset::open(dir.path()).unwrap();
        for s in ds.manifest.streams.iter().filter(|s| s.materialized) {
            let all = ds.load(&s.name).unwrap();
            assert_eq!(all.documents() as u64, s.documents);
            let first = ds.load_shards(&s.name, 1).unwrap();
            assert_eq!(first.documents() as u64, s.shards[0].documents);
            let peeked = ds.peek(&s.name, 5).unwrap();
            assert_eq!(peeked.len(), 5);
            for (i, (doc, prompt)) in peeked.iter().enumerate() {
                assert_eq!(doc.as_slice(), all.document(i));
                assert_eq!(*prompt, all.prompts.as_ref().map(|p| p[i]));
            }
        }
        assert!(ds.peek("no-such-stream", 3).unwrap().is_empty());
        ds.verify().unwrap();
    }
}
