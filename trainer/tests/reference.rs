//! physlab's model against an independent PyTorch implementation (as llm.c's `test_gpt2.c` checks its C model
//! against a PyTorch dump). `bench/torch_reference.py` writes, for a tiny model of each family (2 layers, d = 32,
//! vocab 50, context 16, batch 2, seeded weights), the weights, tokens, logits, loss and the gradient of the loss
//! with respect to every parameter into `tests/fixtures/reference/<family>.safetensors`, computed in float64 from
//! weights that are exact in float32. Here physlab loads those weights into the model of the same shape on the CPU
//! backend (`CpuTrain`), runs forward and backward in float32, and must agree — with the fused kernels (the
//! default) and with the plain burn compositions (`kernels::set_fused(false)`). PyTorch is not needed to run it.
//!
//! Metric: for each tensor, max|physlab − reference| / max|reference| (the error relative to the tensor's scale);
//! for the loss, |physlab − reference| / |reference|. Tolerances, the same for every family and both paths:
//!
//! | compared                                   | tolerance | largest measured (fused / plain, all families) |
//! |--------------------------------------------|-----------|------------------------------------------------|
//! | logits                                     | 1e-5      | 1.2e-6                                         |
//! | loss (moe: also its lm and aux parts)      | 1e-6      | 1.2e-7                                         |
//! | gradient, per parameter tensor             | 3e-5      | 3.2e-6                                         |
//!
//! Why these: the reference has no rounding of its own (float64), so what remains is physlab's float32 arithmetic.
//! The unit roundoff is 6e-8; a logit comes out of a few hundred roundings (dot products of length ≤ 128,
//! softmaxes, normalisations, 2 layers), an error of order 1e-6 of the logits' scale, as measured. A gradient goes
//! through the forward and the backward pass and the cancellations of the normalisation and softmax backward, and
//! is compared tensor by tensor, each against its own scale: a few 1e-6, as measured. Each tolerance is about 10×
//! the largest error measured on this machine (room for other CPUs' GEMM kernels and summation orders), and far
//! below what a mistake in the mathematics does: `python3 bench/torch_reference.py --sensitivity` measures that a
//! LayerNorm/RMSNorm ε of 1e-6 instead of 1e-5 moves the logits by ≥ 7e-4 of their scale (the fixtures give the
//! first norm an input of variance 0.01 so that ε shows), the tanh GELU instead of erf by ≥ 1.4e-4, a rotary base
//! of 20 000 by ≥ 6.9e-3, interleaved instead of rotate-half rotary, rotating the whole head, another attention scale
//! or a missing qkv bias by ≥ 0.1, dropping no token or not scaling by the router probability in the mixture by
//! ≥ 0.3, and counting only kept tokens in the load-balancing loss moves the loss by 6.5e-3.
//!
//! The moe fixture drops 6 tokens (capacity ⌈1.25 · 32 / 4⌉ = 10, an expert chosen by 14 and one by 12 in layer
//! 1), every expert keeps a token in every layer, and every top-1 router probability beats the second by ≥ 0.014,
//! so float32 cannot route differently from float64.
//!
//! The fused/plain switch is process-global: the tests of this file take a lock, and each runs its family fused,
//! then plain.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Mutex;

use physlab_trainer::burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use physlab_trainer::burn::tensor::backend::AutodiffBackend;
use physlab_trainer::burn::tensor::{Int, Tensor, TensorData};
use physlab_trainer::model::token_nll;
use physlab_trainer::{kernels, CpuTrain, ModelConfig};
use safetensors::{Dtype, SafeTensors};

const TOL_LOGITS: f64 = 1e-5;
const TOL_LOSS: f64 = 1e-6;
const TOL_GRAD: f64 = 3e-5;

/// The fused/plain switch is process-global: one family at a time.
static SERIAL: Mutex<()> = Mutex::new(());

type Grads = <CpuTrain as AutodiffBackend>::Gradients;

/// A tensor's shape and values.
type Dense = (Vec<usize>, Vec<f64>);

