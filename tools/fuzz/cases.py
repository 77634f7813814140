"""The case generators: one per reader, flag family and file format of each subcommand.

A generator is `gen(rng, folder, fx) -> argv` (arguments after the binary): it writes whatever input
files it needs into `folder` and reads shared fixtures (`fx`: the model path, a valid predictor model
file, a disk tier directory, ...) without changing them. A generator whose fixture is missing
returns None and the case is skipped. `GENERATORS` maps a stable name to (generator, cost), cost being
a rough weight used to give slow subcommands (those that load the model) fewer cases in quick mode.
"""
import json
import os
import struct
import shutil
import stat

import formats
import values

EMBEDDED = []   # replay without --trace uses the embedded sample


def numeric_flags(rng, flags, count=None):
    """Some of `flags` (name list) set to extreme values, as ["--flag", value, ...]."""
    chosen = rng.sample(flags, min(len(flags), count or rng.randint(1, 2)))
    argv = []
    for f in chosen:
        argv += [f, values.flag_number(rng)]
    return argv


# MARK: replay

REPLAY_SEQ_FLAGS = ["--capacity-blocks", "--block-tokens", "--cpu-blocks", "--disk-blocks"]
REPLAY_TIMED_FLAGS = ["--kv-gib", "--max-tokens", "--rate-scale", "--arrival-rate", "--aging-s", "--max-running",
                      "--max-batched-tokens", "--mixed-step-tokens", "--kv-block-tokens", "--swap-gib", "--cpu-gib",
                      "--reserve-quantile", "--limit", "--seed", "--think-time-s"]


def replay_seq_flags(rng, folder, fx):
    argv = ["replay", "--mode", "sequential", "--capacity-blocks", "64"]
    argv += numeric_flags(rng, REPLAY_SEQ_FLAGS)
    if "--disk-blocks" in argv:
        argv += ["--disk-dir", os.path.join(folder, "disk")]
    if rng.random() < 0.3:
        argv += ["--policy", rng.choice(["lru,pgdsf", "", ",", "lru,lru", "x", "pgdsf"])]
    return argv + ["--json"]


def replay_timed_flags(rng, folder, fx):
    argv = ["replay", "--mode", "timed", "--limit", "40"]
    argv += numeric_flags(rng, REPLAY_TIMED_FLAGS)
    if rng.random() < 0.25:   # Pensieve's retention in the timed engine
        argv += ["--pensieve", "--policy", rng.choice(["lru,pensieve,conversation-lru", "pensieve", "fifo", ",", ""])]
        argv += numeric_flags(rng, ["--pensieve-swap-threshold", "--cpu-gib", "--kv-gib"], count=1)
    if rng.random() < 0.2:
        argv += [rng.choice(["--order", "--reservation", "--compare", "--model", "--hardware", "--predictor"]),
                 rng.choice(["", "spf", "x", "oracle,oracle", "predicted,", "h200", "jamba-hybrid"])]
    return argv + ["--json"]


def replay_trace(rng, folder, fx):
    path = formats.make_trace(rng, folder)
    argv = ["replay", "--trace", path, "--mode", rng.choice(["sequential", "timed"]), "--capacity-blocks", "32"]
    if rng.random() < 0.5:
        argv.append("--skip-bad-lines")
    if rng.random() < 0.2:
        argv += ["--format", rng.choice(["mooncake", "azure", "vidur", "burstgpt", "sharegpt", "castillo", "x"])]
    if "timed" in argv:
        argv += ["--limit", "200"]
    return argv + ["--json"]


def replay_gzip_bomb(rng, folder, fx):
    path = formats.make_gzip_bomb(rng, folder)
    return ["replay", "--trace", path, "--mode", rng.choice(["sequential", "timed"]), "--json"]


def special_path(rng, folder, kinds):
    """A path that is not a plain regular file, of one of `kinds`: "dir", "fifo" (no writer),
    "device" (a character device made in the case folder: a copy of /dev/null's numbers, or a FIFO
    when not root), "dangling" (symlink to nothing), "symlink" (to a file that must survive),
    "missing", "missing-parent", or a literal such as "/dev/zero", "-" or "".

    Never pass a real system path where the command may WRITE: a command that replaces its output
    atomically would replace /dev/null itself (this happened, as root). Literal /dev paths are for
    reading only."""
    kind = rng.choice(kinds)
    path = os.path.join(folder, "special")
    if kind == "dir":
        return folder
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "device":
        try:
            os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        except PermissionError:
            os.mkfifo(path)
    elif kind in ("dangling", "symlink"):
        target = os.path.join(folder, "nowhere" if kind == "dangling" else "precious.txt")
        if kind == "symlink":
            with open(target, "w") as f:
                f.write("precious\n")
        os.symlink(target, path)
    elif kind == "missing-parent":
        return os.path.join(folder, "no", "such", "dir", "file")
    elif kind != "missing":
        return kind
    return path


def replay_special_paths(rng, folder, fx):
    """--trace naming something that is not a regular file."""
    path = special_path(rng, folder, ["dir", "fifo", "device", "/dev/zero", "-", "dangling", "missing", ""])
    return ["replay", "--trace", path, "--mode", rng.choice(["sequential", "timed"]), "--json"]


def replay_disk_dir(rng, folder, fx):
    """Sequential replay with a disk tier in an odd directory (see `disk_tier_dir`)."""
    d = disk_tier_dir(rng, folder, fx)
    if d is None:
        return None
    return ["replay", "--mode", "sequential", "--capacity-blocks", "16", "--cpu-blocks", "8",
            "--disk-blocks", rng.choice(["64", "1", "100000000"]), "--disk-dir", d, "--json"]


