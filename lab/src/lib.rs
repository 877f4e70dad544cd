//! The lab as a library: recipes (workspace.toml → indexed runs), the run folder (lock and lease, move aside,
//! manifest, DONE), the bioS and corpus pipelines (generate → train → evaluate), the shared dataset store, the
//! report (statistics, fits, plots), sweeps on many machines (plan, worker, Slurm), checks against committed
//! reports, dataset and model exports, and the benchmarks. The `physlab` binary is argument parsing over it.
//!
//! Another program can plan, run and report an experiment of a workspace.toml without the binary:
//!
//! ```no_run
//! use physlab_lab::{recipe::Workspace, report, run};
//! use std::path::Path;
//!
//! # fn main() -> anyhow::Result<()> {
//! let ws = Workspace::load(Path::new("workspace.toml"))?;
//! let points = ws.points("quickstart", &[])?;
//! let runs = Path::new("runs");
//! // Every point, one after another, resumably, on the CPU (or `--index` one: `run::run_point`).
//! run::run_experiment("quickstart", &points, None, runs, false, true, run::BackendKind::Cpu, false)?;
//! // The report in its three stages: what was run, what it says, and the files.
//! let loaded = report::load(runs, "quickstart")?;
//! let computed = report::compute(
//!     "quickstart",
//!     &runs.join("quickstart"),
//!     &loaded,
//!     &ws.report_spec("quickstart")?,
//!     "",
//! )?;
//! for (point, seeds) in &computed.points {
//!     println!("{point}: seeds {seeds:?}");
//! }
//! println!("{}", report::render_md(&computed)?);
//! # Ok(())
//! # }
//! ```

pub mod bench;
pub mod check;
pub mod evaluate;
pub mod generate;
pub mod hf;
pub mod index;
pub mod lease;
pub mod probe;
pub mod recipe;
pub mod report;
pub mod run;
pub mod sample;
pub mod sweep;
