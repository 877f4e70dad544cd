#!/usr/bin/env bash
# Runs experiment points one at a time, in the order given, at the lowest CPU priority, each resumable: a finished
# point (DONE) is skipped, so is one recorded in results/<experiment>/runs.jsonl (measured on another machine), an
# unfinished one continues from its newest step checkpoint. Rerun the same command to
# continue after an interruption. To stop it after the point in progress, create $RUNS/queue.stop (it is checked
# before each point and removed when honoured); to stop at once, also SIGTERM the physlab process, which writes a
# step checkpoint and exits (status 3). (Killing this script races with the start of its next point.)
#   nohup scripts/run-queue.sh extraction-pretrain-cpu:1 extraction-pretrain-cpu:0 >> /work/runs/logs/queue.log 2>&1 &
# Logs: $RUNS/logs/<experiment>-p<index>.log (appended); this script's own lines go to its standard output.
set -u
P=${PHYSLAB:-target/release/physlab}
RUNS=${RUNS:-/work/runs}
cd "$(dirname "$0")/.."
mkdir -p "$RUNS/logs"
for item in "$@"; do
  if [ -e "$RUNS/queue.stop" ]; then
    rm -f "$RUNS/queue.stop"
    echo "$(date -u +%FT%TZ) stopped before $item ($RUNS/queue.stop)"
    exit 0
  fi
  exp=${item%%:*}; k=${item##*:}
  log="$RUNS/logs/$exp-p$k.log"
  echo "$(date -u +%FT%TZ) start $exp --point $k -> $log"
  # A point whose run is in the committed records was measured already (on another machine): not run again.
  rec=(); [ -f "results/$exp/runs.jsonl" ] && rec=(--records "results/$exp/runs.jsonl")
  nice -n 19 "$P" run "$exp" --runs "$RUNS" --point "$k" --resume "${rec[@]}" >> "$log" 2>&1
  rc=$?  # before $(date) below, which would reset it
  echo "$(date -u +%FT%TZ) end $exp --point $k rc=$rc"
done
echo "$(date -u +%FT%TZ) queue finished"
