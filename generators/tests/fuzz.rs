//! Fuzz harness for the dataset readers (issue 17): small valid datasets written by the crate's own writer (bioS
//! with question streams and a truth table; Zipf text), damaged by random mutations (flipped bytes,
//! truncations, appended garbage, swapped and deleted files, random bytes and offsets in an index, random JSON
//! in the manifest and the vocabulary, edited vocabulary and truth rows with the manifest's hash edited to
//! match), then `Dataset::open` + `load` + `load_shards` + `peek` + `verify`.
//!
//! Properties, for every case: no panic (caught with `catch_unwind` and reported with the mutations); every
//! error is one line and names a file of the folder; and when the shard, vocabulary and truth files were damaged
//! without touching the manifest, either a reader refuses or every reader returns exactly the original content
//! (no damage is read silently).
//!
//! The run is deterministic (a fixed seed) so CI is reproducible; `PHYSLAB_FUZZ_SEED=<u64>` explores other
//! inputs and `PHYSLAB_FUZZ_CASES=<n>` sets the cases per dataset. A failing case is shrunk by proptest and
//! shown; add it to `tests/damaged.rs` as a regression test. A case that aborts the process (an allocation
//! failure cannot be caught) is left in `target/tmp/fuzz-last-case-*.txt`.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::time::Instant;

use physlab_generators::corpus::Dataset;
use physlab_generators::GenError;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Cases per dataset unless `PHYSLAB_FUZZ_CASES` says otherwise: two datasets, 5,000 cases in all.
const CASES: u32 = 2500;

#[derive(Clone, Debug)]
enum Mutation {
    /// XOR a byte of a file with a non-zero mask.
    Flip {
        file: usize,
        at: usize,
        mask: u8,
    },
    /// Cut a file at a position.
    Truncate {
        file: usize,
        at: usize,
    },
    Append {
        file: usize,
        bytes: Vec<u8>,
    },
    /// Exchange two files' contents.
    Swap {
        a: usize,
        b: usize,
    },
    Delete {
        file: usize,
    },
    /// Replace an index file with random bytes (of its own length or not).
    IdxBytes {
        file: usize,
        bytes: Vec<u8>,
        same_len: bool,
    },
    /// Set one u64 of an index file.
    IdxWord {
        file: usize,
        slot: usize,
        value: u64,
    },
    /// Replace a node of the manifest's JSON (pre-order) with random JSON.
    ManifestValue {
        node: usize,
        value: Value,
    },
    /// Remove a key of the manifest's JSON (the `node`-th object, pre-order).
    ManifestDrop {
        node: usize,
        key: usize,
    },
    /// Replace vocab.json with random JSON, the manifest's hash edited to match.
    VocabJson {
        value: Value,
    },
    /// Remove (0), duplicate (1) or blank (2) a word, the hash edited to match.
    VocabEdit {
        at: usize,
        op: u8,
    },
    /// Remove (0), duplicate (1) or garble (2) a truth row, the hash edited to match.
    TruthEdit {
        at: usize,
        op: u8,
    },
}

impl Mutation {
    /// Touches the manifest (directly, or its hashes): damage the hashes cannot see.
    fn touches_manifest(&self, names: &[String]) -> bool {
        let is_manifest = |i: &usize| names[i % names.len()] == "manifest.json";
        match self {
            Mutation::Flip { file, .. }
            | Mutation::Truncate { file, .. }
            | Mutation::Append { file, .. }
            | Mutation::Delete { file } => is_manifest(file),
            Mutation::Swap { a, b } => is_manifest(a) || is_manifest(b),
            Mutation::IdxBytes { .. } | Mutation::IdxWord { .. } => false,
            _ => true,
        }
    }
}

fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        prop::sample::select(vec![
            0u64,
            1,
            2,
            255,
            256,
            257,
            1 << 31,
            1 << 32,
            1 << 40,
            1 << 62,
            u64::MAX
        ])
        .prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "[a-z0-9_./-]{0,12}".prop_map(Value::from),
        prop::sample::select(vec![
            "bio",
            "qa_train",
            "train",
            "bio-00000.tok",
            "bio-00001.idx",
            "people.jsonl",
            "vocab.json",
            "manifest.json",
            "../manifest.json",
            "/etc/passwd",
            "line\nbreak",
        ])
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec(("[a-z_]{1,8}", inner), 0..4)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let interesting = prop_oneof![
        any::<u64>(),
        0u64..20_000,
        prop::sample::select(vec![
            0u64,
            1,
            255,
            256,
            257,
            1 << 32,
            1 << 40,
            1 << 61,
            u64::MAX
        ]),
    ];
    prop_oneof![
        3 => (any::<usize>(), any::<usize>(), 1u8..=255)
            .prop_map(|(file, at, mask)| Mutation::Flip { file, at, mask }),
        2 => (any::<usize>(), any::<usize>()).prop_map(|(file, at)| Mutation::Truncate { file, at }),
        1 => (any::<usize>(), prop::collection::vec(any::<u8>(), 0..24))
            .prop_map(|(file, bytes)| Mutation::Append { file, bytes }),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::Swap { a, b }),
        1 => any::<usize>().prop_map(|file| Mutation::Delete { file }),
        2 => (any::<usize>(), prop::collection::vec(any::<u8>(), 0..64), any::<bool>())
            .prop_map(|(file, bytes, same_len)| Mutation::IdxBytes { file, bytes, same_len }),
        3 => (any::<usize>(), any::<usize>(), interesting)
            .prop_map(|(file, slot, value)| Mutation::IdxWord { file, slot, value }),
        4 => (any::<usize>(), json()).prop_map(|(node, value)| Mutation::ManifestValue { node, value }),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(node, key)| Mutation::ManifestDrop { node, key }),
        1 => json().prop_map(|value| Mutation::VocabJson { value }),
        1 => (any::<usize>(), 0u8..3).prop_map(|(at, op)| Mutation::VocabEdit { at, op }),
        1 => (any::<usize>(), 0u8..3).prop_map(|(at, op)| Mutation::TruthEdit { at, op }),
    ]
}

/// The folder's files in memory; `None` once deleted.
type Files = Vec<(String, Option<Vec<u8>>)>;

fn get<'a>(files: &'a mut Files, name: &str) -> Option<&'a mut Vec<u8>> {
    files
        .iter_mut()
        .find(|f| f.0 == name)
        .and_then(|f| f.1.as_mut())
}

/// Replaces `name` and sets the manifest's `key` to its sha256 (skipped if the manifest no longer parses).
fn replace_hashed(files: &mut Files, name: &str, bytes: Vec<u8>, key: &str) {
    let h = common::sha256_hex(&bytes);
    if let Some(f) = get(files, name) {
        *f = bytes;
    }
    if let Some(m) = get(files, "manifest.json") {
        if let Ok(mut v) = serde_json::from_slice::<Value>(m) {
            if v.is_object() {
                v[key] = h.into();
                *m = serde_json::to_vec_pretty(&v).unwrap();
            }
        }
    }
}

/// The `n`-th node (mod the count) of `v` in pre-order, and the count.
fn nth_node(v: &mut Value, n: usize, objects_only: bool) -> Option<&mut Value> {
    fn count(v: &Value, objects_only: bool) -> usize {
        let own = usize::from(!objects_only || v.is_object());
        own + match v {
            Value::Array(a) => a.iter().map(|x| count(x, objects_only)).sum(),
            Value::Object(o) => o.values().map(|x| count(x, objects_only)).sum(),
            _ => 0,
        }
    }
    fn walk<'a>(v: &'a mut Value, k: &mut usize, objects_only: bool) -> Option<&'a mut Value> {
        if !objects_only || v.is_object() {
            if *k == 0 {
                return Some(v);
            }
            *k -= 1;
        }
        let children: Vec<&mut Value> = match v {
            Value::Array(a) => a.iter_mut().collect(),
            Value::Object(o) => o.values_mut().collect(),
            _ => Vec::new(),
        };
        for c in children {
            if let Some(x) = walk(c, k, objects_only) {
                return Some(x);
            }
        }
        None
    }
    let total = count(v, objects_only);
    if total == 0 {
        return None;
    }
    walk(v, &mut (n % total), objects_only)
}

