#!/usr/bin/env bash
# Runs the points of capacity-law-cpu one at a time, most informative first, at the lowest CPU priority, each
# resumable: a finished point (DONE) is skipped, an unfinished one continues from its newest step checkpoint (every
# 5,000 steps). Rerun the same command to continue after an interruption (the binary's config must resolve to the
# same config.resolved.toml, or the folder is moved aside).
#   QUEUE_DEADLINE="now + 160 minutes" nohup scripts/capacity-law-chain.sh >> /work/runs/logs/queue.log 2>&1 &
# (QUEUE_DEADLINE, optional: the point running then is checkpointed and stopped, none starts after; run-queue.sh.)
# Logs: /work/runs/logs/<experiment>-p<index>.log (appended), this script's own lines in capacity-law-chain.log.
# `scripts/capacity-law-chain.sh --plan` prints where the order stands (physlab plan over its runs: a table per
# experiment, then the runs left in this order with the UTC clock at which each would end) and runs nothing.
# The running queue reads ORDER anew before each point (`--order` prints it): edit it here to reorder.
# The queue itself is scripts/run-queue.sh.
set -u
# capacity-law-cpu's index = lr (0: 5e-4, 1: 1e-3, 2: 2e-3, 3: 4e-3, 4: 8e-3) × 15 + point (0: gpt2-2-1 N 4,000,
# 1: N 3,000, 2: gpt2-3-1 N 4,000, 3: N 2,000, 4: N 1,000) × 3 + seed.
# Done at seed 0 (results/capacity-law-cpu/runs.jsonl; the queue skips recorded runs): 1e-3 at every point, 5e-4 /
# 2e-3 / 4e-3 / 8e-3 at gpt2-2-1 N = 4,000 (4e-3 bracketed), 2e-3 / 4e-3 / 8e-3 at N = 3,000 (4e-3 bracketed), 1e-3 / 2e-3 / 4e-3 at gpt2-3-1
# (2e-3 bracketed), and the convergence check at 2e-3.
# Order (2026-11-28, stop 37: the machine was kept again; the MoE at 1000 exposures, 2e-3, stored 89.8% of the
# bits with its loss still 4.2% lower over the last 10%, at the criterion's line and not converged, so its ×2 rate
# (4e-3, architecture-law-moe-1000-cpu:3, ~43 min) and LLaMA's seeds, then its ×0.5 (1e-3, :6); but first, after
# LLaMA's ×0.25 probe, row 14's parity pretraining (~2.9 h at the 27k tokens/s the N = 4,000 run measured): it is
# the only run issue 14 still lacks and cannot finish inside one session, so it starts while this machine is known
# to be kept (~2 h now; it resumes from its checkpoint if the next session keeps the machine, and is lost if not);
# at the end, row 11's seed 1 of single+permute1 and single+permute5 (extraction-pretrain-cpu:10, :13, ~55 min each,
# and their finetunes): row 11 has one seed, and `physlab probe --own-order --strict` needs those models to read the
# paper's P-probe contrast in the clean own-order column (their seed-0 folders are gone))
# Order (2026-11-28, stop 36: the machine was kept, so the multi5+permute pretraining resumed at step 29; no-MLP's
# 1000-exposure seeds 1-2 at its best rate (8e-3, ~14 min each) after row 15's finetunes; row 7's 1000-exposure
# half (architecture-law-moe-1000-cpu, ~50 min a rate) after LLaMA's ×0.5: row 7 has no run at 1000 exposures yet;
# row 14's parity pretraining (~3.4 h, resumable across kept machines) before row 16's creep checks: row 14 has no
# run in the regime, row 16 has its verdict; LLaMA's ×0.5 (5e-4) stored twice its 1e-3 run, so its ×0.25 probe
# and seeds 1-2 at 5e-4 (architecture-law-llama-lr-cpu:6, :4, :5, ~26 min each; its index renumbered when seeds
# were added: 5e-4 seed 0 is :3 now) right after the MoE, and LLaMA's 1e-3 seeds (architecture-law-cpu:4, :5) back
# to the end: row 4 compares the models at their best rates)
# (2026-11-28, stop 35: this session's machine was fresh (/work/runs gone), so the parity pretraining's
# checkpoint at step 17,056 was lost; from scratch it needs ~2.6-3 h alone, more than a session holds beside its
# build, so it moves after the runs that fit in one session (each under ~2 h); it runs when a machine is kept
# between sessions (it resumes) or a session can give it all its time; row 5's 1000-exposure half
# (architecture-law-mlp0-1000-cpu, seed 0 at its three rates, ~20 min each) right after row 17's data check: with it
# row 5 has both halves); then row 15 on a pretraining that fits a session (extraction-inverse-cpu from
# extraction-pretrain-cpu's multi5+permute seed 1, ~65 min, which also gives row 10 its seed 1: its finetunes follow);
# LLaMA's ×2 rate before it, as the no-MLP runs took ~14 min each, not ~20, and ~26 min fit before this session's end)
# (2026-11-28, stop 34: no-MLP's ×2 and ×0.5 rates (architecture-law-mlp0-lr-cpu, ~27 min each) after row 17's
# widths: row 5's only open question is whether its 1e-3 run, which stored nothing, was at a bad rate; row 17's
# data check before LLaMA's rates: it decides whether the widths' slope is the parameters'; row 17's seeds 1-2
# (facts-params-long-cpu, ~1.6 h a seed) after row 16's runs)
# (2026-11-28, stop 33: seed 0 of row 17's parameter half with long values, facts-params-long-cpu, narrowest
# first (~2 h for the five widths), after GPT2's seeds; then rows 14-15 (the parity pretraining and its finetunes):
# the rows with no run in the regime yet go before the checks of rows that have one; then row 17's check that the
# data is not the limit (facts-params-long-conv-cpu; LLaMA's ×2 and ×0.5 rates (the MoE's ×0.5 is not needed: 2e-3
# stored most, bracketed), architecture-law-llama-lr-cpu, before it: rows 4 and 7 compare models at their best rates),
# then row 1's other two convergence checks; otherwise as below)
# (2026-11-28, stop 32: row 1's seeds moved before the MoE probes, so row 1 has three seeds at every
# binding point first; GPT2's seeds 1-2 of architecture-law-cpu after the MoE probes, as row 2's rate is
# bracketed once 5e-4 finishes; otherwise as in stop 31)
# (2026-11-27, stop 31): the convergence check at the kept rates (capacity-law-conv-kept-cpu, cheapest point
# first, resumed), then rows 2, 4, 5, 7 (architecture-law-cpu: seed 0 of each model; those rows have no run in the
# regime yet, row 1 has five), the learning-rate probe of its GPT2 point (×2 first; gpt2-2-1 stored only R = 0.27 at
# 1e-3) and of the MoE (4e-3 first: SPEC §5a gives it higher rates), seeds 1 and 2 of the binding points at the kept rates (4e-3, 4e-3, 2e-3: all three
# bracketed; :37 and :49 done), the other two convergence checks, then rows 14-15 (the parity pretraining,
# ~2.6 h alone, then its two finetunes), then row 16 (the passes creep, seeds 1-2 at n = 2,000), then seed 1 of
# rows 9 and 10 (single and multi5+permute pretrainings and their finetunes), then the other seeds of
# architecture-law-cpu. Points already finished (DONE) or recorded are skipped.
ORDER="capacity-law-conv-kept-cpu:0
architecture-law-cpu:0 architecture-law-cpu:3 architecture-law-cpu:6 architecture-law-cpu:9
architecture-law-lr-cpu:0 architecture-law-lr-cpu:1
capacity-law-cpu:49 capacity-law-cpu:46 capacity-law-cpu:50 capacity-law-cpu:47 capacity-law-cpu:38
architecture-law-moe-lr-cpu:1 architecture-law-moe-lr-cpu:0
architecture-law-cpu:1 architecture-law-cpu:2
facts-params-long-cpu:0 facts-params-long-cpu:3 facts-params-long-cpu:6 facts-params-long-cpu:9 facts-params-long-cpu:12
architecture-law-mlp0-lr-cpu:0 architecture-law-mlp0-lr-cpu:1
facts-params-long-conv-cpu:0
architecture-law-mlp0-1000-cpu:0 architecture-law-mlp0-1000-cpu:3 architecture-law-mlp0-1000-cpu:6 architecture-law-mlp0-1000-cpu:9
architecture-law-llama-lr-cpu:0 architecture-law-mlp0-1000-cpu:12
extraction-pretrain-cpu:4 extraction-inverse-cpu:0 extraction-inverse-cpu:2 extraction-inverse-cpu:1
architecture-law-mlp0-1000-cpu:10 architecture-law-mlp0-1000-cpu:11
extraction-full-cpu:4 extraction-full-cpu:19 extraction-full-cpu:34 extraction-lora-narrow-cpu:4
architecture-law-llama-lr-cpu:3 architecture-law-moe-1000-cpu:0
architecture-law-llama-lr-cpu:6
extraction-parity-pretrain-cpu:0 extraction-parity-cpu:0 extraction-parity-cpu:1
architecture-law-moe-1000-cpu:3 architecture-law-llama-lr-cpu:4 architecture-law-llama-lr-cpu:5
architecture-law-moe-1000-cpu:6
capacity-law-conv-kept-cpu:1 capacity-law-conv-kept-cpu:2
memorization-passes-creep-cpu:0 memorization-passes-creep-cpu:1 memorization-passes-cpu:10 memorization-passes-cpu:11
facts-params-long-cpu:1 facts-params-long-cpu:4 facts-params-long-cpu:7 facts-params-long-cpu:10 facts-params-long-cpu:13
facts-params-long-cpu:2 facts-params-long-cpu:5 facts-params-long-cpu:8 facts-params-long-cpu:11 facts-params-long-cpu:14
extraction-pretrain-cpu:1 extraction-full-cpu:1 extraction-full-cpu:16 extraction-full-cpu:31 extraction-lora-narrow-cpu:1
architecture-law-cpu:4 architecture-law-cpu:7 architecture-law-cpu:10
architecture-law-cpu:5 architecture-law-cpu:8 architecture-law-cpu:11
extraction-pretrain-cpu:10 extraction-full-cpu:40 extraction-full-cpu:25 extraction-full-cpu:10 extraction-lora-narrow-cpu:10
extraction-pretrain-cpu:13 extraction-full-cpu:43 extraction-full-cpu:28 extraction-full-cpu:13 extraction-lora-narrow-cpu:13"
if [ "${1:-}" = "--plan" ]; then
  # Where the order stands: each run's state, progress and the training time left in all (reads only).
  cd "$(dirname "$0")/.."
  exec "${PHYSLAB:-target/release/physlab}" plan $ORDER --runs "${RUNS:-/work/runs}" --results results --time
fi
if [ "${1:-}" = "--order" ]; then
  # The order alone, a point a line: run-queue.sh reads it anew before each point, so an edit here takes effect at
  # the next point of a running queue.
  printf '%s\n' $ORDER
  exit 0
fi
self="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"
exec "$(dirname "$0")/run-queue.sh" --order-from "$(printf %q "$self") --order"
