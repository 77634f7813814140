#!/usr/bin/env python3
"""Deterministic hybrid-model traces in the Marconi simulator's schema, for the hit scenarios the shared
traces do not cover:

- agent: agent loops. A few shared agent system prompts (Zipf popularity); each session is a task that
  runs several steps; step t's input is step t-1's input + its output (a tool call) + a long tool output.
  Sessions overlap in time (up to --concurrency active at once, steps interleaved at random).
- rag: retrieval-augmented single-turn requests. A shared head (system prompt + instructions), then k
  documents drawn from a corpus by Zipf popularity (in retrieval order), then a distinct question.
- recurring: one long prompt (6,000 tokens) that recurs between bursts of three one-off requests
  (1,300-1,700 tokens), --sessions rounds, then the two latest one-offs come back three times each: a
  short trace whose first requests already reward FLOP-aware eviction.

Token ids are synthetic (identical text gives identical ids); every message is framed by a 12-token
header and a 2-token footer as in the shared traces. One request per line, sorted by `ts`.

    python3 tools/hybrid/gen_traces.py --scenario agent --seed 1 --out agent.jsonl.gz
"""
import argparse
import gzip
import json
import random

HEADER = list(range(1, 13))
FOOTER = [13, 14]
VOCAB = 32000


def text(rng, n):
    return [rng.randrange(100, VOCAB) for _ in range(n)]


def message(body):
    return HEADER + body + FOOTER


def zipf_index(rng, n, s):
    weights = [1.0 / (k + 1) ** s for k in range(n)]
    return rng.choices(range(n), weights=weights)[0]


def agent(rng, args):
    prompts = [message(text(rng, rng.randrange(1500, 6000))) for _ in range(args.prompts)]
    sessions = []
    for sid in range(args.sessions):
        steps = rng.randrange(3, 12)
        sessions.append({"id": sid, "prompt": prompts[zipf_index(rng, len(prompts), 1.1)],
                         "task": message(text(rng, rng.randrange(50, 400))), "steps": steps, "turn": 0,
                         "context": None})
    waiting = list(sessions)
    active = []
    requests = []
    ts = 0.0
    while waiting or active:
        while waiting and len(active) < args.concurrency:
            active.append(waiting.pop(0))
        s = rng.choice(active)
        if s["context"] is None:
            s["context"] = s["prompt"] + s["task"]
        output = message(text(rng, rng.randrange(20, 200)))
        requests.append((ts, s["id"], s["turn"], list(s["context"]), output))
        ts += rng.expovariate(2.0)
        s["turn"] += 1
        tool = message(text(rng, rng.randrange(300, 2000)))
        s["context"] = s["context"] + output + tool
        if s["turn"] >= s["steps"]:
            active.remove(s)
    return requests


def rag(rng, args):
    heads = [message(text(rng, rng.randrange(800, 2500))) for _ in range(args.prompts)]
    corpus = [message(text(rng, rng.randrange(300, 1500))) for _ in range(args.documents)]
    requests = []
    ts = 0.0
    for sid in range(args.sessions):
        head = heads[zipf_index(rng, len(heads), 1.2)]
        docs = []
        while len(docs) < args.k:
            d = zipf_index(rng, len(corpus), 0.9)
            if d not in docs:
                docs.append(d)
        body = list(head)
        for d in docs:
            body += corpus[d]
        body += message(text(rng, rng.randrange(10, 120)))
        requests.append((ts, sid, 0, body, message(text(rng, rng.randrange(20, 300)))))
        ts += rng.expovariate(2.0)
    return requests


def recurring(rng, args):
    long_prompt = message(text(rng, 6000))
    requests, one_offs = [], []
    for _ in range(args.sessions):
        requests.append(long_prompt + message(text(rng, rng.randrange(20, 60))))
        for _ in range(3):
            one_offs.append(message(text(rng, 1500 + rng.randrange(-200, 200))))
            requests.append(one_offs[-1] + message(text(rng, rng.randrange(20, 60))))
    for i in range(6):
        requests.append(one_offs[-1 - i % 2] + message(text(rng, rng.randrange(20, 60))))
    return [(float(i), i, 0, inp, message(text(rng, rng.randrange(10, 30)))) for i, inp in enumerate(requests)]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenario", choices=["agent", "rag", "recurring"], required=True)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--sessions", type=int, default=None,
                   help="agent: sessions (80); rag: requests (600); recurring: rounds (12)")
    p.add_argument("--prompts", type=int, default=3, help="shared agent prompts or RAG heads")
    p.add_argument("--concurrency", type=int, default=4, help="agent: sessions active at once")
    p.add_argument("--documents", type=int, default=200, help="rag: corpus size")
    p.add_argument("--k", type=int, default=3, help="rag: documents per request")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    if args.sessions is None:
        args.sessions = {"agent": 80, "rag": 600, "recurring": 12}[args.scenario]
    rng = random.Random(args.seed)
    requests = {"agent": agent, "rag": rag, "recurring": recurring}[args.scenario](rng, args)
    with gzip.open(args.out, "wt") as f:
        for ts, sid, turn, inp, out in requests:
            f.write(json.dumps({"session_id": sid, "turn_id": turn, "ts": round(ts, 6),
                                "num_input_tokens": len(inp), "num_output_tokens": len(out),
                                "input_tokens": inp, "output_tokens": out}, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    main()