def replay_marconi(rng, folder, fx):
    """Hybrid-model traces: a mutated Marconi-schema trace, extreme --capacity-gb, odd --per-request."""
    argv = ["replay", "--format", "marconi", "--trace", formats.make_marconi(rng, folder)]
    argv += ["--model", rng.choice(["hybrid-7b"] * 4 + ["jamba-1.5-mini", "nemotron-h-8b", "x", ""])]
    argv.append("--capacity-gb=" + (values.flag_number(rng) if rng.random() < 0.25 else rng.choice(["0.0001", "0.01", "2"])))
    argv += ["--policy", rng.choice(["vllm+,sglang+,marconi-sim,marconi"] * 4 + ["marconi", "sglang+", "lru", ",", "adaptive"])]
    if rng.random() < 0.3:   # the adaptive policy's tuner
        argv += numeric_flags(rng, ["--adaptive-window", "--adaptive-margin", "--adaptive-decay", "--adaptive-first-factor"])
    if rng.random() < 0.4:
        target = rng.choice(["plain", "dir", "fifo", "device", "symlink", "dangling", "missing-parent"])
        argv += ["--per-request", os.path.join(folder, "per-request.csv") if target == "plain"
                 else special_path(rng, folder, [target])]
    if rng.random() < 0.3:
        argv.append("--skip-bad-lines")
    return argv + ["--json"]


def replay_ragpulse(rng, folder, fx):
    """RAG traces: mutated trace and side files, --chunk-reuse with extreme --recompute-ratio."""
    argv = ["replay", "--format", "ragpulse", "--trace", formats.make_ragpulse(rng, folder),
            "--capacity-blocks=" + rng.choice(["64", "64", "1", values.flag_number(rng)])]
    if rng.random() < 0.6:
        argv.append("--chunk-reuse")
    if rng.random() < 0.25:
        argv.append("--recompute-ratio=" + values.flag_number(rng))
    if rng.random() < 0.2:
        argv += ["--side-files", special_path(rng, folder, ["dir", "missing", "fifo", "device"])]
    if rng.random() < 0.3:
        argv.append("--skip-bad-lines")
    return argv + ["--json"]


# MARK: predict

PREDICT_TRAIN_FLAGS = ["--epochs", "--learning-rate", "--l2", "--hash-bits", "--leading-tokens", "--trailing-tokens",
                       "--quantile", "--expected-quantile", "--cross-scale", "--context-bytes"]


def predict_data(rng, folder):
    return rng.choice([formats.make_castillo, formats.make_sharegpt])(rng, folder)


def predict_train_flags(rng, folder, fx):
    data = fx.get("castillo") or predict_data(rng, folder)
    argv = ["predict", "train", "--data", data, "--out", os.path.join(folder, "model.bin"), "--epochs", "1"]
    return argv + numeric_flags(rng, PREDICT_TRAIN_FLAGS) + ["--json"]


def predict_train_data(rng, folder, fx):
    data = predict_data(rng, folder)
    if os.path.isfile(data) and rng.random() < 0.2:
        data = formats.gzip_file(rng, data)
    return ["predict", "train", "--data", data, "--out", os.path.join(folder, "model.bin"), "--epochs", "1", "--json"]


def predict_train_out(rng, folder, fx):
    """--out naming something that must not be replaced silently: a folder, a FIFO, a device, a symlink."""
    data = fx.get("castillo")
    if data is None:
        return None
    out = special_path(rng, folder, ["dir", "fifo", "device", "symlink", "missing-parent", ""])
    return ["predict", "train", "--data", data, "--out", out, "--epochs", "1", "--json"]


def predict_eval_model(rng, folder, fx):
    model, data = fx.get("predictor_model"), fx.get("castillo")
    if model is None or data is None:
        return None
    path = os.path.join(folder, "mutated.model")
    with open(model, "rb") as f:
        original = f.read()
    with open(path, "wb") as f:
        f.write(formats.mutate_bytes(rng, original))
    argv = ["predict", "eval", "--data", data, "--model", path, "--json"]
    if rng.random() < 0.3:
        argv = ["replay", "--mode", "timed", "--limit", "20", "--predictor-model", path, "--json"]
    return argv


def predict_eval_flags(rng, folder, fx):
    model, data = fx.get("predictor_model"), fx.get("castillo")
    if model is None or data is None:
        return None
    argv = ["predict", "eval", "--data", data, "--model", model]
    return argv + numeric_flags(rng, ["--quantile", "--online-rate", "--context-bytes"]) + ["--json"]


def predict_misc_flags(rng, folder, fx):
    data = fx.get("castillo")
    sub = rng.choice(["validate", "compare", "bench"])
    if sub == "bench":
        return ["predict", "bench"] + numeric_flags(rng, ["--hash-bits", "--prompt-words"]) + ["--json"]
    if data is None:
        return None
    flags = ["--k", "--epochs", "--hash-bits"] if sub == "validate" else ["--epochs", "--rounds", "--leading-tokens"]
    return ["predict", sub, "--data", data, "--epochs", "1"] + numeric_flags(rng, flags) + ["--json"]


# MARK: generate and kv-dump (load the model)

GENERATE_FLAGS = ["--max-tokens", "--capacity-blocks", "--block-tokens", "--threads", "--temperature", "--top-k",
                  "--seed", "--repeat"]


def generate_flags(rng, folder, fx):
    if "model" not in fx:
        return None
    argv = ["generate", "--model", fx["model"], "--prompt",
            rng.choice(["1, 2, 3,", "Hi", " ", "\u00e9\u00e9", "a" * 100_000, "<|im_start|>" * 50, "\ufffd\u0001x"]),
            "--max-tokens", "4", "--threads", "1"]
    return argv + numeric_flags(rng, GENERATE_FLAGS) + (["--json"] if rng.random() < 0.5 else [])


def generate_small_pool(rng, folder, fx):
    """A pool or context too small for the prompt plus the tokens asked for."""
    if "model" not in fx:
        return None
    return ["generate", "--model", fx["model"], "--prompt", "1, 2, 3," * rng.randint(1, 4), "--threads", "1",
            "--max-tokens", str(rng.choice([20, 60])), "--capacity-blocks", str(rng.choice([1, 2, 3])),
            "--block-tokens", str(rng.choice([4, 16]))] + (["--json"] if rng.random() < 0.5 else [])


def generate_model_file(rng, folder, fx):
    if "model" not in fx:
        return None
    path = formats.make_gguf(rng, folder, fx["model"])
    return ["generate", "--model", path, "--prompt", "Hi", "--max-tokens", "2", "--threads", "1", "--json"]


