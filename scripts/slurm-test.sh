#!/usr/bin/env bash
# The Slurm path end to end on this machine: starts a single-node Slurm (slurmctld + slurmd, auth/none, its own
# ports and state in a temporary folder), writes the job-array script with `physlab slurm`, checks it with
# `sbatch --test-only`, submits a 6-run array of tiny runs, waits for it, and checks that every run finished once
# with results identical to a sequential `physlab run` of the same sweep; then sends a running task Slurm's
# time-limit warning and checks that it checkpoints, is requeued, resumes and ends as an uninterrupted run. Skips (exit 0, one line saying why) when
# Slurm is not installed (Debian: apt-get install slurm-wlm) or does not start within a minute.
#   PHYSLAB=target/release/physlab scripts/slurm-test.sh
set -euo pipefail
P=$(realpath "${PHYSLAB:-target/release/physlab}")
for b in slurmctld slurmd sbatch squeue scontrol; do
  command -v "$b" >/dev/null || { echo "slurm-test: SKIPPED: $b not found (apt-get install slurm-wlm)"; exit 0; }
done
T=$(mktemp -d /tmp/physlab-slurm-XXXXXX)
H=$(hostname)
mkdir -p "$T"/{state,spool,log}
export SLURM_CONF=$T/slurm.conf
cat > "$SLURM_CONF" <<CONF
ClusterName=physlabtest
SlurmctldHost=$H
AuthType=auth/none
CredType=cred/none
SlurmUser=$(id -un)
SlurmdUser=$(id -un)
SlurmctldPort=${SLURM_TEST_PORT:-26817}
SlurmdPort=$(( ${SLURM_TEST_PORT:-26817} + 1 ))
StateSaveLocation=$T/state
SlurmdSpoolDir=$T/spool
SlurmctldPidFile=$T/slurmctld.pid
SlurmdPidFile=$T/slurmd.pid
SlurmctldLogFile=$T/log/slurmctld.log
SlurmdLogFile=$T/log/slurmd.log
ProctrackType=proctrack/pgid
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
NodeName=$H CPUs=$(nproc) RealMemory=1000 State=UNKNOWN
PartitionName=test Nodes=$H Default=YES MaxTime=INFINITE State=UP
CONF
cleanup() {
  [ -f "$T/slurmd.pid" ] && kill "$(cat "$T/slurmd.pid")" 2>/dev/null || true
  [ -f "$T/slurmctld.pid" ] && kill "$(cat "$T/slurmctld.pid")" 2>/dev/null || true
  sleep 1
  rm -rf "$T"
}
trap cleanup EXIT
slurmctld -c >/dev/null 2>&1 || { echo "slurm-test: SKIPPED: slurmctld did not start"; exit 0; }
slurmd >/dev/null 2>&1 || { echo "slurm-test: SKIPPED: slurmd did not start"; exit 0; }
for i in $(seq 60); do
  sinfo -h -o %t 2>/dev/null | grep -q idle && break
  [ "$i" = 60 ] && { echo "slurm-test: SKIPPED: the node did not come up within a minute: $(tail -2 "$T/log/slurmctld.log")"; exit 0; }
  sleep 1
