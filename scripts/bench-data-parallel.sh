#!/usr/bin/env bash
# Data parallel on one machine: 1 process (1 and 2 threads) against 2 torchrun processes (gloo, 1 thread each),
# the phase-2 recipe (mini preset, after the quickstart: runs/data/phase2), the same global batch, 40 steps, two
# rounds. Prints a Markdown table (docs/benchmarks.md, "Data parallel"). Run it with nothing else computing.
#   bash scripts/bench-data-parallel.sh            # OUT=/tmp/zephyra-dp by default
set -euo pipefail
cd "$(dirname "$0")/.."
export OUT="$OUT"
mkdir -p "$OUT"
R=src/zephyra/recipes/phase2.yaml
COMMON="max_steps=40 eval_every=1000 save_every=1000 log_every=1 eval_tasks=[] batch_size=32 micro_batch_size=16"
echo "load before: $(cut -d" " -f1-3 /proc/loadavg)"
for round in 1 2; do
  OMP_NUM_THREADS=1 .venv/bin/python -m zephyra.training base $R out_dir=$OUT/p1t1-$round threads=1 $COMMON > $OUT/p1t1-$round.log 2>&1
  OMP_NUM_THREADS=2 .venv/bin/python -m zephyra.training base $R out_dir=$OUT/p1t2-$round threads=2 $COMMON > $OUT/p1t2-$round.log 2>&1
  OMP_NUM_THREADS=1 .venv/bin/torchrun --standalone --nproc_per_node 2 -m zephyra.training base $R out_dir=$OUT/p2t1-$round threads=1 $COMMON > $OUT/p2t1-$round.log 2>&1
done
.venv/bin/python - <<'PY'
import glob, json, os, statistics
from pathlib import Path
rows = {}
for d in sorted(glob.glob(os.environ["OUT"] + "/p*-*/metrics.jsonl")):
    name = Path(d).parent.name.rsplit("-", 1)[0]
    rates = [r["tok_per_s"] for r in map(json.loads, open(d)) if "tok_per_s" in r and r["step"] > 5]
    rows.setdefault(name, []).append(statistics.median(rates))
base = statistics.median(rows["p1t2"])
print("| setup | tokens/s (median of steps 6-40, per round) | vs 1 process x 2 threads |")
print("|---|---|---:|")
label = {"p1t1": "1 process, 1 thread", "p1t2": "1 process, 2 threads", "p2t1": "2 processes (torchrun, gloo), 1 thread each"}
for k in ("p1t1", "p1t2", "p2t1"):
    print(f"| {label[k]} | {' / '.join(f'{x:,.0f}' for x in rows[k])} | {statistics.median(rows[k]) / base:.2f}x |")
PY
