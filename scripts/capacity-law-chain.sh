#!/usr/bin/env bash
# Runs the points of capacity-law-cpu one at a time, most informative first, at the lowest CPU priority, each
# resumable: a finished point (DONE) is skipped, an unfinished one continues from its newest step checkpoint (every
# 5,000 steps). Rerun the same command to continue after an interruption (the binary's config must resolve to the
# same config.resolved.toml, or the folder is moved aside).
#   nohup scripts/capacity-law-chain.sh > /work/runs/logs/capacity-law-chain.log 2>&1 &
# Logs: /work/runs/logs/<experiment>-p<index>.log (appended), this script's own lines in capacity-law-chain.log.
# The queue itself is scripts/run-queue.sh.
set -u
# capacity-law-cpu's index = lr (0: 5e-4, 1: 1e-3, 2: 2e-3, 3: 4e-3) × 15 + point (0: gpt2-2-1 N 4,000, 1: N 3,000,
# 2: gpt2-3-1 N 4,000, 3: N 2,000, 4: N 1,000) × 3 + seed.
# Order: seed 0 of the binding points at lr 1e-3, the points below the knee (N = 2,000, 1,000) at 1e-3; the rest
# of the learning-rate protocol (best of 3 rates, and 4e-3 where 2e-3 wins) at the binding points, seed 0; seeds 1
# and 2 of the binding points at the rate that won seed 0 (2e-3 so far, at gpt2-2-1 N = 4,000: edit when the
# others are in); the convergence check (2000 exposures); seeds 1, 2 below the knee; then row 16
# (memorization-cpu: seed 0 of every size, then seeds 1, 2 of the plateau sizes) and rows 2, 4, 5, 7
# (architecture-law-cpu: seed 0 of each model, then seeds 1 and 2).
ORDER="capacity-law-cpu:15 capacity-law-cpu:18 capacity-law-cpu:21 capacity-law-cpu:24 capacity-law-cpu:27
capacity-law-cpu:0 capacity-law-cpu:30 capacity-law-cpu:36 capacity-law-cpu:33 capacity-law-cpu:45 capacity-law-cpu:6 capacity-law-cpu:3
capacity-law-cpu:31 capacity-law-cpu:32 capacity-law-cpu:34 capacity-law-cpu:35 capacity-law-cpu:37 capacity-law-cpu:38
capacity-law-conv-cpu:0
capacity-law-cpu:25 capacity-law-cpu:26 capacity-law-cpu:28 capacity-law-cpu:29
memorization-cpu:0 memorization-cpu:3 memorization-cpu:6 memorization-cpu:9 memorization-cpu:12
architecture-law-cpu:0 architecture-law-cpu:3 architecture-law-cpu:6 architecture-law-cpu:9
memorization-cpu:10 memorization-cpu:13 memorization-cpu:11 memorization-cpu:14
architecture-law-cpu:1 architecture-law-cpu:4 architecture-law-cpu:7 architecture-law-cpu:10
architecture-law-cpu:2 architecture-law-cpu:5 architecture-law-cpu:8 architecture-law-cpu:11"
exec "$(dirname "$0")/run-queue.sh" $ORDER
