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

/// Where an export of `ds` may write `path`: its absolute path, after refusing a path inside the dataset folder
/// (one of its own files, except the export names in `own`), a folder, or an existing file without `force`.
fn export_target(ds: &Dataset, path: &Path, own: &[&str], force: bool) -> Result<PathBuf> {
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
    let allowed = |t: &Path| own.iter().any(|o| t == data.join(o));
    if target.starts_with(&data) && !allowed(&target) {
        bail!(
            "export --out {}: that is inside the dataset folder {} and could be one of its own files; write the \
             export elsewhere (or to {}/{})",
            path.display(),
            ds.dir.display(),
            ds.dir.display(),
            own.join(" or ")
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
    Ok(target)
}

/// Writes `bytes` produced by `write` to `target` through a temporary file in its folder (fsync, rename, fsync of
/// the folder): an interrupted export leaves no partial file.
fn write_through_temp(
    target: &Path,
    write: impl FnOnce(std::fs::File) -> Result<std::fs::File>,
) -> Result<()> {
    physlab_generators::fsio::atomic_write_with(target, write)
        .with_context(|| format!("writing {}", target.display()))
}

/// The documents of `ds` as Parquet, readable by `datasets.load_dataset("parquet", data_files=…)`:
/// `documents.parquet` (stream, doc, person, text, prompt, answer: one row a stored document; `person` is the row
/// of the ground-truth table the document is about, where the data has people; `prompt`/`answer` for questions)
/// and, where the dataset has one, `truth.parquet` (the ground-truth table, one row a person, its columns typed
/// from the JSON rows). Returns (documents, truth rows).
pub fn export_parquet(ds: &Dataset, out: &Path, force: bool) -> Result<(u64, u64)> {
    use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    use parquet::schema::parser::parse_message_type;
    use std::sync::Arc;

    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let docs_target = export_target(
        ds,
        &out.join("documents.parquet"),
        &["parquet/documents.parquet"],
        force,
    )?;
    let truth_target = match &ds.manifest.truth_file {
        Some(_) => Some(export_target(
            ds,
            &out.join("truth.parquet"),
            &["parquet/truth.parquet"],
            force,
        )?),
        None => None,
    };
    // The generator, built again from the manifest, names each document's person; it must render the stored
    // documents, which is checked on each stream's first one.
    let corpus = physlab_generators::DataConfig::from_manifest(&ds.manifest)
        .and_then(|c| c.build(ds.manifest.seed))
        .ok();
    let spec_index = |name: &str| {
        corpus
            .as_ref()
            .and_then(|c| c.streams().iter().position(|s| s.name == name))
    };
    let props = Arc::new(WriterProperties::builder().build());
    let schema = Arc::new(parse_message_type(
        "message documents { REQUIRED BYTE_ARRAY stream (UTF8); REQUIRED INT64 doc; OPTIONAL INT64 person; \
         REQUIRED BYTE_ARRAY text (UTF8); OPTIONAL BYTE_ARRAY prompt (UTF8); OPTIONAL BYTE_ARRAY answer (UTF8); }",
    )?);
    let mut n_docs = 0u64;
    write_through_temp(&docs_target, |file| {
        let mut w = SerializedFileWriter::new(file, schema, props.clone())?;
        for s in ds.manifest.streams.iter().filter(|s| s.materialized) {
            let st = ds.load(&s.name)?;
            let n = st.documents();
            // The person column only where the rebuilt generator renders this stream's stored documents.
            let person_of = match (corpus.as_ref(), spec_index(&s.name)) {
                (Some(c), Some(k)) if n > 0 => {
                    let mut first = Vec::new();
                    c.render(k, 0, &mut first);
                    (first == st.document(0)).then_some((c, k))
                }
                _ => None,
            };
            if person_of.is_none() && corpus.is_some() {
                tracing::warn!("stream {}: the person column is left empty (its documents could not be matched to the generator)", s.name);
            }
            let mut rg = w.next_row_group()?;
            let strings = |f: &dyn Fn(usize) -> Option<String>| -> (Vec<ByteArray>, Vec<i16>) {
                let mut vals = Vec::new();
                let mut defs = Vec::with_capacity(n);
                for i in 0..n {
                    match f(i) {
                        Some(v) => {
                            vals.push(ByteArray::from(v.into_bytes()));
                            defs.push(1);
                        }
                        None => defs.push(0),
                    }
                }
                (vals, defs)
            };
            let mut col = rg.next_column()?.context("the stream column")?;
            let stream_vals: Vec<ByteArray> =
                (0..n).map(|_| ByteArray::from(s.name.as_str())).collect();
            col.typed::<ByteArrayType>()
                .write_batch(&stream_vals, None, None)?;
            col.close()?;
            let mut col = rg.next_column()?.context("the doc column")?;
            let docs: Vec<i64> = (0..n as i64).collect();
            col.typed::<Int64Type>().write_batch(&docs, None, None)?;
            col.close()?;
            let mut col = rg.next_column()?.context("the person column")?;
            let person: Vec<Option<i64>> = (0..n)
                .map(|i| {
                    person_of
                        .and_then(|(c, k)| c.document_person(k, i as u64))
                        .map(|p| p as i64)
                })
                .collect();
            let persons: Vec<i64> = person.iter().flatten().copied().collect();
            let defs: Vec<i16> = person.iter().map(|p| p.is_some() as i16).collect();
            col.typed::<Int64Type>()
                .write_batch(&persons, Some(&defs), None)?;
            col.close()?;
            let mut col = rg.next_column()?.context("the text column")?;
            let texts: Vec<ByteArray> = (0..n)
                .map(|i| ByteArray::from(ds.tokenizer.decode(st.document(i)).into_bytes()))
                .collect();
            col.typed::<ByteArrayType>()
                .write_batch(&texts, None, None)?;
            col.close()?;
            for part in 0..2 {
                let (vals, defs) = strings(&|i| {
                    st.question(i)
                        .map(|(p, a)| ds.tokenizer.decode(if part == 0 { p } else { a }))
                });
                let mut col = rg.next_column()?.context("the prompt/answer column")?;
                col.typed::<ByteArrayType>()
                    .write_batch(&vals, Some(&defs), None)?;
                col.close()?;
            }
            rg.close()?;
            n_docs += n as u64;
        }
        Ok(w.into_inner()?)
    })?;
    let mut n_truth = 0u64;
    if let (Some(target), Some(name)) = (truth_target, &ds.manifest.truth_file) {
        let path = ds.dir.join(name);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let rows: Vec<serde_json::Map<String, serde_json::Value>> = text
            .lines()
            .enumerate()
            .map(|(i, l)| {
                serde_json::from_str(l)
                    .with_context(|| format!("{}, line {}", path.display(), i + 1))
            })
            .collect::<Result<_>>()?;
        n_truth = rows.len() as u64;
        write_truth_parquet(&target, &rows, props)?;
    }
    Ok((n_docs, n_truth))
}

/// The ground-truth table as Parquet: one column a key of its first row, INT64 / DOUBLE / BOOLEAN / UTF8 by that
/// row's JSON type (arrays and objects as JSON text); a value of another type in a later row is written as null.
fn write_truth_parquet(
    target: &Path,
    rows: &[serde_json::Map<String, serde_json::Value>],
    props: std::sync::Arc<parquet::file::properties::WriterProperties>,
) -> Result<()> {
    use parquet::data_type::{BoolType, ByteArray, ByteArrayType, DoubleType, Int64Type};
    use parquet::file::writer::SerializedFileWriter;
    use parquet::schema::parser::parse_message_type;
    use serde_json::Value;
    #[derive(Clone, Copy)]
    enum Kind {
        Int,
        Float,
        Bool,
        Text,
    }
    let first = rows.first().cloned().unwrap_or_default();
    let cols: Vec<(String, Kind)> = first
        .iter()
        .map(|(k, v)| {
            let kind = match v {
                Value::Number(n) if n.is_i64() => Kind::Int,
                Value::Number(_) => Kind::Float,
                Value::Bool(_) => Kind::Bool,
                _ => Kind::Text,
            };
            (k.clone(), kind)
        })
        .collect();
    if cols
        .iter()
        .any(|(k, _)| !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
    {
        bail!(
            "{}: a column name of the truth table is not a plain identifier",
            target.display()
        );
    }
    let fields: Vec<String> = cols
        .iter()
        .map(|(k, kind)| match kind {
            Kind::Int => format!("OPTIONAL INT64 {k};"),
            Kind::Float => format!("OPTIONAL DOUBLE {k};"),
            Kind::Bool => format!("OPTIONAL BOOLEAN {k};"),
            Kind::Text => format!("OPTIONAL BYTE_ARRAY {k} (UTF8);"),
        })
        .collect();
    let schema = std::sync::Arc::new(parse_message_type(&format!(
        "message truth {{ {} }}",
        fields.join(" ")
    ))?);
    write_through_temp(target, |file| {
        let mut w = SerializedFileWriter::new(file, schema, props)?;
        let mut rg = w.next_row_group()?;
        for (k, kind) in &cols {
            let vals = rows.iter().map(|r| r.get(k));
            let defs: Vec<i16> = vals
                .clone()
                .map(|v| match (kind, v) {
                    (Kind::Int, Some(Value::Number(n))) if n.is_i64() => 1,
                    (Kind::Float, Some(Value::Number(_))) => 1,
                    (Kind::Bool, Some(Value::Bool(_))) => 1,
                    (Kind::Text, Some(v)) if !v.is_null() => 1,
                    _ => 0,
                })
                .collect();
            let mut col = rg.next_column()?.context("a truth column")?;
            match kind {
                Kind::Int => {
                    let v: Vec<i64> = vals.filter_map(|v| v.and_then(Value::as_i64)).collect();
                    col.typed::<Int64Type>()
                        .write_batch(&v, Some(&defs), None)?;
                }
                Kind::Float => {
                    let v: Vec<f64> = vals.filter_map(|v| v.and_then(Value::as_f64)).collect();
                    col.typed::<DoubleType>()
                        .write_batch(&v, Some(&defs), None)?;
                }
                Kind::Bool => {
                    let v: Vec<bool> = vals.filter_map(|v| v.and_then(Value::as_bool)).collect();
                    col.typed::<BoolType>().write_batch(&v, Some(&defs), None)?;
                }
                Kind::Text => {
                    let v: Vec<ByteArray> = vals
                        .filter(|v| v.is_some_and(|v| !v.is_null()))
                        .map(|v| match v.expect("filtered") {
                            Value::String(s) => ByteArray::from(s.as_str()),
                            other => ByteArray::from(other.to_string().into_bytes()),
                        })
                        .collect();
                    col.typed::<ByteArrayType>()
                        .write_batch(&v, Some(&defs), None)?;
                }
            }
            col.close()?;
        }
        rg.close()?;
        Ok(w.into_inner()?)
    })
}

/// Every stored document as one JSON line: `{"stream", "doc", "text"}` plus `"prompt"` and `"answer"` for
/// question documents. The ground-truth table is already JSONL (`people.jsonl`).
///
/// The output is written to a temporary file beside `path` and renamed over it once complete. `path` may not be
/// a file the dataset is read from (its manifest, vocabulary, truth table, shards or indexes: anything in the
/// dataset folder but a previous `text.jsonl`), and an existing file is replaced only with `force`.
pub fn export_jsonl(ds: &Dataset, path: &Path, force: bool) -> Result<u64> {
    let target = export_target(ds, path, &["text.jsonl"], force)?;
    let mut n = 0u64;
    write_through_temp(&target, |file| {
        let mut w = BufWriter::new(file);
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
        w.into_inner()
            .map_err(|e| e.into_error())
            .with_context(|| format!("writing {}", path.display()))
    })?;
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
