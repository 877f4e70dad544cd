//! The lab as a library: recipes (workspace.toml → indexed runs), the run folder (lock and lease, move aside,
//! manifest, DONE), the bioS and corpus pipelines (generate → train → evaluate), the shared dataset store, the
//! report (statistics, fits, plots), sweeps on many machines (plan, worker, Slurm), checks against committed
//! reports, dataset and model exports, and the benchmarks. The `physlab` binary is argument parsing over it.

pub mod bench;
pub mod check;
pub mod evaluate;
pub mod generate;
pub mod hf;
pub mod lease;
pub mod probe;
pub mod recipe;
pub mod report;
pub mod run;
pub mod sample;
pub mod sweep;
