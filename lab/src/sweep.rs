//! A sweep on many machines (issue 16): `physlab plan` / `status` (index → point, seed, folder, tokens, state,
//! ETA; they read, never lock) and `physlab worker`, which claims runs by their lease, runs them and exits when
//! none is left, so any number of workers on hosts that share the runs folder drain a sweep with no coordinator.

use std::path::Path;

use anyhow::{bail, Result};
use tracing::info;

use crate::lease::{is_fresh, read_lease, InUse};
use crate::recipe::Point;
use crate::report::Recorded;
use crate::run::{plan, run_dir, run_point, BackendKind};

/// Where a run stands, read from its folder without taking its lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Done,
    /// A live holder's lease (a fresh heartbeat, and on this host a live pid).
    Running,
    /// A lease whose holder is gone: the next run or worker takes it over and resumes.
    Stale,
    /// A folder without DONE and without a holder (stopped, failed or killed): `--resume` continues it.
    Unfinished,
    Pending,
    /// Not finished here, but measured already: its record is in a run-records file (`--records`).
    Recorded,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Done => "done",
            State::Running => "running",
            State::Stale => "stale",
            State::Unfinished => "unfinished",
            State::Pending => "pending",
            State::Recorded => "recorded",
        }
    }
}

fn pid_alive(pid: u32) -> bool {
    // SAFETY: kill with signal 0 only checks that the process exists (and may be signalled).
    let r = unsafe { libc::kill(pid as libc::pid_t, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

pub fn state(dir: &Path) -> State {
    if dir.join("DONE").exists() {
        return State::Done;
    }
    if let Some(l) = read_lease(dir) {
        let alive = if l.host == crate::lease::hostname() {
            pid_alive(l.pid)
        } else {
            is_fresh(&l)
        };
        return if alive { State::Running } else { State::Stale };
    }
    if dir.exists() {
        State::Unfinished
    } else {
        State::Pending
    }
}

/// The last metrics line of a run: (step, elapsed seconds).
fn progress(dir: &Path) -> Option<(f64, f64)> {
    let text = std::fs::read_to_string(dir.join("metrics.jsonl")).ok()?;
    let v: serde_json::Value = serde_json::from_str(text.lines().last()?).ok()?;
    Some((v["step"].as_f64()?, v["elapsed_s"].as_f64()?))
}

fn hms(s: f64) -> String {
    let s = s.max(0.0) as u64;
    format!("{}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
}

/// Times a point's training step here, in seconds (`physlab plan --time`).
pub type StepTimer<'a> = dyn FnMut(&Point) -> Result<f64> + 'a;

/// What [`print_plan`] counted, for a total over several experiments (`physlab plan A B:3,4`).
#[derive(Clone, Debug, Default)]
pub struct PlanTotals {
    pub runs: usize,
    /// State name → runs.
    pub counts: std::collections::BTreeMap<&'static str, usize>,
    /// Seconds of training left: the running runs' ETAs plus the steps still to run at the step time known.
    pub left_s: f64,
    /// Runs whose remaining steps have no step time (nothing measured in the experiment and none timed here), so
    /// `left_s` leaves them out.
    pub unknown: usize,
    /// Whether `left_s` uses a step time timed on this machine (`--time`) rather than one measured by a run.
    pub timed_here: bool,
    /// Each run with training left (running, unfinished or pending), by index: its seconds left (None: no step
    /// time known), for the queue-order timeline.
    pub left_by_index: std::collections::BTreeMap<usize, Option<f64>>,
}

/// Prints index → point, seed, run folder, tokens, steps and state; for running and unfinished runs their
/// progress and ETA (from their metrics), and the sweep's remaining time (running ETAs plus the pending runs at
/// the mean time per step of the runs measured so far; with none measured, at the step time `time_step` gives for
/// each, timed here, when given).
/// A run recorded in `recorded` shows as recorded and adds nothing to the time left, unless its folder is
/// finished (the folder wins, as in `physlab report`) or a live process is running it.
pub fn print_plan(
    experiment: &str,
    points: &[Point],
    runs: &Path,
    recorded: &Recorded,
    time_step: Option<&mut StepTimer<'_>>,
) -> Result<PlanTotals> {
    let mut counts = std::collections::BTreeMap::new();
    let mut remaining = 0.0;
    let mut pending_steps = 0.0;
    // The runs still to train (not running), with their steps left.
    let mut pending: Vec<(&Point, f64)> = Vec::new();
    // The running runs, with their own ETAs.
    let mut running: Vec<(usize, f64)> = Vec::new();
    let (mut measured_steps, mut measured_s) = (0.0, 0.0);
    println!(
        "{:>5}  {:<10} {:>12} {:>9}  {:<44} point / seed",
        "index", "state", "tokens", "steps", "progress"
    );
    for p in points {
        let dir = run_dir(runs, experiment, p);
        let pl = plan(&p.config)?;
        let record = recorded.file_of(&p.name, p.seed);
        let st = match (state(&dir), record) {
            (st @ (State::Done | State::Running), _) | (st, None) => st,
            (_, Some(_)) => State::Recorded,
        };
        *counts.entry(st.name()).or_insert(0) += 1;
        let prog = match (st, progress(&dir)) {
            (State::Done, _) => "finished".to_string(),
            (State::Recorded, _) => record
                .map(|r| format!("in {}", r.display()))
                .unwrap_or_default(),
            (_, Some((step, el))) if step > 0.0 => {
                measured_steps += step;
                measured_s += el;
                let left = el / step * (pl.steps as f64 - step);
                if st == State::Running {
                    remaining += left;
                    running.push((p.index, left));
                } else {
                    pending_steps += pl.steps as f64 - step;
                    pending.push((p, pl.steps as f64 - step));
                }
                format!(
                    "step {step:.0}/{} ({:.0}%), eta {}",
                    pl.steps,
                    100.0 * step / pl.steps as f64,
                    hms(left)
                )
            }
            _ => {
                pending_steps += pl.steps as f64;
                pending.push((p, pl.steps as f64));
                String::new()
            }
        };
        println!(
            "{:>5}  {:<10} {:>12.0} {:>9}  {:<44} {}/s{} ({})",
            p.index,
            st.name(),
            pl.tokens,
            pl.steps,
            prog,
            p.name,
            p.seed,
            dir.display()
        );
    }
    let summary: Vec<String> = counts.iter().map(|(k, v)| format!("{v} {k}")).collect();
    let mut totals = PlanTotals {
        runs: points.len(),
        left_s: remaining,
        ..Default::default()
    };
    totals.left_by_index = running.iter().map(|&(k, s)| (k, Some(s))).collect();
    let rest = if measured_steps > 0.0 {
        totals.left_s += pending_steps * measured_s / measured_steps;
        for (p, steps) in &pending {
            totals
                .left_by_index
                .insert(p.index, Some(steps * measured_s / measured_steps));
        }
        format!(
            "; about {} of training left on one machine at the {:.1} ms/step measured so far",
            hms(totals.left_s),
            1e3 * measured_s / measured_steps
        )
    } else if let Some(time_step) = time_step.filter(|_| !pending.is_empty()) {
        for (p, steps) in &pending {
            let left = steps * time_step(p)?;
            totals.left_s += left;
            totals.left_by_index.insert(p.index, Some(left));
        }
        totals.timed_here = true;
        format!(
            "; about {} of training left on one machine at the step times timed here (5 steps each)",
            hms(totals.left_s)
        )
    } else {
        totals.unknown = pending.len();
        for (p, _) in &pending {
            totals.left_by_index.insert(p.index, None);
        }
        String::new()
    };
    println!(
        "{experiment}: {} run(s): {}{rest}",
        points.len(),
        summary.join(", ")
    );
    totals.counts = counts;
    Ok(totals)
}

/// `EXPERIMENT` or `EXPERIMENT:INDEX[,INDEX…]` (the form scripts/run-queue.sh takes): the experiment and the run
/// indices asked for (None: all of them).
pub fn parse_plan_item(item: &str) -> Result<(&str, Option<Vec<usize>>)> {
    let Some((experiment, list)) = item.split_once(':') else {
        return Ok((item, None));
    };
    let only = list
        .split(',')
        .map(|k| {
            k.trim().parse::<usize>().map_err(|_| {
                anyhow::anyhow!("{item}: {k:?} is not a run index (EXPERIMENT:INDEX[,INDEX…])")
            })
        })
        .collect::<Result<Vec<usize>>>()?;
    Ok((experiment, Some(only)))
}

/// The line closing a plan over several experiments: their runs by state and the training time left in all.
pub fn plan_total_line(experiments: usize, totals: &[PlanTotals]) -> String {
    let mut counts = std::collections::BTreeMap::new();
    for t in totals {
        for (k, v) in &t.counts {
            *counts.entry(*k).or_insert(0) += v;
        }
    }
    let runs: usize = totals.iter().map(|t| t.runs).sum();
    let left: f64 = totals.iter().map(|t| t.left_s).sum();
    let unknown: usize = totals.iter().map(|t| t.unknown).sum();
    let summary: Vec<String> = counts.iter().map(|(k, v)| format!("{v} {k}")).collect();
    let timed = if totals.iter().any(|t| t.timed_here) {
        " (partly at a step timed here)"
    } else {
        ""
    };
    let missing = if unknown > 0 {
        format!(", not counting {unknown} run(s) with no step time yet (--time times one here)")
    } else {
        String::new()
    };
    format!(
        "in all: {runs} run(s) of {experiments} experiment(s): {}; about {} of training left on one machine, one run \
         at a time{timed}{missing}",
        summary.join(", "),
        hms(left)
    )
}

/// The runs with training left in the order a queue runs them (`items`: "EXPERIMENT:INDEX" and the seconds left,
/// None without a step time), one at a time from `now` (Unix seconds): per run its time left and the UTC clock at
/// which it would end; after a run with no step time the later ends are unknown. Empty when no run is left.
pub fn plan_order_lines(items: &[(String, Option<f64>)], now: u64) -> String {
    if items.is_empty() {
        return String::new();
    }
    let day = now / 86_400;
    let clock = |t: f64| {
        let t = t.max(0.0) as u64;
        let days = t / 86_400 - day;
        let hm = format!("{:02}:{:02}", t % 86_400 / 3600, t % 3600 / 60);
        if days > 0 {
            format!("{hm} (+{days}d)")
        } else {
            hm
        }
    };
    let width = items.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
    let mut out = format!(
        "in the order named, one run at a time from {} UTC:\n",
        clock(now as f64)
    );
    let mut end = Some(now as f64);
    for (name, left) in items {
        end = end.zip(*left).map(|(e, l)| e + l);
        let (left, at) = match (left, end) {
            (Some(l), Some(e)) => (hms(*l), format!("ends ~{}", clock(e))),
            (Some(l), None) => (hms(*l), "ends after a run with no step time".to_string()),
            (None, _) => (
                "?".to_string(),
                "no step time yet (--time times one here)".to_string(),
            ),
        };
        out.push_str(&format!("  {name:<width$}  {left:>9}  {at}\n"));
    }
    out
}

/// Claims and runs the runs of `points` that are not done and not held by a live process, one after another
/// (an unfinished or stale one is resumed from its newest checkpoint), until none is left. Returns how many it
/// ran.
pub fn worker(
    experiment: &str,
    points: &[Point],
    runs: &Path,
    backend: BackendKind,
) -> Result<usize> {
    // The checks `physlab run` makes before it starts: the plan and memory of every point, then (per run, as other
    // workers may still be pretraining) that a finetune's pretraining is finished.
    crate::run::preflight(points, backend)?;
    backend.check()?;
    let mut ran = 0;
    let mut waiting: Vec<String> = Vec::new();
    loop {
        let mut claimed = false;
        waiting.clear();
        for p in points {
            let dir = run_dir(runs, experiment, p);
            if matches!(state(&dir), State::Done | State::Running) {
                continue;
            }
            if let Err(e) = crate::run::pretraining_done(p) {
                info!("[{}] {}/s{}: skipped: {e}", p.index, p.name, p.seed);
                waiting.push(format!("[{}] {}/s{}", p.index, p.name, p.seed));
                continue;
            }
            match run_point(experiment, p, &dir, true, backend, false) {
                Ok(()) => {
                    ran += 1;
                    claimed = true;
                }
                Err(e) if e.downcast_ref::<InUse>().is_some() => {
                    info!(
                        "[{}] {}/s{}: taken by another worker",
                        p.index, p.name, p.seed
                    )
                }
                Err(e) => return Err(e),
            }
        }
        if !claimed {
            break;
        }
    }
    if !waiting.is_empty() {
        bail!(
            "worker: {} run(s) of {} wait for their pretraining to finish (no DONE in train.init_from): {}; run the \
             pretraining experiment first, then start the worker again ({ran} run by this worker)",
            waiting.len(),
            runs.join(experiment).display(),
            waiting.join(", ")
        );
    }
    info!(
        "worker: no run left to claim in {} ({ran} run by this worker)",
        runs.join(experiment).display()
    );
    Ok(ran)
}

/// What `physlab slurm` puts in the job script.
pub struct SlurmArgs<'a> {
    pub experiment: &'a str,
    pub runs: &'a Path,
    pub workspace: &'a Path,
    pub sets: &'a [String],
    pub points: usize,
    pub partition: Option<&'a str>,
    pub gpus_per_task: usize,
    pub cpus: usize,
    pub time: &'a str,
    pub max_parallel: Option<usize>,
    pub backend: BackendKind,
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// An sbatch job-array script: one run per array task (its index from SLURM_ARRAY_TASK_ID), logs per task,
/// `--requeue`, and `--signal=B:USR1@120`: two minutes before the time limit the batch shell forwards SIGUSR1 to
/// physlab, which writes a complete checkpoint at the next step and exits with status 3; the script then requeues
/// the task, which resumes from that checkpoint.
pub fn slurm_script(a: &SlurmArgs) -> Result<String> {
    let abs = |p: &Path| -> Result<String> {
        let p = if p.is_absolute() {
            p.to_path_buf()
        } else {
            std::env::current_dir()?.join(p)
        };
        Ok(p.display().to_string())
    };
    let exe = std::env::current_exe()?.display().to_string();
    let runs = abs(a.runs)?;
    let logs = format!("{runs}/{}/slurm", a.experiment);
    let mut s = String::from("#!/bin/bash\n");
    s += &format!("#SBATCH --job-name=physlab-{}\n", a.experiment);
    s += &format!(
        "#SBATCH --array=0-{}{}\n",
        a.points.saturating_sub(1),
        a.max_parallel.map(|p| format!("%{p}")).unwrap_or_default()
    );
    s += &format!("#SBATCH --cpus-per-task={}\n", a.cpus);
    s += &format!("#SBATCH --time={}\n", a.time);
    if let Some(p) = a.partition {
        s += &format!("#SBATCH --partition={p}\n");
    }
    if a.gpus_per_task > 0 {
        s += &format!("#SBATCH --gpus-per-task={}\n", a.gpus_per_task);
    }
    s += &format!("#SBATCH --output={logs}/%A_%a.out\n");
    s += "#SBATCH --open-mode=append\n#SBATCH --requeue\n#SBATCH --signal=B:USR1@120\n";
    s += "set -u\n";
    s += &format!("cd {}\n", shell_quote(&abs(Path::new("."))?));
    let mut cmd = vec![
        shell_quote(&exe),
        "--workspace".into(),
        shell_quote(&abs(a.workspace)?),
        "run".into(),
        shell_quote(a.experiment),
        "--runs".into(),
        shell_quote(&runs),
        "--index-from-env".into(),
        "--resume".into(),
        "--wait".into(),
        "--backend".into(),
        match a.backend {
            BackendKind::Cpu => "cpu".into(),
            BackendKind::Cuda => "cuda".into(),
        },
    ];
    for set in a.sets {
        cmd.push("--set".into());
        cmd.push(shell_quote(set));
    }
    s += &format!("{} &\n", cmd.join(" "));
    s += r#"pid=$!
# Slurm signals this shell (B:USR1); physlab checkpoints at its next step and exits with status 3.
trap 'kill -USR1 "$pid" 2>/dev/null' USR1 TERM
rc=0
while :; do
  wait "$pid"; rc=$?
  kill -0 "$pid" 2>/dev/null || break
done
if [ "$rc" = 3 ]; then
  echo "physlab stopped at a checkpoint: requeueing ${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}"
  scontrol requeue "${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}"
fi
exit "$rc"
"#;
    Ok(s)
}

#[cfg(test)]
mod tests {
    /// Ends accumulate in the order named from the clock given (2026-11-28 20:00 UTC = 1795896000, by Python's
    /// calendar.timegm), past midnight with the day added; a run with no step time stops the projection.
    #[test]
    fn the_queue_order_projects_each_runs_end_from_now() {
        let now = 1_795_896_000;
        let items = [
            ("a:0".to_string(), Some(1800.0)),
            ("b:3".to_string(), Some(13_500.0)),
            ("c:1".to_string(), None),
            ("a:2".to_string(), Some(600.0)),
        ];
        let out = super::plan_order_lines(&items, now);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0],
            "in the order named, one run at a time from 20:00 UTC:"
        );
        assert!(
            lines[1].contains("a:0") && lines[1].ends_with("0:30:00  ends ~20:30"),
            "{out}"
        );
        // 20:30 + 3:45 = 00:15 the next day.
        assert!(
            lines[2].contains("b:3") && lines[2].ends_with("3:45:00  ends ~00:15 (+1d)"),
            "{out}"
        );
        assert!(
            lines[3].contains("c:1") && lines[3].contains("no step time yet"),
            "{out}"
        );
        assert!(
            lines[4].ends_with("0:10:00  ends after a run with no step time"),
            "{out}"
        );
        assert_eq!(lines.len(), 5);
        assert_eq!(super::plan_order_lines(&[], now), "");
    }
}
