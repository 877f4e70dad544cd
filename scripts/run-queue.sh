#!/usr/bin/env bash
# Runs experiment points one at a time, in the order given, at the lowest CPU priority, each resumable: a finished
# point (DONE) is skipped, so is one recorded in results/<experiment>/runs.jsonl (measured on another machine), an
# unfinished one continues from its newest step checkpoint. Rerun the same command to
# continue after an interruption. To stop it after the point in progress, create $RUNS/queue.stop (it is checked
# before each point and removed when honoured); to stop at once, also SIGTERM the physlab process, which writes a
# step checkpoint and exits (status 3). (Killing this script races with the start of its next point.)
#   nohup scripts/run-queue.sh extraction-pretrain-cpu:1 extraction-pretrain-cpu:0 >> /work/runs/logs/queue.log 2>&1 &
# With QUEUE_DEADLINE (a time `date -d` reads: "2026-11-28 02:25", "now + 150 minutes"), no point starts after it
# and the point running at it gets SIGTERM then (a complete step checkpoint; rerunning continues it): a session or
# a job that ends at a known time loses nothing.
#   QUEUE_DEADLINE="now + 150 minutes" nohup scripts/run-queue.sh ... &
# $RUNS/queue.deadline, when it exists, holds a time that replaces QUEUE_DEADLINE (or sets one): it is read before
# each point and every few seconds while one runs, so a running queue's deadline can be moved either way
# (`echo 14:45 > /work/runs/queue.deadline`); an unreadable one is said in the log and the deadline last read kept.
# With --order-from CMD first (instead of the points), the order is CMD's output, read anew before each point: the
# first point in it not yet started by this queue runs next, so editing the order takes effect at the next point
# without restarting the queue (a CMD that fails keeps the order last read).
#   scripts/run-queue.sh --order-from "scripts/capacity-law-chain.sh --order"
# Logs: $RUNS/logs/<experiment>-p<index>.log (appended); this script's own lines go to its standard output.
set -u
order_cmd=
if [ "${1:-}" = "--order-from" ]; then
  [ -n "${2:-}" ] || { echo "--order-from needs a command that prints the points" >&2; exit 2; }
  order_cmd=$2; shift 2
fi
order=("$@")
started=" "
# Sets item to the next point of the order not yet started by this queue (empty when none is left). Called in
# this shell, not in $( ), so that the order it reads is kept for the next call when CMD fails.
next_point() {
  if [ -n "$order_cmd" ]; then
    local fresh
    if fresh=$(bash -c "$order_cmd"); then
      read -r -a order <<< "$(echo $fresh)"
    else
      echo "$(date -u +%FT%TZ) --order-from \"$order_cmd\" failed: keeping the order last read" >&2
    fi
  fi
  local candidate
  item=
  for candidate in "${order[@]}"; do
    case "$started" in *" $candidate "*) continue ;; esac
    item=$candidate; return
  done
}
P=${PHYSLAB:-target/release/physlab}
RUNS=${RUNS:-/work/runs}
cd "$(dirname "$0")/.."
deadline=
if [ -n "${QUEUE_DEADLINE:-}" ]; then
  deadline=$(date -d "$QUEUE_DEADLINE" +%s 2> /dev/null) \
    || { echo "QUEUE_DEADLINE=\"$QUEUE_DEADLINE\": not a time date -d reads" >&2; exit 2; }
  [ "$deadline" -gt "$(date +%s)" ] \
    || { echo "QUEUE_DEADLINE=\"$QUEUE_DEADLINE\" ($(date -u -d "@$deadline" +%FT%TZ)) has passed: nothing run" >&2; exit 2; }
  echo "$(date -u +%FT%TZ) deadline $(date -u -d "@$deadline" +%FT%TZ)"
fi
mkdir -p "$RUNS/logs"
deadline_said=
# The deadline now: $RUNS/queue.deadline's time when the file exists and reads, else the one last known.
current_deadline() {
  local f="$RUNS/queue.deadline" d
  if [ -f "$f" ]; then
    if d=$(date -d "$(head -c 200 "$f")" +%s 2> /dev/null); then
      deadline=$d
      if [ "$deadline_said" != "$d" ]; then
        deadline_said=$d
        echo "$(date -u +%FT%TZ) deadline $(date -u -d "@$d" +%FT%TZ) (from $f)"
      fi
    elif [ "$deadline_said" != bad ]; then
      deadline_said=bad
      echo "$(date -u +%FT%TZ) $f: not a time date -d reads; keeping the deadline ${deadline:+$(date -u -d "@$deadline" +%FT%TZ)}"
    fi
  fi
}
while next_point && [ -n "$item" ]; do
  started="$started$item "
  if [ -e "$RUNS/queue.stop" ]; then
    rm -f "$RUNS/queue.stop"
    echo "$(date -u +%FT%TZ) stopped before $item ($RUNS/queue.stop)"
    exit 0
  fi
  current_deadline
  if [ -n "$deadline" ] && [ "$(date +%s)" -ge "$deadline" ]; then
    echo "$(date -u +%FT%TZ) deadline reached: stopped before $item"
    exit 0
  fi
  exp=${item%%:*}; k=${item##*:}
  log="$RUNS/logs/$exp-p$k.log"
  # A point whose recipe does not resolve (an unknown key: a binary older than workspace.toml; a typo) is skipped
  # with its error here; three such points in a row stop the queue, as the file or the binary is then broken, and
  # skipping would run through the whole order in seconds.
  if ! err=$("$P" run "$exp" --runs "$RUNS" --point "$k" --dry-run 2>&1 > /dev/null); then
    bad=$(( ${bad:-0} + 1 ))
    echo "$(date -u +%FT%TZ) skipped $exp --point $k: its recipe does not resolve: $(echo "$err" | grep -v '^\s*$' | tail -n 3 | tr '\n' ' ')"
    if [ "$bad" -ge 3 ]; then
      echo "$(date -u +%FT%TZ) three points in a row do not resolve: queue stopped (check workspace.toml and the binary $P)"
      exit 1
    fi
    continue
  fi
  bad=0
  echo "$(date -u +%FT%TZ) start $exp --point $k -> $log"
  # A point whose run is in the committed records was measured already (on another machine): not run again.
  rec=(); [ -f "results/$exp/runs.jsonl" ] && rec=(--records "results/$exp/runs.jsonl")
  nice -n 19 "$P" run "$exp" --runs "$RUNS" --point "$k" --resume "${rec[@]}" >> "$log" 2>&1 &
  pid=$!
  # SIGTERM at the deadline (physlab writes a step checkpoint and exits); SIGKILL only if it has not ended 5
  # minutes later. The deadline is read again while the point runs.
  termed=
  while kill -0 "$pid" 2> /dev/null; do
    current_deadline
    now=$(date +%s)
    if [ -z "$termed" ] && [ -n "$deadline" ] && [ "$now" -ge "$deadline" ]; then
      kill -TERM "$pid" 2> /dev/null; termed=$now
    elif [ -n "$termed" ] && [ $(( now - termed )) -ge 300 ]; then
      kill -KILL "$pid" 2> /dev/null
    fi
    sleep 1
  done
  wait "$pid"; rc=$?  # before $(date) below, which would reset it
  [ -n "$termed" ] && rc=124
  echo "$(date -u +%FT%TZ) end $exp --point $k rc=$rc"
  if [ "$rc" = 124 ]; then
    echo "$(date -u +%FT%TZ) deadline reached: $exp --point $k stopped (rerun to continue it)"
    exit 0
  fi
done
echo "$(date -u +%FT%TZ) queue finished"
