//! `physlab generate`, `physlab inspect` and `physlab export`: datasets on their own, outside a training run.

use std::io::{BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use physlab_generators::corpus::{write_corpus, Dataset, Progress, MANIFEST};
use tracing::info;

use crate::recipe::DatasetRecipe;

fn fmt_duration(s: f64) -> String {
    let s = s.max(0.0).round() as u64;
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, (s % 3600) / 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

/// Writes the dataset of `recipe` into `out`. A folder that holds a complete dataset of the same recipe is left
/// as it is; one of another recipe is refused; an incomplete one (no manifest: the writer died) is moved aside.
pub fn generate(name: &str, recipe: &DatasetRecipe, out: &Path, jsonl: bool) -> Result<()> {
    let recipe_text = toml::to_string_pretty(recipe)?;
    let recipe_path = out.join("recipe.toml");
    if out.join(MANIFEST).exists() {
        let previous = std::fs::read_to_string(&recipe_path).unwrap_or_default();
        if previous == recipe_text {
            info!(
                "{} already holds dataset `{name}` of this recipe: not regenerated",
                out.display()
            );
            print_summary(&Dataset::open(out)?, 0)?;
            return Ok(());
        }
        bail!(
            "{} holds a dataset of another recipe (compare its recipe.toml): it is not overwritten; choose \
             another --out or delete it",
            out.display()
        );
    }
    if out.exists()
        && std::fs::read_dir(out)
            .with_context(|| format!("reading {}", out.display()))?
            .next()
            .is_some()
    {
        // Only a folder physlab began to write (its recipe.toml, written first, reads as a dataset recipe) is
        // moved aside; anything else is the user's and is left alone.
        let ours = std::fs::read_to_string(&recipe_path)
            .ok()
            .is_some_and(|t| toml::from_str::<DatasetRecipe>(&t).is_ok());
        if !ours {
            bail!(
                "{} is not empty and is not a physlab dataset folder (no manifest.json or recipe.toml of physlab's): \
                 nothing is written there; choose another --out",
                out.display()
            );
        }
        let stamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let aside = PathBuf::from(format!("{}.incomplete-{stamp}", out.display()));
        std::fs::rename(out, &aside)
            .with_context(|| format!("moving the incomplete {} aside", out.display()))?;
        info!(
            "{} held an incomplete dataset (no manifest): moved to {}",
            out.display(),
            aside.display()
        );
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    physlab_generators::fsio::atomic_write(&recipe_path, recipe_text.as_bytes())
        .with_context(|| format!("writing {}", recipe_path.display()))?;
    let corpus = recipe.data.build(recipe.seed)?;
    let start = Instant::now();
    let bar = std::io::stderr().is_terminal().then(|| {
        let pb = indicatif::ProgressBar::new(0);
        pb.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:30} {pos}/{len} documents {per_sec} eta {eta}",
            )
            .expect("template"),
        );
        pb
    });
    let mut last_log = Instant::now();
    let manifest = write_corpus(
        corpus.as_ref(),
        out,
        recipe.shard_documents,
        |p: Progress| {
            if let Some(b) = &bar {
                b.set_length(p.total);
                b.set_position(p.done);
            } else if last_log.elapsed().as_secs_f64() > 2.0 || p.done == p.total {
                last_log = Instant::now();
                let el = start.elapsed().as_secs_f64();
                let rate = p.done as f64 / el.max(1e-9);
                info!(
                    "{}/{} documents ({:.0}%) {:.0}/s eta {}",
                    p.done,
                    p.total,
                    100.0 * p.done as f64 / p.total.max(1) as f64,
                    rate,
                    fmt_duration((p.total - p.done) as f64 / rate.max(1e-9))
                );
            }
        },
    )?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let el = start.elapsed().as_secs_f64();
    let docs: u64 = manifest
        .streams
        .iter()
        .filter(|s| s.materialized)
        .map(|s| s.documents)
        .sum();
    let tokens: u64 = manifest.streams.iter().map(|s| s.tokens).sum();
    info!(
        "wrote {docs} documents, {tokens} tokens in {el:.2}s ({:.0} documents/s, {:.0} tokens/s) to {}",
        docs as f64 / el,
        tokens as f64 / el,
        out.display()
    );
    let ds = Dataset::open(out)?;
    print_summary(&ds, 1)?;
    if jsonl {
        let path = out.join("text.jsonl");
        export_jsonl(&ds, &path, true)?;
        info!("text export: {}", path.display());
    }
    Ok(())
}

