//! The Hugging Face mapping (`physlab_trainer::hf`, issue 18) against transformers itself. `bench/hf_fixture.py`
//! built, with transformers 5.24, a tiny model of each architecture physlab exports to (GPT-NeoX with intermediate
//! 4d and d, GPT-2, Llama, Phi-3; 2 layers, d = 16, 2 heads, vocab 40, weights N(0, 0.3²)) and saved it with
//! `save_pretrained` into `tests/fixtures/hf/<name>/`, with its float32 logits for two fixed rows of 12 tokens.
//! Here physlab imports each folder (config.json → `GptShape`, tensors → burn's names and layouts), computes the
//! logits on the CPU backend, and exports the weights again:
//!
//! - the logits agree: max|physlab − transformers| / max|transformers| < 1e-5 (both float32; measured 2.9e-7
//!   (neox) to 1.3e-6 (phi3), the float32 roundoff of a few hundred operations; on the neox fixture, reading
//!   `query_key_value` in physlab's [q, k, v] order instead of per head moves them by 1.0 of their scale,
//!   rotating whole heads by 0.58, a LayerNorm ε of 1e-6 by 7.6e-5);
//! - the export of the imported weights is exactly transformers' file: the same tensor names, shapes and bits
//!   (so the names and shapes physlab writes are the ones transformers wrote, and import ∘ export is the identity);
//! - physlab → transformers → physlab is the identity on a fresh model of every exportable family;
//! - GPT-NeoX's `query_key_value` rows are physlab's qkv columns interleaved per head, value by value;
//! - gpt2mlp0, moe and LoRA shapes are refused with a one-line reason.
//!
//! transformers is not needed to run this test.

use std::path::PathBuf;

use physlab_trainer::burn::tensor::{Int, Tensor, TensorData};
use physlab_trainer::hf::{self, HfArch, Tensor32, Tensors};
use physlab_trainer::model::Family;
use physlab_trainer::{Cpu, ModelConfig};
use safetensors::{Dtype, SafeTensors};

const TOL_LOGITS: f64 = 1e-5;

fn fixture_dir(name: &str) -> PathBuf {
    [env!("CARGO_MANIFEST_DIR"), "tests", "fixtures", "hf", name]
        .iter()
        .collect()
}

