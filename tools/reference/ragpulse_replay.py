#!/usr/bin/env python3
"""Independent reference for `kvcache replay --format ragpulse --chunk-reuse --json` (unbounded cache).

Written from the documented semantics only (README, "Chunk reuse"; issue text section 3):
- a request's prompt is its segments in the order sys_prompt, passages_ids, history, web_search,
  user_input (one segment per id, its length from the side file N_<kind>.jsonl), then
  input_length - sum template tokens that are never reused;
- requests in file order; prefix hits = the lengths of the longest run of leading segments equal
  (kind, id, order) to the leading segments of an earlier request; chunk hits = the lengths of every
  later segment whose (kind, id) appeared in any earlier request;
- recomputed tokens = sum over chunk-hit segments of ceil(ratio x length).

    python3 tools/reference/ragpulse_replay.py TRACE [SIDE_DIR] [RATIO]
"""
import glob, json, math, os, sys

KINDS = [("sys_prompt", "sys_prompt", "sys_prompt_id"), ("passages_ids", "passages", "passage_id"),
         ("history", "history", "history_id"), ("web_search", "web_search", "web_search_id"),
         ("user_input", "user_input", "user_input_id")]


def lengths(side_dir):
    out = {}
    for kind, suffix, field in KINDS:
        files = [f for f in glob.glob(os.path.join(side_dir, "*_" + suffix + ".jsonl"))
                 if os.path.basename(f).split("_", 1)[0].isdigit()]
        assert len(files) == 1, (suffix, files)
        table = out[kind] = {}
        for line in open(files[0]):
            if line.strip():
                r = json.loads(line)
                table[r[field]] = r["token_length"]
    return out


def replay(trace, side_dir, ratio):
    table = lengths(side_dir)
    trie = {}       # prefix trie: node = dict (kind, id) -> child
    seen = set()    # (kind, id) of every segment of every earlier request
    n = inp = seg_tokens = prefix = chunk = recomputed = 0
    for line in open(trace):
        if not line.strip():
            continue
        r = json.loads(line)
        segs = [((kind, i), table[kind][i]) for kind, _, _ in KINDS for i in r["hash_ids"].get(kind, [])]
        n += 1
        inp += r["input_length"]
        seg_tokens += sum(length for _, length in segs)
        node, k = trie, 0
        while k < len(segs) and segs[k][0] in node:
            node = node[segs[k][0]]
            prefix += segs[k][1]
            k += 1
        for key, length in segs[k:]:
            if key in seen:
                chunk += length
                recomputed += math.ceil(ratio * length)
        node = trie
        for key, _ in segs:
            node = node.setdefault(key, {})
        for key, _ in segs:
            seen.add(key)
    return {"requests": n, "input_tokens": inp, "segment_tokens": seg_tokens, "template_tokens": inp - seg_tokens,
            "prefix_hit_tokens": prefix, "chunk_hit_tokens": chunk, "recomputed_tokens": recomputed,
            "prefix_hit_rate": prefix / inp, "chunk_reuse_hit_rate": (prefix + chunk) / inp,
            "reused_tokens": prefix + chunk,
            "saved_prefill_tokens": prefix + chunk - recomputed}


if __name__ == "__main__":
    trace = sys.argv[1]
    side = sys.argv[2] if len(sys.argv) > 2 else os.path.dirname(os.path.abspath(trace))
    ratio = float(sys.argv[3]) if len(sys.argv) > 3 else 0.15
    print(json.dumps(replay(trace, side, ratio)))