fn apply(files: &mut Files, m: &Mutation) {
    let n = files.len();
    match m {
        Mutation::Flip { file, at, mask } => {
            if let Some(b) = files[file % n].1.as_mut().filter(|b| !b.is_empty()) {
                let i = at % b.len();
                b[i] ^= mask;
            }
        }
        Mutation::Truncate { file, at } => {
            if let Some(b) = files[file % n].1.as_mut() {
                let keep = at % (b.len() + 1);
                b.truncate(keep);
            }
        }
        Mutation::Append { file, bytes } => {
            if let Some(b) = files[file % n].1.as_mut() {
                b.extend_from_slice(bytes);
            }
        }
        Mutation::Swap { a, b } => {
            let (a, b) = (a % n, b % n);
            let x = files[a].1.take();
            let y = std::mem::replace(&mut files[b].1, x);
            files[a].1 = y;
        }
        Mutation::Delete { file } => files[file % n].1 = None,
        Mutation::IdxBytes {
            file,
            bytes,
            same_len,
        } => {
            let idx: Vec<usize> = (0..n).filter(|&i| files[i].0.ends_with(".idx")).collect();
            if let Some(b) = files[idx[file % idx.len()]].1.as_mut() {
                let len = if *same_len { b.len() } else { bytes.len() };
                *b = bytes.iter().copied().cycle().take(len).collect();
                if *same_len && bytes.is_empty() {
                    b.resize(len, 0xff);
                }
            }
        }
        Mutation::IdxWord { file, slot, value } => {
            let idx: Vec<usize> = (0..n).filter(|&i| files[i].0.ends_with(".idx")).collect();
            if let Some(b) = files[idx[file % idx.len()]].1.as_mut() {
                let words = b.len() / 8;
                if words > 0 {
                    let s = slot % words;
                    b[s * 8..s * 8 + 8].copy_from_slice(&value.to_le_bytes());
                }
            }
        }
        Mutation::ManifestValue { node, value } => {
            if let Some(mb) = get(files, "manifest.json") {
                if let Ok(mut v) = serde_json::from_slice::<Value>(mb) {
                    if let Some(x) = nth_node(&mut v, *node, false) {
                        *x = value.clone();
                    }
                    *mb = serde_json::to_vec_pretty(&v).unwrap();
                }
            }
        }
        Mutation::ManifestDrop { node, key } => {
            if let Some(mb) = get(files, "manifest.json") {
                if let Ok(mut v) = serde_json::from_slice::<Value>(mb) {
                    if let Some(Value::Object(o)) = nth_node(&mut v, *node, true) {
                        if let Some(k) = o.keys().nth(key % o.len().max(1)).cloned() {
                            o.remove(&k);
                        }
                    }
                    *mb = serde_json::to_vec_pretty(&v).unwrap();
                }
            }
        }
        Mutation::VocabJson { value } => {
            let bytes = serde_json::to_vec(value).unwrap();
            replace_hashed(files, "vocab.json", bytes, "vocab_sha256");
        }
        Mutation::VocabEdit { at, op } => {
            let Some(b) = get(files, "vocab.json") else {
                return;
            };
            let Ok(mut words) = serde_json::from_slice::<Vec<String>>(b) else {
                return;
            };
            if words.is_empty() {
                return;
            }
            let i = at % words.len();
            match op {
                0 => {
                    words.remove(i);
                }
                1 => words.insert(i, words[i].clone()),
                _ => words[i] = String::new(),
            }
            let bytes = serde_json::to_vec(&words).unwrap();
            replace_hashed(files, "vocab.json", bytes, "vocab_sha256");
        }
        Mutation::TruthEdit { at, op } => {
            let Some(b) = get(files, "people.jsonl") else {
                return;
            };
            let mut rows: Vec<Vec<u8>> = b
                .split_inclusive(|&c| c == b'\n')
                .map(<[u8]>::to_vec)
                .collect();
            if rows.is_empty() {
                return;
            }
            let i = at % rows.len();
            match op {
                0 => {
                    rows.remove(i);
                }
                1 => rows.insert(i, rows[i].clone()),
                _ => rows[i] = b"{\"garbled\": true}\n".to_vec(),
            }
            replace_hashed(files, "people.jsonl", rows.concat(), "truth_sha256");
        }
    }
}

/// Everything the readers return for the folder: per call, its output's sha256 or its error.
fn exercise(dir: &Path) -> Vec<(String, Result<String, GenError>)> {
    let mut out = Vec::new();
    let ds = match Dataset::open(dir) {
        Ok(ds) => ds,
        Err(e) => {
            out.push(("open".to_string(), Err(e)));
            return out;
        }
    };
    let mut h = Sha256::new();
    ds.tokenizer.words.iter().for_each(|w| {
        h.update(w.as_bytes());
        h.update([0]);
    });
    out.push(("open".into(), Ok(format!("{:x}", h.finalize()))));
    for s in ds.manifest.streams.iter().filter(|s| s.materialized) {
        let digest = |t: &physlab_generators::TokenStream| {
            let mut h = Sha256::new();
            t.tokens.iter().for_each(|x| h.update(x.to_le_bytes()));
            t.offsets.iter().for_each(|x| h.update(x.to_le_bytes()));
            t.prompts
                .iter()
                .flatten()
                .for_each(|x| h.update(x.to_le_bytes()));
            format!("{:x}", h.finalize())
        };
        out.push((
            format!("load {}", s.name),
            ds.load(&s.name).map(|t| digest(&t)),
        ));
        out.push((
            format!("load_shards {} 1", s.name),
            ds.load_shards(&s.name, 1).map(|t| digest(&t)),
        ));
        out.push((
            format!("peek {}", s.name),
            ds.peek(&s.name, 3).map(|p| format!("{p:?}")),
        ));
    }
    out.push(("verify".into(), ds.verify().map(|r| format!("{r:?}"))));
    out
}