/// (config.json, model.safetensors tensors, input ids [rows][T], logits [rows·T·V]).
fn load_fixture(name: &str) -> (serde_json::Value, Tensors, Vec<Vec<i64>>, Vec<f32>) {
    let dir = fixture_dir(name);
    let config = serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    let tensors = hf::read_safetensors(&std::fs::read(dir.join("model.safetensors")).unwrap())
        .expect("reads the fixture");
    let bytes = std::fs::read(dir.join("logits.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let ids = st.tensor("input_ids").unwrap();
    assert_eq!(ids.dtype(), Dtype::I64);
    let t = ids.shape()[1];
    let flat: Vec<i64> = ids
        .data()
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
        .collect();
    let logits = st.tensor("logits").unwrap();
    assert_eq!(logits.dtype(), Dtype::F32);
    let logits = logits
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    (
        config,
        tensors,
        flat.chunks(t).map(|c| c.to_vec()).collect(),
        logits,
    )
}

const FIXTURES: [(&str, HfArch, Family); 5] = [
    ("neox", HfArch::GptNeox, Family::Gpt2),
    ("neox_mlp1", HfArch::GptNeox, Family::Gpt2mlp1),
    ("gpt2", HfArch::Gpt2, Family::Gpt2abs),
    ("llama", HfArch::Llama, Family::Llama),
    ("phi3", HfArch::Phi3, Family::Llama),
];

fn bits(t: &Tensors) -> Vec<(String, Vec<usize>, Vec<u32>)> {
    t.iter()
        .map(|(n, t)| {
            (
                n.clone(),
                t.shape.clone(),
                t.data.iter().map(|v| v.to_bits()).collect(),
            )
        })
        .collect()
}

#[test]
fn transformers_fixtures_import_with_the_same_logits_and_export_back_bit_for_bit() {
    for (name, arch, family) in FIXTURES {
        let (config, hf_tensors, ids, want) = load_fixture(name);
        let (shape, got_arch) = hf::shape_from_hf_config(&config).expect(name);
        assert_eq!((got_arch, shape.arch.family), (arch, family), "{name}");
        assert_eq!(
            (shape.n_layer, shape.n_head, shape.d_model, shape.vocab_size),
            (2, 2, 16, 40)
        );
        assert_eq!(
            shape.rotary_dims,
            match name {
                "gpt2" => 0,
                "llama" => 8,
                _ => 4,
            },
            "{name}"
        );
        assert_eq!(hf::hf_arch(&shape), Ok(arch), "{name}");

        let physlab = hf::from_hf_tensors(&shape, &hf_tensors).expect(name);
        let device = Default::default();
        let model = hf::model_from_tensors::<Cpu>(&shape, &physlab, &device).expect(name);
        let (b, t) = (ids.len(), ids[0].len());
        let flat: Vec<i32> = ids.iter().flatten().map(|&x| x as i32).collect();
        let x = Tensor::<Cpu, 2, Int>::from_data(TensorData::new(flat, [b, t]), &device);
        let got: Vec<f32> = model.forward(x).into_data().iter::<f32>().collect();
        assert_eq!(got.len(), want.len(), "{name}");
        let scale = want.iter().fold(0f64, |m, v| m.max(v.abs() as f64));
        let diff = got
            .iter()
            .zip(&want)
            .fold(0f64, |m, (a, b)| m.max((a - b).abs() as f64));
        eprintln!("{name}: max |Δlogit| / max |logit| = {:.2e}", diff / scale);
        assert!(
            diff / scale < TOL_LOGITS,
            "{name}: physlab's logits differ from transformers' by {:.3e} of their scale",
            diff / scale
        );

        // Exporting the imported weights gives transformers' own file back: names, shapes and bits.
        let again = hf::to_hf_tensors(&shape, &hf::model_tensors(&model).unwrap()).expect(name);
        assert_eq!(again.0, arch);
        assert_eq!(bits(&again.1), bits(&hf_tensors), "{name}");
        // And physlab writes the config transformers would read back as the same model.
        let cfg = hf::hf_config(&shape, arch, serde_json::json!({}));
        assert_eq!(hf::shape_from_hf_config(&cfg), Ok((shape, arch)), "{name}");
    }
}

/// A fresh physlab model's tensors, values drawn from the seed.
fn fresh(preset: &str, rotary_fraction: f64) -> (physlab_trainer::GptShape, Tensors) {
    let cfg = ModelConfig {
        preset: preset.into(),
        d_model: 32,
        rotary_fraction,
        ..ModelConfig::default()
    };
    let shape = cfg.shape(24, 16).unwrap();
    let model = physlab_trainer::train::init_model::<Cpu>(&shape, 7, &Default::default()).unwrap();
    (shape, hf::model_tensors(&model).unwrap())
}

#[test]
fn physlab_to_transformers_and_back_is_the_identity() {
    for (preset, frac, arch) in [
        ("gpt2-2-4", 0.25, HfArch::GptNeox),
        ("gpt2mlp1-1-2", 0.5, HfArch::GptNeox),
        ("gpt2abs-2-2", 0.25, HfArch::Gpt2),
        ("llama-2-2", 1.0, HfArch::Llama),
        ("llama-2-4", 0.25, HfArch::Phi3),
    ] {
        let (shape, physlab) = fresh(preset, frac);
        let (got, hf_tensors) = hf::to_hf_tensors(&shape, &physlab).expect(preset);
        assert_eq!(got, arch, "{preset}");
        let back = hf::from_hf_tensors(&shape, &hf_tensors).expect(preset);
        assert_eq!(bits(&back), bits(&physlab), "{preset}");
        // Through the safetensors bytes and a config.json too.
        let bytes = hf::write_safetensors(&hf_tensors, &[("format", "pt")]);
        let cfg = hf::hf_config(&shape, arch, serde_json::json!({}));
        let (shape2, _) = hf::shape_from_hf_config(&cfg).unwrap();
        assert_eq!(shape2, shape, "{preset}");
        let back =
            hf::from_hf_tensors(&shape2, &hf::read_safetensors(&bytes).unwrap()).expect(preset);
        assert_eq!(bits(&back), bits(&physlab), "{preset}");
    }
}

/// GPT-NeoX views `query_key_value`'s output as [heads, 3 · head_dim] and chunks it into q, k, v
/// (`GPTNeoXAttention.forward`); physlab's qkv output is [3, heads, head_dim]. With qkv.weight[i][c] = 1000·i + c,
/// row r = h·3·hd + p·hd + j of the exported weight must hold column c = p·d + h·hd + j, for every input i.
#[test]
fn neox_query_key_value_interleaves_q_k_v_per_head() {
    let (shape, mut physlab) = fresh("gpt2-1-4", 0.25);
    let (d, hd) = (shape.d_model, shape.head_dim());
    let w = physlab.get_mut("blocks.0.attn.qkv.weight").unwrap();
    assert_eq!(w.shape, vec![d, 3 * d]);
    for i in 0..d {
        for c in 0..3 * d {
            w.data[i * 3 * d + c] = (1000 * i + c) as f32;
        }
    }
    let b = physlab.get_mut("blocks.0.attn.qkv.bias").unwrap();
    b.data = (0..3 * d).map(|c| c as f32).collect();
    let (_, out) = hf::to_hf_tensors(&shape, &physlab).unwrap();
    let w = &out["gpt_neox.layers.0.attention.query_key_value.weight"];
    let b = &out["gpt_neox.layers.0.attention.query_key_value.bias"];
    assert_eq!(w.shape, vec![3 * d, d]);
    for h in 0..shape.n_head {
        for p in 0..3 {
            for j in 0..hd {
                let r = h * 3 * hd + p * hd + j;
                let c = p * d + h * hd + j;
                assert_eq!(b.data[r], c as f32);
                for i in 0..d {
                    assert_eq!(
                        w.data[r * d + i],
                        (1000 * i + c) as f32,
                        "row {r}, input {i}"
                    );
                }
            }
        }
    }
    // The other Linear weights are plain transposes ([in, out] → [out, in]).
    let proj = &physlab["blocks.0.attn.proj.weight"];
    let dense = &out["gpt_neox.layers.0.attention.dense.weight"];
    assert_eq!(dense.data[3 * d + 5], proj.data[5 * d + 3]);
    // And the tied output layer is not written (transformers ties it to the embedding).
    assert!(!out.contains_key("lm_head.weight"));
    assert_eq!(out["gpt_neox.embed_in.weight"], physlab["wte.weight"]);
}

#[test]
fn families_without_a_standard_equivalent_are_refused() {
    for (preset, what) in [
        ("gpt2mlp0-1-1", "gpt2mlp0 has no feed-forward part"),
        ("moe-1-1", "moe (a top-1 mixture"),
    ] {
        let shape = ModelConfig {
            preset: preset.into(),
            d_model: 16,
            experts: 2,
            ..ModelConfig::default()
        }
        .shape(8, 8)
        .unwrap();
        let err = hf::hf_arch(&shape).unwrap_err();
        assert!(err.contains(what) && !err.contains('\n'), "{err}");
        assert!(hf::to_hf_tensors(&shape, &Tensors::new()).is_err());
    }
    let mut shape = ModelConfig::default().shape(8, 8).unwrap();
    shape.lora.qv_rank = 2;
    assert!(hf::hf_arch(&shape).unwrap_err().contains("LoRA"));
}

#[test]
fn import_refuses_what_physlab_cannot_compute() {
    let (config, hf_tensors, _, _) = load_fixture("neox");
    let refused = |key: &str, v: serde_json::Value, want: &str| {
        let mut c = config.clone();
        c[key] = v;
        let err = hf::shape_from_hf_config(&c).unwrap_err();
        assert!(err.contains(want), "{key}: {err}");
    };
    refused(
        "use_parallel_residual",
        serde_json::json!(true),
        "use_parallel_residual",
    );
    refused("hidden_act", serde_json::json!("gelu_new"), "hidden_act");
    refused("layer_norm_eps", serde_json::json!(1e-6), "layer_norm_eps");
    refused(
        "intermediate_size",
        serde_json::json!(40),
        "intermediate_size",
    );
    refused("model_type", serde_json::json!("mistral"), "mistral");
    let (shape, _) = hf::shape_from_hf_config(&config).unwrap();
    // A tensor of another shape, a missing one and an extra one are each named.
    let mut t = hf_tensors.clone();
    t.insert(
        "gpt_neox.layers.0.attention.dense.weight".into(),
        Tensor32 {
            shape: vec![16, 15],
            data: vec![0.0; 240],
        },
    );
    let err = hf::from_hf_tensors(&shape, &t).unwrap_err();
    assert!(
        err.contains("attention.dense.weight") && err.contains("[16, 15]"),
        "{err}"
    );
    let mut t = hf_tensors.clone();
    t.remove("gpt_neox.final_layer_norm.bias");
    assert!(hf::from_hf_tensors(&shape, &t)
        .unwrap_err()
        .contains("final_layer_norm.bias"));
    let mut t = hf_tensors.clone();
    t.insert(
        "gpt_neox.layers.9.extra".into(),
        Tensor32 {
            shape: vec![1],
            data: vec![0.0],
        },
    );
    assert!(hf::from_hf_tensors(&shape, &t)
        .unwrap_err()
        .contains("layers.9.extra"));
    // A tied output layer saved beside the embedding must equal it.
    let mut t = hf_tensors.clone();
    let mut head = t["gpt_neox.embed_in.weight"].clone();
    t.insert("lm_head.weight".into(), head.clone());
    assert!(hf::from_hf_tensors(&shape, &t).is_ok());
    head.data[0] += 1.0;
    t.insert("lm_head.weight".into(), head);
    assert!(hf::from_hf_tensors(&shape, &t)
        .unwrap_err()
        .contains("tied"));
}
