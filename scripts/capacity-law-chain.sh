#!/usr/bin/env bash
# Runs the points of capacity-law-cpu (and its learning-rate probe capacity-law-lr-cpu) one at a time, most
# informative first, at the lowest CPU priority, each resumable: a finished point (DONE) is skipped, an unfinished
# one continues from its newest step checkpoint (every 5,000 steps). Rerun the same command to continue after an
# interruption (the binary's config must resolve to the same config.resolved.toml, or the folder is moved aside).
#   nohup scripts/capacity-law-chain.sh > /work/runs/logs/capacity-law-chain.log 2>&1 &
# Logs: /work/runs/logs/<experiment>-p<index>.log (appended), this script's own lines in capacity-law-chain.log.
# The queue itself is scripts/run-queue.sh.
set -u
# Order: the binding points of gpt2-2-1, seed 0 (N = 4,000, 3,000); the second size (gpt2-3-1, N = 4,000); the
# near-perfect half (N = 2,000, 1,000); the lr probe (×0.5, ×2) of gpt2-2-1; seeds 1, 2 of the binding points; the
# convergence check (2000 exposures); the lr probe of gpt2-3-1; seeds 1, 2 of N = 2,000 and 1,000; then row 16
# (memorization-cpu: seed 0 of every size, then seeds 1, 2 of the plateau sizes) and rows 2, 4, 5, 7
# (architecture-law-cpu: seed 0 of each model, then seeds 1 and 2).
ORDER="capacity-law-cpu:0 capacity-law-cpu:3 capacity-law-cpu:6 capacity-law-cpu:9 capacity-law-cpu:12
capacity-law-lr-cpu:0 capacity-law-lr-cpu:1
capacity-law-cpu:1 capacity-law-cpu:2 capacity-law-cpu:4 capacity-law-cpu:5 capacity-law-cpu:7 capacity-law-cpu:8
capacity-law-conv-cpu:0
capacity-law-lr-cpu:2 capacity-law-lr-cpu:3
capacity-law-cpu:10 capacity-law-cpu:11 capacity-law-cpu:13 capacity-law-cpu:14
memorization-cpu:0 memorization-cpu:3 memorization-cpu:6 memorization-cpu:9 memorization-cpu:12
architecture-law-cpu:0 architecture-law-cpu:3 architecture-law-cpu:6 architecture-law-cpu:9
memorization-cpu:10 memorization-cpu:13 memorization-cpu:11 memorization-cpu:14
architecture-law-cpu:1 architecture-law-cpu:4 architecture-law-cpu:7 architecture-law-cpu:10
architecture-law-cpu:2 architecture-law-cpu:5 architecture-law-cpu:8 architecture-law-cpu:11"
exec "$(dirname "$0")/run-queue.sh" $ORDER