/// Writes `files` into the (emptied) folder.
fn write(dir: &Path, files: &Files) {
    for e in std::fs::read_dir(dir).unwrap() {
        std::fs::remove_file(e.unwrap().path()).unwrap();
    }
    for (name, bytes) in files {
        if let Some(b) = bytes {
            std::fs::write(dir.join(name), b).unwrap();
        }
    }
}

/// Runs the harness over one dataset; returns (cases, seconds).
fn fuzz(make: fn(&Path), label: &str, salt: u64) -> (u32, f64) {
    let base_dir = tempfile::tempdir().unwrap();
    make(base_dir.path());
    let base: Files = common::files(base_dir.path())
        .into_iter()
        .map(|(n, b)| (n, Some(b)))
        .collect();
    let names: Vec<String> = base.iter().map(|f| f.0.clone()).collect();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().to_path_buf();
    let dir_prefix = format!("{}/", dir.display());
    write(&dir, &base);
    let pristine = exercise(&dir)
        .into_iter()
        .map(|(op, r)| (op, r.expect("the valid dataset reads")))
        .collect::<Vec<_>>();

    let cases = std::env::var("PHYSLAB_FUZZ_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(CASES);
    let seed = std::env::var("PHYSLAB_FUZZ_SEED")
        .ok()
        .and_then(|c| c.parse::<u64>().ok())
        .unwrap_or(17)
        ^ salt;
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let config = Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 2000,
        ..Config::default()
    };
    let mut runner = TestRunner::new_with_rng(
        config,
        TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes),
    );
    let ran = std::cell::Cell::new(0u32);
    // Cases refused by open, refused by a later reader, and read whole (harmless or manifest-only damage).
    let tally = std::cell::Cell::new([0u32; 3]);
    // The case being run, on disk: a reader that aborts the process (an allocation failure) leaves it here.
    let last_case =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("fuzz-last-case-{salt}.txt"));
    let t0 = Instant::now();
    let result = runner.run(&prop::collection::vec(mutation(), 1..=3), |muts| {
        ran.set(ran.get() + 1);
        let mut files = base.clone();
        muts.iter().for_each(|m| apply(&mut files, m));
        write(&dir, &files);
        let _ = std::fs::write(&last_case, format!("{label}: {muts:?}\n"));
        let outcome = catch_unwind(AssertUnwindSafe(|| exercise(&dir)));
        let outcome = match outcome {
            Ok(o) => o,
            Err(p) => {
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                return Err(TestCaseError::fail(format!(
                    "a reader panicked ({msg}) on {muts:?}"
                )));
            }
        };
        let mut refused = false;
        for (op, r) in &outcome {
            if let Err(e) = r {
                refused = true;
                let msg = e.to_string();
                prop_assert!(
                    !msg.contains('\n'),
                    "{op}: a message of several lines: {msg:?}"
                );
                prop_assert!(
                    names.iter().any(|n| msg.contains(n.as_str())) || msg.contains(&dir_prefix),
                    "{op}: names no file of the folder: {msg}"
                );
            }
        }
        let mut t = tally.get();
        t[match outcome.iter().position(|(_, r)| r.is_err()) {
            Some(0) => 0,
            Some(_) => 1,
            None => 2,
        }] += 1;
        tally.set(t);
        // Damage the hashes cover (no manifest edit) is refused, or the content is exactly the original.
        if !refused && !muts.iter().any(|m| m.touches_manifest(&names)) {
            let got: Vec<(String, String)> = outcome
                .into_iter()
                .map(|(op, r)| (op, r.unwrap()))
                .collect();
            prop_assert_eq!(&got, &pristine, "damage read silently: {:?}", muts);
        }
        Ok(())
    });
    let secs = t0.elapsed().as_secs_f64();
    if let Err(e) = result {
        panic!("fuzz {label}: {e}");
    }
    let [at_open, later, whole] = tally.get();
    println!(
        "fuzz {label}: {} cases (seed {seed}) in {secs:.1} s, no panic, every error one line naming a file \
         ({at_open} refused by open, {later} by a later reader, {whole} read whole)",
        ran.get()
    );
    (ran.get(), secs)
}

#[test]
fn damaged_datasets_never_panic_and_errors_name_the_file() {
    let (a, ta) = fuzz(common::bios, "bioS + questions", 0);
    let (b, tb) = fuzz(common::zipf, "zipf", 1);
    println!("fuzz total: {} cases in {:.1} s", a + b, ta + tb);
}