BLEND_FLAGS = ["--limit", "--max-tokens", "--passages", "--passage-tokens", "--threads"]


def blend_data(rng, folder, fx):
    """kvcache blend on malformed RAG samples, odd ratio/selection lists and extreme numbers."""
    if "model" not in fx:
        return None
    argv = ["blend", "--model", fx["model"], "--data", formats.make_rag_samples(rng, folder), "--limit", "1",
            "--max-tokens", "1", "--passages", "2", "--passage-tokens", "8", "--threads", "1",
            "--ratio", rng.choice(["0.5", "0,1", "", "nan", "-0.1", "1.5", "0.1," * 40, "inf"]),
            "--select", rng.choice(["hkvd", "random,cci", "", "bogus", "hkvd,hkvd"]),
            "--check-layers", rng.choice(["1", "1,2", "0", "2,1", "99", "", "1," * 50])]
    if rng.random() < 0.5:
        argv += numeric_flags(rng, BLEND_FLAGS, 1)
    return argv + (["--json"] if rng.random() < 0.5 else [])


def kv_dump_flags(rng, folder, fx):
    if "model" not in fx:
        return None
    prompt = os.path.join(folder, "prompt.txt")
    with open(prompt, "wb") as f:
        f.write(rng.choice([b"hello world", b"", b"\xff\xfe", b"a " * 3000, b"a" * 300_000, b"\0" * 1000]))
    if rng.random() < 0.15:
        prompt = special_path(rng, folder, ["dir", "fifo", "/dev/zero", "device", "missing", "-"])
    argv = ["kv-dump", "--model", fx["model"], "--prompt-file", prompt, "--out", os.path.join(folder, "kv"),
            "--threads", "1", "--max-tokens", "8"]
    argv += numeric_flags(rng, ["--block-tokens", "--max-tokens", "--threads"], 1)
    if rng.random() < 0.3:
        argv += ["--dtype", rng.choice(["f8", "", "F16", "bf16"])]
    return argv + ["--json"]