/// A fixture file: metadata, float tensors (as f64; every value is exact in f32 but the losses), integer tensors.
struct Fixture {
    meta: HashMap<String, String>,
    floats: BTreeMap<String, Dense>,
    ints: BTreeMap<String, (Vec<usize>, Vec<i64>)>,
}

impl Fixture {
    fn load(family: &str) -> Fixture {
        let path: PathBuf = [
            env!("CARGO_MANIFEST_DIR"),
            "tests",
            "fixtures",
            "reference",
            &format!("{family}.safetensors"),
        ]
        .iter()
        .collect();
        let bytes = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (regenerate with `python3 bench/torch_reference.py`)",
                path.display()
            )
        });
        let (_, header) = SafeTensors::read_metadata(&bytes).expect("safetensors header");
        let meta = header.metadata().clone().unwrap_or_default();
        let st = SafeTensors::deserialize(&bytes).expect("safetensors file");
        let mut floats = BTreeMap::new();
        let mut ints = BTreeMap::new();
        for (name, view) in st.tensors() {
            let shape = view.shape().to_vec();
            let data = view.data();
            match view.dtype() {
                // The weights: bfloat16 values, widened to f32 (and f64) exactly.
                Dtype::BF16 => {
                    let v = data
                        .chunks_exact(2)
                        .map(|c| {
                            f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16) as f64
                        })
                        .collect();
                    floats.insert(name, (shape, v));
                }
                Dtype::F32 => {
                    let v = data
                        .chunks_exact(4)
                        .map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64)
                        .collect();
                    floats.insert(name, (shape, v));
                }
                Dtype::F64 => {
                    let v = data
                        .chunks_exact(8)
                        .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
                        .collect();
                    floats.insert(name, (shape, v));
                }
                Dtype::I64 => {
                    let v = data
                        .chunks_exact(8)
                        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                        .collect();
                    ints.insert(name, (shape, v));
                }
                other => panic!("{family}: tensor {name} has unexpected dtype {other:?}"),
            }
        }
        Fixture { meta, floats, ints }
    }

    fn meta<T: std::str::FromStr>(&self, key: &str) -> T {
        self.meta
            .get(key)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("fixture metadata {key:?} missing or malformed"))
    }

    fn float(&self, name: &str) -> &Dense {
        self.floats
            .get(name)
            .unwrap_or_else(|| panic!("fixture has no tensor {name:?}"))
    }

    fn scalar(&self, name: &str) -> f64 {
        self.float(name).1[0]
    }

    /// The parameters (every float tensor but the outputs and gradients).
    fn weights(&self) -> BTreeMap<&str, &Dense> {
        self.floats
            .iter()
            .filter(|(k, _)| {
                !k.starts_with("grad.")
                    && !matches!(k.as_str(), "logits" | "loss" | "lm_loss" | "aux_loss")
            })
            .map(|(k, v)| (k.as_str(), v))
            .collect()
    }

    fn tokens(&self, name: &str) -> Tensor<CpuTrain, 2, Int> {
        let (shape, v) = &self.ints[name];
        let v: Vec<i32> = v.iter().map(|&x| x as i32).collect();
        Tensor::from_data(
            TensorData::new(v, [shape[0], shape[1]]),
            &Default::default(),
        )
    }
}

/// Replaces every parameter by the fixture's tensor of the same burn module path (enum variants included, as
/// physlab's safetensors checkpoints name them); records paths it could not fill.
struct Load<'a> {
    path: Vec<String>,
    weights: &'a BTreeMap<&'a str, &'a Dense>,
    loaded: Vec<String>,
    problems: Vec<String>,
}

impl ModuleMapper<CpuTrain> for Load<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }
    fn map_float<const D: usize>(
        &mut self,
        param: Param<Tensor<CpuTrain, D>>,
    ) -> Param<Tensor<CpuTrain, D>> {
        let name = self.path.join(".");
        let want = param.lazy_shape();
        match self.weights.get(name.as_str()) {
            Some((shape, v)) if shape.as_slice() == want.as_slice() => {
                let data: Vec<f32> = v.iter().map(|&x| x as f32).collect();
                let t = Tensor::<CpuTrain, D>::from_data(
                    TensorData::new(data, shape.clone()),
                    &param.lazy_device(),
                );
                self.loaded.push(name);
                let id = param.id;
                param.transform_for_load(t, id)
            }
            Some((shape, _)) => {
                self.problems.push(format!(
                    "{name}: fixture shape {shape:?}, model {:?}",
                    want.as_slice()
                ));
                param
            }
            None => {
                self.problems.push(format!(
                    "{name}: not in the fixture ({:?})",
                    want.as_slice()
                ));
                param
            }
        }
    }
}

