#!/usr/bin/env bash
# Reproduces the README's figures with two `kvcache` binaries side by side and reports every figure
# that differs (wall-clock times excepted; outputs of two report schemas compared run by run, on the keys
# both name). Use it before and after a change that must not move them:
#   bash tools/figures/check.sh OLD_KVCACHE NEW_KVCACHE [OUT_DIR]
# Both binaries should be release builds. About 4 minutes on 2 cores. Needs ../shared/data and
# ../shared/models beside the repository. Exit 0 when every figure matches, 1 otherwise.
set -euo pipefail
cd "$(dirname "$0")/../.."
old=$(realpath "$1"); new=$(realpath "$2"); out=${3:-$(mktemp -d)}
D=../shared/data; M=../shared/models/SmolLM2-135M-Instruct.Q4_1.gguf
mkdir -p "$out/old" "$out/new"
# name|arguments (each case prints JSON on stdout)
cases=(
  "default|replay --json"
  "policies|replay --policy lru,fifo,lfu,pgdsf --json"
  "policies-3000|replay --policy lru,fifo,lfu,pgdsf --capacity-blocks 3000 --json"
  "full-8192|replay --trace $D/mooncake/synthetic_trace.jsonl --capacity-blocks 8192 --block-tokens 512 --json"
  "tiers-host|replay --cpu-blocks 20000 --json"
  "tiers-disk|replay --cpu-blocks 4000 --disk-blocks 20000 --json"
  "timed-sharegpt|replay --mode timed --trace $D/vidur_processed_traces/sharegpt_8k_filtered_stats_llama2_tokenizer.csv --model llama3-8b --hardware h100 --kv-gib 1.5 --max-tokens 4096 --compare worst-case,on-demand,predicted,oracle --json"
  "timed-azure|replay --mode timed --trace $D/azure_llm_2023/AzureLLMInferenceTrace_code.csv --model llama3-8b --hardware h100 --kv-gib 0.8 --rate-scale 100 --max-tokens 4096 --compare worst-case,on-demand,predicted,oracle --json"
  "timed-mooncake-tier|replay --mode timed --trace $D/mooncake/synthetic_trace.jsonl --model llama3-8b --hardware h100 --kv-gib 16 --compare on-demand,predicted --cpu-gib 64 --rate-scale 0.25 --json"
  "predict-history|predict eval --history --data $D/mooncake/synthetic_trace.jsonl --json"
  "generate|generate --model $M --prompt \"Why cache KV?\" --chat --max-tokens 48 --repeat 2 --json"
)
for side in old new; do
  bin=${!side}
  for c in "${cases[@]}"; do
    name=${c%%|*}; args=${c#*|}
    if [[ $name == generate && ! -f $M ]]; then continue; fi
    eval "\"$bin\" $args" > "$out/$side/$name.json" 2> "$out/$side/$name.err" || echo "$side $name: exit $?" >&2
  done
  # Text predictor: train and evaluate on CASTILLO (about 10 s per training).
  "$bin" predict train --data $D/castillo --out "$out/$side/castillo.kvlp" > /dev/null 2>&1 || true
  "$bin" predict eval --model "$out/$side/castillo.kvlp" --data $D/castillo --json > "$out/$side/predict-castillo.json" 2>/dev/null || true
done
python3 - "$out" <<'PY'
import json, sys, os, re
out = sys.argv[1]
def leaves(v, path=""):
    if isinstance(v, dict):
        for k, x in v.items(): yield from leaves(x, f"{path}.{k}")
    elif isinstance(v, list):
        for i, x in enumerate(v): yield from leaves(x, f"{path}[{i}]")
    else:
        yield path, v
def snake(k):
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", k).lower()
def number(v):
    # 3 and 3.0 are one figure (a report may print an integral double without its fraction).
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v
def report_runs(v):
    """Any output as {run name: run, with the call-wide keys folded in}, whatever its schema: one flat object,
    {"runs": [...]} with call-wide keys beside it (schema_version 1, any command), keys snake_cased."""
    if not isinstance(v, dict): return None
    if isinstance(v.get("runs"), list) and all(isinstance(r, dict) for r in v["runs"]):
        top = {k: x for k, x in v.items() if k not in ("runs", "schema_version", "command")}
        runs = [{**top, **r} for r in v["runs"]]
    else:
        runs = [v]
    out = {}
    for i, r in enumerate(runs):
        r = {snake(k): x for k, x in r.items()}
        name = "@".join(str(number(r[k])) for k in ("policy", "reservation", "mode", "capacity_blocks", "kv_gib", "cpu_gib") if k in r)
        out[name or str(i)] = r
    return out
bad = 0
for name in sorted(os.listdir(f"{out}/old")):
    if not name.endswith(".json"): continue
    try:
        a = json.load(open(f"{out}/old/{name}")); b = json.load(open(f"{out}/new/{name}"))
    except Exception as e:
        print(f"{name}: unreadable ({e})"); bad += 1; continue
    skip = re.compile(r"(?i)wall|elapsed|(load|decode|prefill)_?seconds|per_?second|tokens_per_s|ns_per|_us$|_ns$")
    sa, sb = report_runs(a), report_runs(b)
    if sa is not None and sb is not None:
        # Outputs of two schemas: compare the figures both name, run by run (keys added are listed).
        added = sorted({k for r in sb.values() for k in r} - {k for r in sa.values() for k in r})
        common = lambda r, o: {k: x for k, x in r.items() if k in o}
        a = {run: common(r, sb.get(run, {})) for run, r in sa.items()}
        b = {run: common(r, sa.get(run, {})) for run, r in sb.items()}
        if added: print(f"{name}: keys only in the new output, not compared: {added}")
    fa = [(p, number(v)) for p, v in leaves(a) if not skip.search(p)]
    fb = [(p, number(v)) for p, v in leaves(b) if not skip.search(p)]
    va = sorted(repr(v) for _, v in fa); vb = sorted(repr(v) for _, v in fb)
    if va == vb:
        renamed = sorted(set(p for p, _ in fa) ^ set(p for p, _ in fb))
        print(f"{name}: {len(fa)} figures match" + (f" (keys renamed: {renamed[:6]})" if renamed else ""))
    else:
        bad += 1
        da = dict(fa); db = dict(fb)
        diffs = [(p, da.get(p), db.get(p)) for p in sorted(set(da) | set(db)) if da.get(p) != db.get(p)]
        print(f"{name}: {len(diffs)} figures differ")
        for p, x, y in diffs[:12]: print(f"   {p}: {x!r} -> {y!r}")
print(f"figures: {'all match' if bad == 0 else f'{bad} outputs differ'}")
sys.exit(1 if bad else 0)
PY
