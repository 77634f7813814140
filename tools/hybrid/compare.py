#!/usr/bin/env python3
"""Runs `kvcache replay --format marconi` over traces and cache sizes and tabulates FLOPs saved:
the chosen policy over the better of sglang+ and marconi (and marconi-sim with --with-sim).

    python3 tools/hybrid/compare.py --kvcache .build/release/kvcache \\
        --trace ../shared/data/marconi/chat.jsonl.gz:1,2,5,10 \\
        --trace ../shared/data/marconi/sysprompt.jsonl.gz:2,2.5,3,4 [--markdown]

Extra arguments after `--` go to every replay (e.g. `-- --adaptive-settings 1:1:2:1`).
"""
import argparse
import json
import os
import subprocess
import sys


def replay(kvcache, trace, gb, policies, extra):
    cmd = [kvcache, "replay", "--format", "marconi", "--trace", trace, "--model", "hybrid-7b",
           "--capacity-gb", str(gb), "--policy", ",".join(policies), "--json"] + extra
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    doc = json.loads(out)
    runs = doc["runs"] if "runs" in doc else [doc]
    return {r["policy"]: r for r in runs}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kvcache", default=".build/release/kvcache")
    p.add_argument("--trace", action="append", required=True, help="FILE:GB,GB,...")
    p.add_argument("--policy", default="adaptive")
    p.add_argument("--with-sim", action="store_true", help="count marconi-sim among the baselines")
    p.add_argument("--markdown", action="store_true")
    args, extra = p.parse_known_args()
    extra = [a for a in extra if a != "--"]
    baselines = ["sglang+", "marconi"] + (["marconi-sim"] if args.with_sim else [])
    policies = baselines + [args.policy]
    rows = []
    for spec in args.trace:
        path, sizes = spec.rsplit(":", 1)
        name = os.path.basename(path).split(".")[0]
        for gb in sizes.split(","):
            r = replay(args.kvcache, path, gb, policies, extra)
            best = max(r[b]["flops_saved"] for b in baselines)
            mine = r[args.policy]
            rows.append([name, gb] + ["%.2f" % (100 * r[b]["token_hit_rate"]) for b in baselines]
                        + ["%.2f" % (100 * mine["token_hit_rate"]), "%.3f" % (mine["flops_saved"] / best),
                           "%.2f" % mine["wall_s"]])
            print(" ".join(rows[-1]), file=sys.stderr)
    header = ["trace", "GB"] + [b + " hit %" for b in baselines] + [args.policy + " hit %",
                                                                   args.policy + " FLOPs / best", "wall s"]
    if args.markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for row in rows:
            print("| " + " | ".join(row) + " |")
    else:
        print("\t".join(header))
        for row in rows:
            print("\t".join(row))


if __name__ == "__main__":
    main()