/// Every parameter's gradient, by module path (None: the parameter got no gradient).
struct CollectGrads<'a> {
    path: Vec<String>,
    grads: &'a Grads,
    out: Vec<(String, Option<Dense>)>,
}

impl ModuleVisitor<CpuTrain> for CollectGrads<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<CpuTrain, D>>) {
        let g = param.val().grad(self.grads).map(|g| {
            (
                g.dims().to_vec(),
                g.into_data().iter::<f32>().map(|x| x as f64).collect(),
            )
        });
        self.out.push((self.path.join("."), g));
    }
}

/// max|a − r| and max|r|.
fn errors(got: &[f64], want: &[f64]) -> (f64, f64) {
    assert_eq!(got.len(), want.len());
    let abs = got
        .iter()
        .zip(want)
        .map(|(a, r)| (a - r).abs())
        .fold(0.0, f64::max);
    let scale = want.iter().map(|r| r.abs()).fold(0.0, f64::max);
    (abs, scale)
}

/// What one path (fused or plain) measured: the largest relative error per kind, and failures.
#[derive(Default)]
struct Report {
    logits: (f64, f64),
    loss: (f64, f64),
    /// (abs, rel, tensor) of the gradient tensor with the largest relative error.
    grad: (f64, f64, String),
    failures: Vec<String>,
}

fn check_path(family: &str, fx: &Fixture, fused: bool) -> Report {
    kernels::set_fused(fused);
    let device = Default::default();
    let mut cfg = ModelConfig {
        preset: fx.meta("preset"),
        d_model: fx.meta("d_model"),
        rotary_fraction: fx.meta("rotary_fraction"),
        rope_base: fx.meta("rope_base"),
        ..ModelConfig::default()
    };
    if family == "moe" {
        cfg.experts = fx.meta("experts");
        cfg.capacity_factor = fx.meta("capacity_factor");
        cfg.router_aux_weight = fx.meta("router_aux_weight");
    }
    let shape = cfg
        .shape(fx.meta("vocab_size"), fx.meta("context"))
        .unwrap_or_else(|e| panic!("{family}: {e}"));
    assert_eq!(
        shape.n_layer,
        fx.meta::<usize>("n_layer"),
        "{family}: layers"
    );
    assert_eq!(shape.n_head, fx.meta::<usize>("n_head"), "{family}: heads");
    assert_eq!(
        shape.rotary_dims,
        fx.meta::<usize>("rotary_dims"),
        "{family}: physlab and the reference disagree on the rotated dims per head"
    );

    // Load the reference weights; every parameter must be filled and every fixture weight used.
    let weights = fx.weights();
    let mut load = Load {
        path: Vec::new(),
        weights: &weights,
        loaded: Vec::new(),
        problems: Vec::new(),
    };
    let model = shape.init::<CpuTrain>(&device).map(&mut load);
    let unused: Vec<&&str> = weights
        .keys()
        .filter(|k| !load.loaded.iter().any(|l| l == *k))
        .collect();
    assert!(
        load.problems.is_empty() && unused.is_empty(),
        "{family}: weights do not fit the model: {:?}; unused fixture weights: {unused:?}",
        load.problems
    );

    let (logits, aux) = model.forward_aux(fx.tokens("tokens"));
    assert_eq!(
        aux.is_some(),
        family == "moe",
        "{family}: a load-balancing loss comes with the mixture of experts only"
    );
    let lm_loss = token_nll(logits.clone(), fx.tokens("targets")).mean();
    let loss = match &aux {
        Some(a) => lm_loss.clone() + a.clone().mul_scalar(shape.router_aux_weight),
        None => lm_loss.clone(),
    };
    let mut rep = Report::default();
    let mut failures = Vec::new();

    // Logits.
    let (want_shape, want) = fx.float("logits");
    assert_eq!(
        logits.dims().as_slice(),
        want_shape.as_slice(),
        "{family}: logits shape"
    );
    let got: Vec<f64> = logits.into_data().iter::<f32>().map(|x| x as f64).collect();
    let (abs, scale) = errors(&got, want);
    rep.logits = (abs, abs / scale);
    check(
        &mut failures,
        format!("logits (max |ref| {scale:.3})"),
        abs / scale,
        TOL_LOGITS,
    );

    // Losses: the differentiated loss, and for a mixture its language-model and load-balancing parts.
    let value = |t: Tensor<CpuTrain, 1>| t.into_scalar() as f64;
    let mut losses = vec![("loss", value(loss.clone()))];
    if let Some(a) = &aux {
        losses.push(("lm_loss", value(lm_loss.clone())));
        losses.push(("aux_loss", value(a.clone())));
    }
    for (name, got) in losses {
        let want = fx.scalar(name);
        let abs = (got - want).abs();
        let rel = abs / want.abs();
        if rel >= rep.loss.1 {
            rep.loss = (abs, rel);
        }
        check(
            &mut failures,
            format!("{name} {got:.7} vs {want:.7}"),
            rel,
            TOL_LOSS,
        );
    }

    // Gradients of every parameter.
    let grads = loss.backward();
    let mut collect = CollectGrads {
        path: Vec::new(),
        grads: &grads,
        out: Vec::new(),
    };
    model.visit(&mut collect);
    for (name, got) in collect.out {
        let (want_shape, want) = fx.float(&format!("grad.{name}"));
        let Some((got_shape, got)) = got else {
            failures.push(format!("grad.{name}: physlab gives no gradient"));
            continue;
        };
        assert_eq!(&got_shape, want_shape, "{family}: grad.{name} shape");
        let (abs, scale) = errors(&got, want);
        let rel = abs / scale;
        if rel >= rep.grad.1 {
            rep.grad = (abs, rel, name.clone());
        }
        check(
            &mut failures,
            format!("grad.{name} (max |ref| {scale:.3e})"),
            rel,
            TOL_GRAD,
        );
    }
    rep.failures = failures;
    rep
}

