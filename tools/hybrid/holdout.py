#!/usr/bin/env python3
"""Held-out evaluation of the adaptive policy: tune on the first half of a trace (online, as it runs),
freeze the settings it ends with, and replay the second half from an empty cache with them fixed, next
to sglang+ and marconi on the same second half.

    python3 tools/hybrid/holdout.py --kvcache .build/release/kvcache \\
        --trace ../shared/data/marconi/chat.jsonl.gz --sizes 1,2,5,10
"""
import argparse
import gzip
import json
import os
import subprocess
import tempfile


def replay(kvcache, trace, gb, policies, extra=()):
    cmd = [kvcache, "replay", "--format", "marconi", "--trace", trace, "--model", "hybrid-7b",
           "--capacity-gb", str(gb), "--policy", ",".join(policies), "--json", *extra]
    doc = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    return {r["policy"]: r for r in (doc["runs"] if "runs" in doc else [doc])}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kvcache", default=".build/release/kvcache")
    p.add_argument("--trace", required=True)
    p.add_argument("--sizes", default="1,2,5,10")
    args = p.parse_args()
    with gzip.open(args.trace, "rt") as f:
        lines = [l for l in f if l.strip()]
    half = len(lines) // 2
    tmp = tempfile.mkdtemp()
    first, second = os.path.join(tmp, "first.jsonl"), os.path.join(tmp, "second.jsonl")
    with open(first, "w") as f:
        f.writelines(lines[:half])
    with open(second, "w") as f:
        f.writelines(lines[half:])
    print("| GB | tuned on the first half | sglang+ hit % | marconi hit % | adaptive (frozen) hit % | FLOPs / best |")
    print("|---|---|---|---|---|---|")
    for gb in args.sizes.split(","):
        tuned = replay(args.kvcache, first, gb, ["adaptive"])["adaptive"]["adaptive_candidate"]
        base = replay(args.kvcache, second, gb, ["sglang+", "marconi"])
        mine = replay(args.kvcache, second, gb, ["adaptive"], ["--adaptive-settings", tuned])["adaptive"]
        best = max(base["sglang+"]["flops_saved"], base["marconi"]["flops_saved"])
        print("| %s | %s | %.2f | %.2f | %.2f | %.3f |" % (
            gb, tuned, 100 * base["sglang+"]["token_hit_rate"], 100 * base["marconi"]["token_hit_rate"],
            100 * mine["token_hit_rate"], mine["flops_saved"] / best))


if __name__ == "__main__":
    main()
