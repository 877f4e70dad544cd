#!/usr/bin/env bash
# Writes the report of each experiment named, over its run folders in $RUNS and the run records committed under
# results/<experiment>/runs.jsonl (runs whose folders are gone: a session on a fresh machine finds none), then
# copies report.md, report.json, summary.csv, runs.jsonl and plots/ into results/<experiment>/ for committing, and
# rewrites results/INDEX.md (`physlab index`: every experiment's row, headline figures and law on one page).
# Run it before a session ends: run folders live on one machine, results/ goes with the repository.
#   scripts/publish-results.sh memorization-passes-cpu memorization-passes-conv-cpu
# A committed plot the new report no longer draws (e.g. loss.svg, when every run came from records rebuilt from a
# summary, which keep no curves) would be lost: such an experiment is left as it was, said in one line, and the
# script exits 1 after the others; PUBLISH_DROP_PLOTS=1 publishes it anyway (the plot is then removed with git rm,
# recoverable from git history).
set -eu
P=${PHYSLAB:-target/release/physlab}
RUNS=${RUNS:-/work/runs}
cd "$(dirname "$0")/.."
[ "$#" -gt 0 ] || { echo "usage: $0 <experiment>..." >&2; exit 2; }
for exp in "$@"; do
  dest="results/$exp"
  args=(report "$exp" --runs "$RUNS")
  [ -f "$dest/runs.jsonl" ] && args+=(--records "$dest/runs.jsonl")
  "$P" "${args[@]}" > /dev/null
  src="$RUNS/$exp"
  dropped=()
  for old in "$dest"/plots/*.svg; do
    [ -e "$old" ] || continue
    if [ ! -e "$src/plots/$(basename "$old")" ] && git ls-files --error-unmatch "$old" > /dev/null 2>&1; then
      dropped+=("$(basename "$old")")
    fi
  done
  if [ "${#dropped[@]}" -gt 0 ] && [ "${PUBLISH_DROP_PLOTS:-0}" != 1 ]; then
    echo "$exp: left as it was: the new report no longer draws ${dropped[*]} (its runs' records keep no curves); PUBLISH_DROP_PLOTS=1 publishes it anyway" >&2
    refused=1
    continue
  fi
  mkdir -p "$dest/plots"
  # The records file is rewritten from what the report read (the folder's runs and the earlier records): copy it
  # through a temporary name so a failed copy leaves the committed one whole.
  for f in report.md report.json summary.csv runs.jsonl; do
    cp "$src/$f" "$dest/.$f.tmp" && mv "$dest/.$f.tmp" "$dest/$f"
  done
  for f in ${dropped[@]+"${dropped[@]}"}; do
    git rm -q "$dest/plots/$f"
  done
  cp "$src"/plots/*.svg "$dest/plots/" 2> /dev/null || true
  echo "$exp: $(grep -c '' "$dest/runs.jsonl") run(s) -> $dest/"
done
# The page over every experiment's results (results/INDEX.md), from their report.json.
"$P" index --results results
exit "${refused:-0}"
