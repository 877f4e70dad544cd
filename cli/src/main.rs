//! `physlab`: run named experiment recipes from workspace.toml end to end
//! (generate → train → evaluate → table), or validate them without training.

mod recipe;
mod run;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "physlab",
    version,
    about = "Controlled experiments on language models with synthetic data of known content"
)]
struct Cli {
    /// The recipe file.
    #[arg(long, global = true, default_value = "workspace.toml")]
    workspace: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate the dataset, train, evaluate and print the table, for every point of an experiment.
    Run {
        experiment: String,
        /// Override a recipe key: `--set train.exposures=50` (highest precedence).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
        /// Run only the point with this index (see `physlab validate <experiment>`).
        #[arg(long)]
        point: Option<usize>,
        /// Where run folders go.
        #[arg(long, default_value = "runs")]
        runs: PathBuf,
        /// Check the recipe and print the plan, without generating or training.
        #[arg(long)]
        dry_run: bool,
    },
    /// Check a recipe (or all of them) without training: keys, values, points and the budget arithmetic.
    Validate {
        experiment: Option<String>,
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
    },
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_target(false)
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = real_main() {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn real_main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Run {
            experiment,
            sets,
            point,
            runs,
            dry_run,
        } => {
            let ws = recipe::Workspace::load(&cli.workspace)?;
            let sets = sets
                .iter()
                .map(|s| recipe::parse_set(s))
                .collect::<Result<Vec<_>>>()?;
            let points = ws.points(&experiment, &sets)?;
            run::run_experiment(&experiment, &points, point, &runs, dry_run)
        }
        Command::Validate { experiment, sets } => {
            let ws = recipe::Workspace::load(&cli.workspace)?;
            let sets = sets
                .iter()
                .map(|s| recipe::parse_set(s))
                .collect::<Result<Vec<_>>>()?;
            let names: Vec<String> = match experiment {
                Some(e) => vec![e],
                None => ws.experiments.keys().cloned().collect(),
            };
            let mut failed = 0;
            for name in &names {
                match ws.points(name, &sets) {
                    Ok(points) => {
                        println!("{name}: ok, {} point(s)", points.len());
                        for p in &points {
                            println!("  {}", run::plan_line(p)?);
                        }
                    }
                    Err(e) => {
                        failed += 1;
                        println!("{name}: INVALID\n{e:#}");
                    }
                }
            }
            if failed > 0 {
                anyhow::bail!(
                    "{failed} experiment(s) invalid in {}",
                    cli.workspace.display()
                );
            }
            Ok(())
        }
    }
}