done
cd "$T"
# wait_for JOB WHAT: until Slurm no longer lists JOB, or fails after 5 minutes.
wait_for() {
  for i in $(seq 300); do
    [ -z "$(squeue -h -j "$1" 2>/dev/null)" ] && return 0
    sleep 1
  done
  echo "slurm-test: FAILED: $2 did not finish in 5 minutes"; squeue -j "$1"; exit 1
}
# The tiny model both experiments train.
TINY='data.people = 30
model.preset = "gpt2-1-1"
model.d_model = 16
train.batch_size = 4
train.context = 96'
cat > ws.toml <<TOML
[experiment.slurm-tiny]
$TINY
train.steps = 60
train.log_every = 20
[experiment.slurm-tiny.sweep]
grid = { "train.lr" = [1e-3, 3e-3] }
seeds = [0, 1, 2]
TOML
"$P" --workspace ws.toml run slurm-tiny --runs seq > seq.log 2>&1
"$P" --workspace ws.toml slurm slurm-tiny --runs pool --cpus 1 --time 00:10:00 --out job.sh
sbatch --test-only job.sh 2>&1 | tee test-only.log | grep -q "to start" || { echo "slurm-test: FAILED: sbatch --test-only: $(cat test-only.log)"; exit 1; }
job=$(sbatch --parsable job.sh)
echo "slurm-test: submitted array job $job ($(grep -- '--array' job.sh))"
wait_for "$job" "the array"
fail=0
n=0
for d in seq/slurm-tiny/*/s*; do
  [ -d "$d" ] || continue
  n=$((n + 1))
  r=pool/${d#seq/}
  [ -f "$r/DONE" ] || { echo "slurm-test: FAILED: $r did not finish"; fail=1; continue; }
  a=$(python3 -c "import json,sys;e=json.load(open('$d/eval.json'));print(e['bios']['bits'],e['train']['final_loss'])")
  b=$(python3 -c "import json,sys;e=json.load(open('$r/eval.json'));print(e['bios']['bits'],e['train']['final_loss'])")
  [ "$a" = "$b" ] || { echo "slurm-test: FAILED: $r: $b vs sequential $a"; fail=1; }
  runs=$(cat pool/slurm-tiny/slurm/*.out | grep -cF "run folder: $PWD/$r (" || true)
  [ "$runs" = 1 ] || { echo "slurm-test: FAILED: $r ran $runs times"; fail=1; }
done
[ "$n" = 6 ] || { echo "slurm-test: FAILED: $n sequential runs, expected 6"; fail=1; }
[ "$fail" = 0 ] || exit 1

# The time limit: Slurm's warning (`--signal=B:USR1@120`) is a USR1 to the batch shell, which `scancel --signal=USR1
# --batch` sends now. The script must forward it, physlab checkpoint at its next step and exit 3, the script requeue
# the task, and the requeued task resume and finish with the uninterrupted run's results.
cat >> ws.toml <<TOML
[experiment.slurm-long]
$TINY
train.steps = 4000
train.log_every = 100
TOML
"$P" --workspace ws.toml run slurm-long --runs seq > seq-long.log 2>&1
"$P" --workspace ws.toml slurm slurm-long --runs pool --cpus 1 --time 00:10:00 --out long.sh
long=$(sbatch --parsable long.sh)
m=pool/slurm-long/base/s0/metrics.jsonl
for i in $(seq 600); do
  [ -f "$m" ] && grep -q '"step":[0-9]' "$m" && break
  [ "$i" = 600 ] && { echo "slurm-test: FAILED: the long run logged no step in a minute"; exit 1; }
  sleep 0.1
done
scancel --signal=USR1 --batch "${long}_0"
wait_for "$long" "the requeued task"
out=$(cat pool/slurm-long/slurm/*.out)
grep -q "requeueing ${long}_0" <<<"$out" || { echo "slurm-test: FAILED: the task was not requeued after USR1: $out"; exit 1; }
grep -q "resumed from" <<<"$out" || { echo "slurm-test: FAILED: the requeued task did not resume from a checkpoint: $out"; exit 1; }
[ -f pool/slurm-long/base/s0/DONE ] || { echo "slurm-test: FAILED: the requeued run did not finish: $out"; exit 1; }
a=$(python3 -c "import json;e=json.load(open('seq/slurm-long/base/s0/eval.json'));print(e['bios']['bits'],e['train']['final_loss'])")
b=$(python3 -c "import json;e=json.load(open('pool/slurm-long/base/s0/eval.json'));print(e['bios']['bits'],e['train']['final_loss'])")
[ "$a" = "$b" ] || { echo "slurm-test: FAILED: stopped and requeued: $b vs uninterrupted $a"; exit 1; }
at=$(grep -o "resumed from [^ ]*" <<<"$out" | head -1)
echo "slurm-test: ok: $n array tasks under Slurm $(sinfo -V | cut -d' ' -f2), each run finished once, results identical to the sequential run; USR1 to a running task: checkpoint, requeue, $at, same results as the uninterrupted run"
exit 0