def replay_many_values(rng, folder, fx):
    """A JSONL trace whose first or a later line holds hundreds of thousands to millions of values
    (hash ids, token ids, samples), sometimes gzip-compressed: refused by counting, in seconds."""
    n = rng.choice([40_000, 300_000, 2_100_000, 1 << 24])
    ids = ",".join(["7"] * n)
    kind = rng.choice(["mooncake", "mooncake", "marconi", "castillo", "sharegpt", "ragpulse"])
    big = {
        "mooncake": '{"timestamp": 1, "input_length": %d, "output_length": 1, "hash_ids": [%s]}' % (min(n, 1 << 24), ids),
        "marconi": '{"session_id": 0, "turn_id": 0, "ts": 1, "num_input_tokens": %d, "num_output_tokens": 0, '
                   '"input_tokens": [%s], "output_tokens": []}' % (n, ids),
        "castillo": '{"prompt_id": "p", "model": "m", "input_size": 5, "output_sizes": [%s]}' % ids,
        "sharegpt": '{"id": "x", "conversations": [%s]}' % ",".join(['{"from": "human", "value": "a"}'] * (n // 8)),
        "ragpulse": '{"timestamp": 1, "input_length": 5, "output_length": 1, "session_id": "s", '
                    '"hash_ids": {"passages_ids": [%s]}}' % ids,
    }[kind]
    good = '{"timestamp": 0, "input_length": 1, "output_length": 1, "hash_ids": [1]}'
    lines = [big] if rng.random() < 0.5 else [good, big, big]
    path = os.path.join(folder, "many.jsonl")
    with open(path, "w") as f:
        f.write("\n".join(lines * rng.choice([1, 1, 4])) + "\n")
    if rng.random() < 0.5:
        path = formats.gzip_file(rng, path)
    argv = ["replay", "--trace", path, "--mode", "sequential", "--capacity-blocks", "32"]
    if kind == "mooncake" or rng.random() < 0.3:
        argv += ["--block-tokens", rng.choice(["1", "16", "512"])]
    if rng.random() < 0.5:
        argv.append("--skip-bad-lines")
    return argv + ["--json"]


def replay_order_flags(rng, folder, fx):
    """Timed replay with the cache-aware order, aging, host swap and the hybrid/knowledge-tree flags at extremes."""
    argv = ["replay", "--mode", "timed", "--limit", "40", "--order", rng.choice(["cache-aware", "fcfs", "spf", "cache-aware,"]),
            "--aging-s", values.flag_number(rng)]
    argv += numeric_flags(rng, ["--cpu-gib", "--swap-gib", "--kv-gib", "--max-running", "--max-batched-tokens",
                                "--mixed-step-tokens", "--arrival-rate", "--think-time-s"], rng.randint(1, 3))
    if rng.random() < 0.3:
        argv += ["--model", rng.choice(["jamba-hybrid", "llama-3-8b", "x", ""])]
    if rng.random() < 0.2:
        argv.append("--no-session-gating")
    return argv + ["--json"]


def replay_tree_flags(rng, folder, fx):
    """The knowledge-tree and Pensieve replays with extreme sizes and odd layouts."""
    if rng.random() < 0.5:
        argv = ["replay", "--knowledge-tree", "--tree-layout", rng.choice(["", "x", "gpu,host", "host"])]
        argv += numeric_flags(rng, ["--capacity-blocks", "--tree-host-blocks", "--tree-block-tokens"], rng.randint(1, 2))
    else:
        argv = ["replay", "--pensieve"]
        argv += numeric_flags(rng, ["--capacity-blocks", "--pensieve-host-chunks", "--pensieve-chunk-tokens",
                                    "--pensieve-swap-threshold", "--pensieve-think-s", "--pensieve-conversation-gap-s"],
                              rng.randint(1, 3))
    return argv + ["--json"]


def blend_tiers(rng, folder, fx):
    """kvcache blend with the tiered fetch model: --tiers lists and extreme --disk-gbps."""
    if "model" not in fx:
        return None
    argv = ["blend", "--model", fx["model"], "--data", formats.make_rag_samples(rng, folder), "--limit", "1",
            "--max-tokens", "1", "--passages", "2", "--passage-tokens", "8", "--threads", "1",
            "--tiers", rng.choice(["host,disk", "disk", "", "x", "host,host", "gpu,host,disk", ","]),
            "--disk-gbps", values.flag_number(rng)]
    return argv + (["--json"] if rng.random() < 0.5 else [])


def kv_dump_dir(rng, folder, fx):
    """A hostile kv-dump directory fed to `bench tiers --kv-dir`: a manifest that lies about its blocks
    (huge counts and shapes, names leaving the folder, wrong sizes), block files that are FIFOs or devices,
    a manifest that is a FIFO, a huge file or not JSON."""
    d = os.path.join(folder, "dump")
    os.makedirs(d, exist_ok=True)
    layers, heads, dim, bt = 2, 2, 16, 8
    block_bytes = layers * 2 * heads * dim * bt * 2
    blocks = [{"file": "block-%05d.bin" % i, "index": i, "tokens": bt} for i in range(3)]
    for b in blocks:
        with open(os.path.join(d, b["file"]), "wb") as f:
            f.write(bytes(rng.getrandbits(8) for _ in range(block_bytes)))
    m = {"format": "kvcache-kv-dump-v1", "model": "m", "dtype": "f16", "layout": "[layer][K|V][token][kvHead][headDim]", "layers": layers, "kvHeads": heads,
         "headDim": dim, "blockTokens": bt, "bytesPerBlock": block_bytes, "promptTokens": 24, "blocks": blocks}
    for _ in range(rng.randint(1, 3)):
        key = rng.choice(["layers", "kvHeads", "headDim", "blockTokens", "bytesPerBlock", "promptTokens", "blocks", "file", "tokens",
                          "dtype", "shape", "format"])
        if key == "blocks":
            m["blocks"] = blocks * rng.choice([0, 2, 100_000, 1_100_000])
        elif key in ("file", "tokens"):
            b = dict(rng.choice(blocks))
            b[key] = rng.choice(["../../../../etc/passwd", "/dev/zero", "", "..", "fifo", "dev", "missing.bin", -1, 1 << 62, 9]) \
                if key == "file" else rng.choice([-1, 1 << 62, 0, 9])
            m["blocks"] = m["blocks"] + [b]
        elif key == "dtype":
            m["dtype"] = rng.choice(["f8", "", 3, "f32"])
        elif key == "shape":
            # Shapes each in range whose product is not (a block of 2^66 bytes), or just over 2^30.
            for k in ["layers", "kvHeads", "headDim", "blockTokens"]:
                m[k] = rng.choice([1 << 16, 1 << 8, 65535, 1])
            m["bytesPerBlock"] = rng.choice([1 << 30, block_bytes, 1])
        elif key == "format":
            m["format"] = rng.choice(["kvcache-kv-dump-v2", "", 1])
        else:
            m[key] = values.json_number(rng)
    names = {b["file"] for b in m["blocks"] if isinstance(b, dict) and isinstance(b.get("file"), str)}
    if "fifo" in names:
        os.mkfifo(os.path.join(d, "fifo"))
    if "dev" in names:
        try:
            os.mknod(os.path.join(d, "dev"), 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        except PermissionError:
            os.mkfifo(os.path.join(d, "dev"))
    manifest = os.path.join(d, "manifest.json")
    shape = rng.random()
    if shape < 0.1:
        os.mkfifo(manifest)
    elif shape < 0.15:
        os.symlink("/dev/zero", manifest)
    elif shape < 0.25:
        with open(manifest, "wb") as f:
            f.write(rng.choice([b"", b"{", b"[1,2]", b"\xff" * 100, b"{\"blocks\": " + b"[" * 100_000]))
    else:
        with open(manifest, "w") as f:
            json.dump(m, f)
    return ["bench", "tiers", "--kv-dir", d, "--blocks", "4", "--repeats", "1", "--json"]


def kv_dump_out(rng, folder, fx):
    """kv-dump --out naming a file, a link, a FIFO, a device, a missing parent chain, or empty."""
    if "model" not in fx:
        return None
    prompt = os.path.join(folder, "prompt.txt")
    with open(prompt, "w") as f:
        f.write("hello world")
    out = special_path(rng, folder, ["dir", "fifo", "device", "dangling", "missing-parent", "missing", ""])
    if rng.random() < 0.3:
        # A folder whose manifest.json or first block file is a link or a FIFO.
        out = os.path.join(folder, "kv")
        os.makedirs(out, exist_ok=True)
        name = rng.choice(["manifest.json", "block-00000.bin"])
        if rng.random() < 0.5:
            os.symlink(os.path.join(folder, "elsewhere"), os.path.join(out, name))
        else:
            os.mkfifo(os.path.join(out, name))
    return ["kv-dump", "--model", fx["model"], "--prompt-file", prompt, "--out", out, "--threads", "1", "--max-tokens", "4"]


# MARK: disk tier and bench

# The fixed names `disk_tier_dir` creates, by kind (each is made at most once per directory).
ODD_NAMES = {"empty-max": ["seg-ffffffffffffffff.kvlog"], "fifo": ["seg-00000000000000a0.kvlog"],
             "dir": ["seg-00000000000000b0.kvlog"], "dangling": ["seg-00000000000000c0.kvlog"],
             "self-link": ["seg-00000000000000d0.kvlog"]}


def disk_tier_dir(rng, folder, fx):
    """A copy of a real disk tier directory with odd entries added: an empty or huge-numbered segment,
    a FIFO or a folder named like a segment, a dangling symlink, oddly named and foreign files, and
    damaged or truncated segments."""
    template = fx.get("disk_dir")
    if template is None:
        return None
    d = os.path.join(folder, "tier")
    shutil.copytree(template, d)
    segments = sorted(n for n in os.listdir(d) if n.endswith(".kvlog"))
    for _ in range(rng.randint(1, 3)):
        kind = rng.choice(["empty-max", "empty", "fifo", "dir", "dangling", "odd-name", "foreign", "truncate",
                           "flip", "garbage-segment", "self-link"])
        name = lambda n: os.path.join(d, n)
        if any(os.path.lexists(name(n)) for n in ODD_NAMES.get(kind, [])):
            continue
        if kind == "empty-max":
            open(name("seg-ffffffffffffffff.kvlog"), "wb").close()
        elif kind == "empty":
            open(name("seg-%016x.kvlog" % rng.randint(0, 2 ** 64 - 1)), "wb").close()
        elif kind == "fifo":
            os.mkfifo(name("seg-00000000000000a0.kvlog"))
        elif kind == "dir":
            os.mkdir(name("seg-00000000000000b0.kvlog"))
        elif kind == "dangling":
            os.symlink(name("nowhere"), name("seg-00000000000000c0.kvlog"))
        elif kind == "self-link":
            os.symlink(name("seg-00000000000000d0.kvlog"), name("seg-00000000000000d0.kvlog"))
        elif kind == "odd-name":
            with open(name(rng.choice(["seg-zz.kvlog", "seg-.kvlog", "seg-0000000000000000000001.kvlog",
                                       "seg--1.kvlog", "SEG-0000000000000001.KVLOG"])), "wb") as f:
                f.write(values.garbage_bytes(rng, 64))
        elif kind == "foreign":
            with open(name(rng.choice(["notes.txt", ".hidden", "index.json"])), "wb") as f:
                f.write(b"hello")
        elif segments:
            seg = name(rng.choice(segments))
            data = open(seg, "rb").read()
            if kind == "truncate":
                data = data[: rng.randrange(len(data) + 1)]
            elif kind == "flip":
                data = formats.mutate_bytes(rng, data)
            else:
                data = values.garbage_bytes(rng, rng.randint(1, 4096))
            with open(seg, "wb") as f:
                f.write(data)
    return d


def disk_fsck(rng, folder, fx):
    d = disk_tier_dir(rng, folder, fx)
    if d is None:
        return None
    return ["disk", "fsck", d] + (["--dry-run"] if rng.random() < 0.5 else []) + ["--json"]


def disk_stress_flags(rng, folder, fx):
    d = disk_tier_dir(rng, folder, fx) if rng.random() < 0.5 else os.path.join(folder, "new")
    if d is None:
        d = os.path.join(folder, "new")
    argv = ["disk", "stress", d, "--seconds", "0.3", "--block-kib", "16", "--capacity-mib", "4"]
    return argv + numeric_flags(rng, ["--seconds", "--block-kib", "--capacity-mib"], 1) + ["--json"]


def bench_flags(rng, folder, fx):
    sub = rng.choice(["core", "scheduler", "tiers", "chunks", "trace", "hybrid"])
    if sub == "trace":
        argv = ["bench", "trace", "--repetitions", "1", "--pool-blocks",
                rng.choice(["64", "1,2", "", ",", "0", "-5", "16000001", "x", "64," * 20, values.flag_number(rng)])]
        if rng.random() < 0.5:
            argv += ["--trace", formats.make_mooncake(rng, folder)]
        return argv + numeric_flags(rng, ["--block-tokens", "--repetitions"], 1) + ["--json"]
    if sub == "hybrid":
        argv = ["bench", "hybrid", "--requests", "4", "--repetitions", "1",
                "--policy", rng.choice(["sglang+", "adaptive", "", "lru", "marconi,marconi", ",", "x" * 300])]
        return argv + numeric_flags(rng, ["--requests", "--repetitions"], 1) + ["--json"]
    if sub == "chunks":
        return ["bench", "chunks", "--repetitions", "1"] + numeric_flags(rng, ["--tokens", "--repetitions"], 1) + ["--json"]
    if sub == "core":
        return ["bench", "core", "--repetitions"] + [values.flag_number(rng)] + ["--json"]
    if sub == "scheduler":
        argv = ["bench", "scheduler", "--running", "4", "--steps", "5", "--repetitions", "1"]
        return argv + numeric_flags(rng, ["--running", "--steps", "--repetitions"], 1) + ["--json"]
    argv = ["bench", "tiers", "--blocks", "2", "--repeats", "1", "--disk-dir", os.path.join(folder, "bt")]
    return argv + numeric_flags(rng, ["--blocks", "--repeats"], 1) + ["--json"]


def capi_calls(rng, folder, fx):
    """Random C ABI calls with extreme arguments in a Python process (see capi_fuzz.py)."""
    if "lib" not in fx:
        return None
    return ["@python", os.path.join(os.path.dirname(os.path.abspath(__file__)), "capi_fuzz.py"), fx["lib"],
            str(rng.getrandbits(32)), "2000"]


def output_target_kept(argv, code, out, err):
    """An output flag (`--out`, `--per-request`) must not replace a device, a FIFO or a symlink (or the
    file it points at)."""
    flag = next((f for f in ("--out", "--per-request") if f in argv), None)
    if flag is None:
        return None
    path = argv[argv.index(flag) + 1]
    if os.path.basename(path) != "special":
        return None
    folder = os.path.dirname(path)
    precious = os.path.join(folder, "precious.txt")
    if os.path.exists(precious) and open(precious).read() != "precious\n":
        return f"{flag} overwrote the file a symlink points at"
    st = os.lstat(path)
    if stat.S_ISREG(st.st_mode):
        return f"{flag} replaced a device, FIFO or symlink with a regular file"
    return None


def generated_text_kept(argv, code, out, err):
    """generate must not lose what it generated: a run the pool or context stopped is not an error."""
    if code == 1 and b"exhausted" in err:
        return "generated text lost: the run failed on a full pool"
    return None


def generated_text_meaningful(argv, code, out, err):
    """A run that exits 0 must not have generated tokens that spell nothing (NaN logits pick token 0)."""
    if code != 0 or "--json" not in argv:
        return None
    try:
        import json
        runs = json.loads(out)["runs"]
    except (ValueError, KeyError, TypeError):
        return "generate --json did not print one JSON object"
    for r in runs:
        if r.get("generated_tokens", 0) > 0 and r.get("text") == "" and r.get("stop_reason") != "eos":
            return "empty text from generated tokens, exit 0 (non-finite logits?)"
    return None


def garbage_argv(rng, folder, fx):
    """Random subcommands with random flags and values (parser robustness)."""
    subs = [["replay"], ["predict", "train"], ["predict", "eval"], ["disk", "fsck"], ["bench", "core"], ["generate"]]
    argv = list(rng.choice(subs))
    for _ in range(rng.randint(0, 4)):
        argv.append(rng.choice(["--" + rng.choice(["trace", "mode", "x", "", "capacity-blocks", "json"]),
                                values.flag_number(rng), "-", "--", "-h"]))
    return argv


def _msgpack_batch(rng):
    """One KVEventBatch in msgpack, written by hand: [ts, [BlockStored | BlockRemoved...], rank]."""
    def hashes(n):
        return bytes([0x90 | n]) + b"".join(b"\xc4\x10" + bytes(rng.randrange(256) for _ in range(16)) for _ in range(n))
    events = []
    for _ in range(rng.randint(0, 4)):
        n = rng.randint(1, 3)
        if rng.random() < 0.7:
            parent = b"\xc0" if rng.random() < 0.3 else b"\xc4\x10" + bytes(rng.randrange(256) for _ in range(16))
            events.append(b"\x85\xa4type\xabBlockStored\xacblock_hashes" + hashes(n) + b"\xb1parent_block_hash" + parent
                          + b"\xaablock_size" + bytes([rng.choice([1, 16, 127])]) + b"\xa6medium\xa3GPU")
        else:
            events.append(b"\x83\xa4type\xacBlockRemoved\xacblock_hashes" + hashes(n) + b"\xa6medium\xa3GPU")
    ts = b"\xcb" + struct.pack(">d", rng.choice([0.0, 1.5, 1e9, -1.0, float("nan"), float("inf")]))
    return b"\x93" + ts + bytes([0x90 | len(events)]) + b"".join(events) + b"\x00"


def _msgpack_request(rng):
    """One request frame's payload (RecordedRequest), its numbers now and then out of range or of the wrong type."""
    def num(good):
        return rng.choice([good, good, good, b"\xff", b"\xd3" + struct.pack(">q", -(2 ** 63)), b"\xc0", b"\xa1x"])
    n = rng.randint(0, 4)
    hashes = bytes([0x90 | n]) + b"".join(b"\xc4\x10" + bytes(rng.randrange(256) for _ in range(16)) for _ in range(n))
    ts = b"\xcb" + struct.pack(">d", rng.choice([0.0, 2.5, float("nan"), -1.0]))
    return (b"\x87\xa4type\xa7Request\xa2ts" + ts + b"\xacinput_tokens" + num(b"\xcd\x08\x00")
            + b"\xadoutput_tokens" + num(b"\x10") + b"\xaablock_size" + num(rng.choice([b"\xcd\x02\x00", b"\x00"]))
            + b"\xacblock_hashes" + hashes + b"\xaahit_tokens" + num(rng.choice([b"\x00", b"\xcd\x02\x00", b"\xce\x00\x10\x00\x00"])))


def trace_export(rng, folder, fx):
    """kvcache trace export on a KV-event recording with damaged frames, lengths or msgpack."""
    v2 = rng.random() < 0.5
    frames = [_msgpack_batch(rng) for _ in range(rng.randint(0, 6))]
    if v2:
        # Version 2: kind-tagged frames, event batches (0) between request frames (1), an odd kind at times.
        frames = [bytes([0]) + f for f in frames]
        for _ in range(rng.randint(0, 4)):
            frames.insert(rng.randint(0, len(frames)), bytes([rng.choice([1, 1, 1, 2])]) + _msgpack_request(rng))
    data = bytearray(b"KVEVREC2" if v2 else b"KVEVREC1")
    for f in frames:
        n = len(f) if rng.random() < 0.9 else rng.choice([0, 2 ** 31 - 1, len(f) + 1, 2 ** 26 + 1])
        data += struct.pack(">I", n) + f
    for _ in range(rng.choice([0, 0, 1, 3])):
        if len(data) > 8:
            data[rng.randrange(8, len(data))] = rng.randrange(256)
    if rng.random() < 0.2:
        data = data[:rng.randrange(len(data) + 1)]
    path = os.path.join(folder, "events.kvev")
    with open(path, "wb") as f:
        f.write(bytes(data))
    argv = ["trace", "export", path, "-o", os.path.join(folder, "out.jsonl")]
    if rng.random() < 0.3:
        argv += ["--medium", rng.choice(["CPU", "", "GPU"])]
    return argv + (["--json"] if rng.random() < 0.5 else [])


def _mp(v):
    """msgpack of a Python value (None, bool, int, float, str, bytes, list, dict), smallest encodings."""
    if v is None:
        return b"\xc0"
    if v is True or v is False:
        return b"\xc3" if v else b"\xc2"
    if isinstance(v, int):
        if 0 <= v < 128:
            return bytes([v])
        if -32 <= v < 0:
            return struct.pack(">b", v)
        if v >= 0:
            return b"\xcf" + struct.pack(">Q", v) if v >= 1 << 32 else b"\xce" + struct.pack(">I", v)
        return b"\xd3" + struct.pack(">q", v)
    if isinstance(v, float):
        return b"\xcb" + struct.pack(">d", v)
    if isinstance(v, str):
        b = v.encode()
        return (bytes([0xa0 | len(b)]) if len(b) < 32 else b"\xdb" + struct.pack(">I", len(b))) + b
    if isinstance(v, bytes):
        return b"\xc6" + struct.pack(">I", len(v)) + v
    if isinstance(v, list):
        if len(v) > 64 and all(x is v[0] for x in v):   # one item repeated: encoded once
            return b"\xdd" + struct.pack(">I", len(v)) + _mp(v[0]) * len(v)
        return b"\xdd" + struct.pack(">I", len(v)) + b"".join(_mp(x) for x in v)
    return b"\xdf" + struct.pack(">I", len(v)) + b"".join(_mp(k) + _mp(x) for k, x in v.items())


def _recording_frames(data):
    """The (kind, payload) frames of a well-formed version 2 recording."""
    frames, at = [], 8
    while at + 5 <= len(data):
        n = struct.unpack(">I", data[at:at + 4])[0]
        frames.append((data[at + 4], data[at + 5:at + 4 + n]))
        at += 4 + n
    return frames


RECORDING_NUMBERS = [0, 1, -1, 2 ** 24, 2 ** 24 + 1, 2 ** 31, 2 ** 62, 2 ** 63 - 1, -2 ** 63, 2 ** 64 - 1, 1.5,
                     float("nan"), float("inf"), -1e300, "12", None]


def _hostile_request(rng, hashes):
    """A request frame payload whose fields are now and then out of range, of the wrong type or huge."""
    fields = {"type": "Request", "ts": 1e8, "input_tokens": 16 * len(hashes), "output_tokens": 4,
              "block_size": 16, "block_hashes": hashes, "hit_tokens": 0}
    for key in rng.sample(list(fields), rng.randint(1, 3)):
        if key == "block_hashes":
            fields[key] = rng.choice([[b"\x01" * rng.choice([0, 16, 1 << 20])] * rng.choice([1, 3]),
                                      [rng.randrange(1 << 64) for _ in range(rng.choice([1, 1000]))],
                                      [b"\x02" * 16] * rng.choice([100_000, 1_100_000]), "x", None])
        elif key == "type":
            fields[key] = rng.choice(["request", "", 7])
        else:
            fields[key] = rng.choice(RECORDING_NUMBERS)
    if rng.random() < 0.2:
        del fields[rng.choice(list(fields))]
    return _mp(fields)


def _hostile_batch(rng, hashes):
    """An event batch payload (or a list of them): absurd block sizes and timestamps, long parent chains,
    huge event lists."""
    shape = rng.random()
    if shape < 0.15:
        # Many batches of one stored block each, each the previous one's child (quadratic request blocks).
        n, first = rng.choice([100, 20_000]), rng.randrange(1 << 40)
        size = rng.choice([1, 16, 2 ** 24])
        return [_mp([1e8, [{"type": "BlockStored", "block_hashes": [first + i + 1], "parent_block_hash": first + i,
                            "block_size": size}], 0]) for i in range(n)]
    if shape < 0.3:
        # One stored block per event, each the previous one's child: chains as long as the events.
        n = rng.choice([10, 3000, 40_000])
        events = [{"type": "BlockStored", "block_hashes": [i + 1], "parent_block_hash": i or None,
                   "block_size": 16, "medium": "GPU"} for i in range(n)]
        return _mp([1e8, events, 0])
    if shape < 0.5:
        n = rng.choice([1, 1000, 1 << 20])
        return _mp([1e8, [{"type": "BlockStored", "block_hashes": hashes or [b"\x03" * 16], "parent_block_hash": None,
                           "block_size": rng.choice(RECORDING_NUMBERS), "medium": rng.choice(["GPU", None, "CPU"])}] * n, 0])
    if shape < 0.7:
        # A huge msgpack array: n small items (each one byte), or a count the bytes cannot hold.
        n = rng.choice([1 << 16, 1 << 22, (1 << 26) - 16])
        item = rng.choice([b"\xc0", b"\x01", b"\x90", b"\x80"])
        if rng.random() < 0.5:
            return b"\x93\xcb" + struct.pack(">d", 1e8) + b"\xdd" + struct.pack(">I", n) + item * n + b"\x00"
        return b"\xdd" + struct.pack(">I", n) + item * (n // rng.choice([1, 2, 1000]))
    if shape < 0.8:
        return _mp([rng.choice(RECORDING_NUMBERS), [{"type": "BlockRemoved", "block_hashes": hashes}], 0])
    if shape < 0.9:
        return _mp([1e8, [{"type": "AllBlocksCleared"}, {"type": rng.choice(["", "X" * 1000, 5])}], rng.choice(RECORDING_NUMBERS)])
    return bytes([0x91] * rng.choice([31, 32, 100_000])) + b"\xc0"


_ZEROS_MEMBER = []


def trace_export_recorded(rng, folder, fx):
    """kvcache trace export on a real version 2 recording (`replay --record-events`) mutated: truncated
    frames, wrong kind bytes, absurd lengths, huge msgpack arrays and counts, request frames with out of
    range fields, long parent chains, a version 1 header on version 2 frames, garbage, gzip bombs."""
    if "recording" not in fx:
        return None
    data = bytearray(open(fx["recording"], "rb").read())
    frames = _recording_frames(bytes(data))
    hashes = [bytes(rng.getrandbits(8) for _ in range(16)) for _ in range(rng.randint(0, 4))]
    for _ in range(rng.randint(1, 3)):
        op = rng.random()
        if op < 0.25 and frames:
            # Replace, insert or repeat frames with hostile ones.
            i = rng.randrange(len(frames))
            kind = rng.choice([0, 0, 1, 1, 1, 2])
            payload = _hostile_request(rng, hashes) if kind == 1 else _hostile_batch(rng, hashes)
            if isinstance(payload, list):
                frames[i:i] = [(kind, p) for p in payload]
            elif rng.random() < 0.5:
                frames[i] = (kind, payload)
            else:
                frames[i:i] = [(kind, payload)] * (rng.choice([1, 2, 1000]) if len(payload) < 100_000 else 1)
        elif op < 0.3 and frames:
            i = rng.randrange(len(frames))
            frames[i] = (rng.randrange(256), frames[i][1])
        elif op < 0.45 and sum(len(p) for _, p in frames) < 4_000_000:
            frames = frames * rng.choice([2, 50])
        elif op < 0.55 and frames:
            del frames[rng.randrange(len(frames)):]
        else:
            frames = frames  # the byte-level damage below
    v1 = rng.random() < 0.3
    if v1:
        # What a live stream's recording holds: the batches only, hostile ones among them.
        frames = [(0, p) for k, p in frames if k != 1]
        for _ in range(rng.randint(1, 3)):
            payload, at = _hostile_batch(rng, hashes), rng.randint(0, len(frames))
            frames[at:at] = [(0, p) for p in (payload if isinstance(payload, list) else [payload])]
    data = bytearray(b"KVEVREC1" if v1 else b"KVEVREC2")
    for kind, payload in frames:
        data += struct.pack(">I", len(payload) + (0 if v1 else 1)) + (b"" if v1 else bytes([kind & 0xff])) + payload
    damage = rng.random()
    if damage < 0.15 and len(data) > 12:
        # An absurd length somewhere.
        at = rng.randrange(8, len(data) - 4)
        data[at:at + 4] = struct.pack(">I", rng.choice([0, 1, 2 ** 26, 2 ** 26 + 1, 2 ** 32 - 1, 2 ** 31]))
    elif damage < 0.3:
        data = data[:rng.randrange(len(data) + 1)]
    elif damage < 0.4:
        data[:8] = b"KVEVREC1"
    elif damage < 0.5:
        data[:8] = rng.choice([b"KVEVREC3", b"KVEVREC", b"", b"\x1f\x8b\x08\x00"])
    elif damage < 0.6:
        for _ in range(rng.randint(1, 20)):
            if len(data) > 8:
                data[rng.randrange(8, len(data))] = rng.randrange(256)
    elif damage < 0.65:
        data += values.garbage_bytes(rng, rng.choice([1, 4, 5, 1000]))
    path = os.path.join(folder, "events.kvev")
    with open(path, "wb") as f:
        f.write(bytes(data))
    if rng.random() < 0.1:
        with open(path, "rb") as f:
            raw = f.read()
        import gzip
        with gzip.open(path, "wb", compresslevel=1) as f:
            f.write(raw)
    elif rng.random() < 0.05:
        # A gzip bomb: a recording header, then a gigabyte of zeros (a frame length of 0 after them all),
        # as concatenated gzip members (one member of 16 MiB of zeros, compressed once, repeated).
        import gzip
        if not _ZEROS_MEMBER:
            _ZEROS_MEMBER.append(gzip.compress(bytes(1 << 24), compresslevel=9))
        with open(path, "wb") as f:
            f.write(gzip.compress(b"KVEVREC1"))
            for _ in range(rng.choice([6, 64])):
                f.write(_ZEROS_MEMBER[0])
    argv = ["trace", "export", path, "-o", os.path.join(folder, "out.jsonl")]
    if rng.random() < 0.2:
        argv += ["--medium", rng.choice(["CPU", "", "GPU"])]
    return argv + (["--json"] if rng.random() < 0.5 else [])


def report_inputs(rng, folder, fx):
    """kvcache report on odd report files: runs of wrong types, huge or non-finite numbers, not JSON."""
    def run():
        keys = ["policy", "capacity_blocks", "token_hit_rate", "hit_tokens_l1", "hit_tokens_l2", "hit_tokens_l3",
                "input_tokens", "ttft_percentiles_s", "tpot_percentiles_s", "occupancy", "reservation", "kv_gib"]
        value = lambda: rng.choice([0, -1, 1e308, 2 ** 63 - 1, "x", None, [], [1, 2, "a"], {"request": 1},
                                    [{"request": 1, "l1_blocks": 5}], list(range(rng.choice([1, 101, 3000])))])
        return {k: value() for k in rng.sample(keys, rng.randint(0, len(keys)))}
    paths = []
    for i in range(rng.randint(1, 3)):
        path = os.path.join(folder, f"r{i}.json")
        doc = {"schema_version": 1, "command": "replay", "mode": rng.choice(["sequential", "timed", "<b>"]),
               "runs": [run() for _ in range(rng.randint(0, 5))]}
        text = json.dumps(doc) if rng.random() < 0.85 else values.odd_text(rng).decode("utf-8", "replace")
        with open(path, "w") as f:
            f.write(text)
        paths.append(path)
    if rng.random() < 0.2:
        paths.append(special_path(rng, folder, ["dir", "fifo", "/dev/zero", "missing"]))
    return ["report"] + paths + ["-o", os.path.join(folder, "report.html")]


# name -> (generator, cost weight[, check]): `check(argv, code, stdout, stderr)` returns why a case
# that exited cleanly still failed (data loss), or None.
GENERATORS = {
    "replay-seq-flags": (replay_seq_flags, 1),
    "replay-timed-flags": (replay_timed_flags, 1),
    "replay-trace": (replay_trace, 1),
    "replay-gzip-bomb": (replay_gzip_bomb, 4),
    "replay-special-paths": (replay_special_paths, 1),
    "replay-disk-dir": (replay_disk_dir, 1),
    "replay-marconi": (replay_marconi, 1, output_target_kept),
    "replay-ragpulse": (replay_ragpulse, 1),
    "predict-train-flags": (predict_train_flags, 1),
    "predict-train-data": (predict_train_data, 1),
    "predict-train-out": (predict_train_out, 1, output_target_kept),
    "predict-eval-model": (predict_eval_model, 1),
    "predict-eval-flags": (predict_eval_flags, 1),
    "predict-misc-flags": (predict_misc_flags, 1),
    "generate-flags": (generate_flags, 3, generated_text_meaningful),
    "generate-small-pool": (generate_small_pool, 3, generated_text_kept),
    "generate-model-file": (generate_model_file, 4, generated_text_meaningful),
    "kv-dump-flags": (kv_dump_flags, 3),
    "blend-data": (blend_data, 4),
    "disk-fsck": (disk_fsck, 1),
    "disk-stress-flags": (disk_stress_flags, 1),
    "bench-flags": (bench_flags, 2),
    "replay-many-values": (replay_many_values, 2),
    "replay-order-flags": (replay_order_flags, 1),
    "replay-tree-flags": (replay_tree_flags, 1),
    "blend-tiers": (blend_tiers, 4),
    "kv-dump-dir": (kv_dump_dir, 1),
    "kv-dump-out": (kv_dump_out, 3, output_target_kept),
    "trace-export": (trace_export, 1),
    "trace-export-recorded": (trace_export_recorded, 1),
    "report-inputs": (report_inputs, 1),
    "garbage-argv": (garbage_argv, 1),
    "capi-calls": (capi_calls, 2),
}