/// Prints the manifest's essentials and `samples` documents of each stream.
pub fn print_summary(ds: &Dataset, samples: usize) -> Result<()> {
    let m = &ds.manifest;
    println!(
        "dataset {} (kind {}, seed {})",
        ds.dir.display(),
        m.kind,
        m.seed
    );
    println!("  hash        {}", m.dataset_hash);
    println!(
        "  vocabulary  {} tokens ({} used in training)",
        m.vocab_size, m.used_vocab
    );
    if let Some(t) = &m.truth_file {
        println!("  truth       {t} ({} rows)", m.truth_rows);
    }
    println!(
        "  exposure    {:.0} tokens of `{}` ({})",
        m.exposure.tokens, m.exposure.stream, m.exposure.unit
    );
    println!(
        "  mixture     {}",
        m.mixture
            .iter()
            .map(|x| format!("{} {:.3}", x.stream, x.weight))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if let serde_json::Value::Object(f) = &m.facts {
        for (k, v) in f {
            let text = match v {
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Bool(b) => b.to_string(),
                serde_json::Value::String(s) => s.clone(),
                other => {
                    let s = other.to_string();
                    if s.len() > 100 {
                        format!("{}…", &s[..s.floor_char_boundary(100)])
                    } else {
                        s
                    }
                }
            };
            println!("  {k:<32}{text}");
        }
    }
    for s in &m.streams {
        println!(
            "  stream {:<14} {:>10} documents {:>12} tokens {:>7.2} tokens/doc{}  {}",
            s.name,
            s.documents,
            s.tokens,
            s.tokens_per_document,
            if s.materialized { "" } else { " (on the fly)" },
            s.about
        );
        if samples == 0 || !s.materialized {
            continue;
        }
        for (i, (doc, prompt)) in ds.peek(&s.name, samples)?.into_iter().enumerate() {
            match prompt {
                Some(p) => {
                    let (p, a) = doc.split_at(p as usize);
                    println!(
                        "      [{i}] {} ‖ {}",
                        ds.tokenizer.decode(p),
                        ds.tokenizer.decode(a)
                    )
                }
                None => println!("      [{i}] {}", ds.tokenizer.decode(&doc)),
            }
        }
    }
    Ok(())
}

/// Every stored document as one JSON line: `{"stream", "doc", "text"}` plus `"prompt"` and `"answer"` for
/// question documents. The ground-truth table is already JSONL (`people.jsonl`).
///
/// The output is written to a temporary file beside `path` and renamed over it once complete. `path` may not be
/// a file the dataset is read from (its manifest, vocabulary, truth table, shards or indexes: anything in the
/// dataset folder but a previous `text.jsonl`), and an existing file is replaced only with `force`.
pub fn export_jsonl(ds: &Dataset, path: &Path, force: bool) -> Result<u64> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let canon_parent = parent
        .canonicalize()
        .with_context(|| format!("export --out {}: its folder", path.display()))?;
    let name = path
        .file_name()
        .with_context(|| format!("export --out {}: not a file name", path.display()))?;
    let target = canon_parent.join(name);
    let data = ds
        .dir
        .canonicalize()
        .with_context(|| format!("reading {}", ds.dir.display()))?;
    let target = target.canonicalize().unwrap_or(target);
    if target.starts_with(&data) && target != data.join("text.jsonl") {
        bail!(
            "export --out {}: that is inside the dataset folder {} and could be one of its own files; write the \
             export elsewhere (or to {}/text.jsonl)",
            path.display(),
            ds.dir.display(),
            ds.dir.display()
        );
    }
    if target.is_dir() {
        bail!(
            "export --out {}: is a folder; give a file name",
            path.display()
        );
    }
    if target.exists() && !force {
        bail!(
            "export --out {}: the file exists; it is not overwritten without --force",
            path.display()
        );
    }
    let tmp = tempfile::Builder::new()
        .prefix(".physlab-export-")
        .tempfile_in(&canon_parent)
        .with_context(|| format!("creating a temporary file in {}", canon_parent.display()))?;
    let mut w = BufWriter::new(tmp);
    let mut n = 0u64;
    for s in ds.manifest.streams.iter().filter(|s| s.materialized) {
        let st = ds.load(&s.name)?;
        for i in 0..st.documents() {
            let mut row = serde_json::Map::new();
            row.insert("stream".into(), s.name.clone().into());
            row.insert("doc".into(), i.into());
            row.insert("text".into(), ds.tokenizer.decode(st.document(i)).into());
            if let Some((p, a)) = st.question(i) {
                row.insert("prompt".into(), ds.tokenizer.decode(p).into());
                row.insert("answer".into(), ds.tokenizer.decode(a).into());
            }
            serde_json::to_writer(&mut w, &row)?;
            w.write_all(b"\n")?;
            n += 1;
        }
    }
    let tmp = w
        .into_inner()
        .map_err(|e| e.into_error())
        .with_context(|| format!("writing {}", path.display()))?;
    tmp.as_file()
        .sync_all()
        .with_context(|| format!("writing {}", path.display()))?;
    tmp.persist(&target)
        .map_err(|e| e.error)
        .with_context(|| format!("writing {}", path.display()))?;
    physlab_generators::fsio::sync_dir(&canon_parent)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use physlab_generators::bios::BioSConfig;
    use physlab_generators::tasks::QaConfig;
    use physlab_generators::DataConfig;

    fn recipe(people: usize) -> DatasetRecipe {
        DatasetRecipe {
            description: String::new(),
            seed: 3,
            shard_documents: 256,
            data: DataConfig::BioS(BioSConfig {
                people,
                multi: 2,
                permute: true,
                qa: QaConfig {
                    enabled: true,
                    ..QaConfig::default()
                },
                ..BioSConfig::default()
            }),
        }
    }

    /// The JSONL export holds every stored document; its text tokenizes back to the stored tokens, and a
    /// question's text is its prompt followed by its answer.
    #[test]
    fn jsonl_export_round_trips_to_the_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("d");
        generate("t", &recipe(40), &out, true).unwrap();
        let ds = Dataset::open(&out).unwrap();
        let text = std::fs::read_to_string(out.join("text.jsonl")).unwrap();
        let rows: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let stored: u64 = ds.manifest.streams.iter().map(|s| s.documents).sum();
        assert_eq!(rows.len() as u64, stored);
        assert_eq!(stored, 80 + 120 + 120);
        for r in &rows {
            let name = r["stream"].as_str().unwrap();
            let i = r["doc"].as_u64().unwrap() as usize;
            let doc = ds.load(name).unwrap();
            let t = r["text"].as_str().unwrap();
            assert_eq!(ds.tokenizer.encode(t, "export").unwrap(), doc.document(i));
            if name.starts_with("qa") {
                let (p, a) = (r["prompt"].as_str().unwrap(), r["answer"].as_str().unwrap());
                assert_eq!(format!("{p} {a}"), t);
            }
        }
        // The ground truth is JSONL too, one row a person.
        let truth = std::fs::read_to_string(out.join("people.jsonl")).unwrap();
        assert_eq!(truth.lines().count(), 40);
    }

    #[test]
    fn a_dataset_folder_is_kept_refused_or_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("d");
        generate("t", &recipe(30), &out, false).unwrap();
        let hash = Dataset::open(&out).unwrap().manifest.dataset_hash;
        // Same recipe: left as it is.
        generate("t", &recipe(30), &out, false).unwrap();
        assert_eq!(Dataset::open(&out).unwrap().manifest.dataset_hash, hash);
        // Another recipe: refused, nothing lost.
        let err = generate("t", &recipe(31), &out, false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("another recipe"), "{err}");
        assert_eq!(Dataset::open(&out).unwrap().manifest.dataset_hash, hash);
        // No manifest (the writer died): moved aside, written again.
        std::fs::remove_file(out.join(MANIFEST)).unwrap();
        generate("t", &recipe(30), &out, false).unwrap();
        assert_eq!(Dataset::open(&out).unwrap().manifest.dataset_hash, hash);
        let aside = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .contains(".incomplete-")
            })
            .count();
        assert_eq!(aside, 1);
    }
}