fn check(failures: &mut Vec<String>, what: String, rel: f64, tol: f64) {
    if rel.is_nan() || rel > tol {
        failures.push(format!("{what}: relative error {rel:.3e} > {tol:.0e}"));
    }
}

/// Runs one family fused then plain, prints what each measured, and fails with every tensor out of tolerance.
fn reference(family: &str) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let fx = Fixture::load(family);
    assert_eq!(fx.meta::<String>("family"), family);
    let mut failures = Vec::new();
    for fused in [true, false] {
        let rep = check_path(family, &fx, fused);
        let mode = if fused { "fused" } else { "plain" };
        println!(
            "{family:9} {mode}: logits abs {:.2e} rel {:.2e} | loss abs {:.2e} rel {:.2e} | grads max rel {:.2e} (abs {:.2e}, {})",
            rep.logits.0, rep.logits.1, rep.loss.0, rep.loss.1, rep.grad.1, rep.grad.0, rep.grad.2
        );
        failures.extend(rep.failures.into_iter().map(|f| format!("{mode}: {f}")));
    }
    kernels::set_fused(true);
    assert!(
        failures.is_empty(),
        "{family} disagrees with the PyTorch reference (tolerances: logits {TOL_LOGITS:.0e}, loss {TOL_LOSS:.0e}, grads {TOL_GRAD:.0e} of max|ref|):\n{}",
        failures.join("\n")
    );
}

#[test]
fn gpt2() {
    reference("gpt2");
}

#[test]
fn gpt2abs() {
    reference("gpt2abs");
}

#[test]
fn gpt2mlp1() {
    reference("gpt2mlp1");
}

#[test]
fn gpt2mlp0() {
    reference("gpt2mlp0");
}

#[test]
fn llama() {
    reference("llama");
}

#[test]
fn moe() {
    reference("moe");
}
