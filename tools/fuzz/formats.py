"""Malformed files of every format the CLI reads, each from a valid shape and a seeded mutation.

Each `make_*` function writes into `folder` and returns the path to pass on the command line.
"""
import gzip
import json
import os
import struct
import zlib

import values


# MARK: Traces

def mooncake_record(rng, block_tokens=512):
    n = rng.randint(1, 6)
    start = rng.randint(0, 50)
    return {"timestamp": rng.randint(0, 10_000), "input_length": n * block_tokens - rng.randint(0, 100),
            "output_length": rng.randint(1, 300), "hash_ids": list(range(start, start + n))}


def mutate_record(rng, record):
    """Replaces one field by an extreme value, drops it, or adds a strange one."""
    r = dict(record)
    key = rng.choice(list(r) + ["extra"])
    action = rng.random()
    if action < 0.6:
        r[key] = values.json_number(rng) if key != "hash_ids" else rng.choice(
            [[], [values.json_number(rng)], [0] * rng.choice([1, 10_000, 300_000]), "x", None,
             list(range(5000)), [-1, -2], [2 ** 64], [1.5]])
    elif action < 0.75:
        r.pop(key, None)
    elif action < 0.9:
        r[key] = values.odd_text(rng).decode("latin-1")[:1000]
    else:
        r["input_length"] = rng.choice([2 ** 63 - 1, 2 ** 62, 10 ** 18, 2 ** 53])
    return r


def write_lines(path, lines):
    with open(path, "wb") as f:
        for line in lines:
            f.write(line if isinstance(line, bytes) else line.encode("utf-8", "surrogatepass"))
            f.write(b"\n")
    return path


def make_mooncake(rng, folder, name="trace.jsonl"):
    records = [mooncake_record(rng) for _ in range(rng.randint(1, 30))]
    lines = []
    for r in records:
        if rng.random() < 0.3:
            r = mutate_record(rng, r)
        lines.append(json.dumps(r, allow_nan=True))
    style = rng.random()
    if style < 0.1:
        lines.insert(rng.randrange(len(lines) + 1), rng.choice(values.JSON_SPECIAL_LITERALS))
    elif style < 0.2:
        lines.append(lines[-1][: rng.randrange(len(lines[-1]) + 1)])   # truncated last line
    elif style < 0.3:
        lines.insert(0, values.odd_text(rng).decode("latin-1"))
    elif style < 0.4:   # out-of-order and negative timestamps
        for i, line in enumerate(lines):
            try:
                r = json.loads(line)
                if isinstance(r, dict):
                    r["timestamp"] = rng.choice([10 ** 12, -5, 0, 1e300, 5 - i * 1000])
                    lines[i] = json.dumps(r)
            except ValueError:
                pass
    return write_lines(os.path.join(folder, name), lines)


CSV_HEADERS = {
    "azure": "TIMESTAMP,ContextTokens,GeneratedTokens",
    "vidur": "arrived_at,num_prefill_tokens,num_decode_tokens",
    "burstgpt": "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type",
}


def csv_row(rng, kind, i):
    if kind == "azure":
        cells = [f"2023-11-16 18:17:{i % 60:02d}.0000000", str(rng.randint(1, 8000)), str(rng.randint(1, 500))]
    elif kind == "vidur":
        cells = [f"{i * 0.5}", str(rng.randint(1, 8000)), str(rng.randint(1, 500))]
    else:
        cells = [str(i), "ChatGPT", str(rng.randint(1, 8000)), str(rng.randint(1, 500)), "0", "Conversation log"]
    if rng.random() < 0.4:
        cells[rng.randrange(len(cells))] = values.csv_cell(rng)
    if rng.random() < 0.1:
        cells = cells[: rng.randrange(len(cells))]
    if rng.random() < 0.05:
        cells += ["extra", "\"unterminated"]
    return ",".join(cells)


def make_csv(rng, folder, kind=None):
    kind = kind or rng.choice(sorted(CSV_HEADERS))
    header = CSV_HEADERS[kind]
    if rng.random() < 0.1:
        header = rng.choice(["", header.upper(), header.replace(",", ";"), "\ufeff" + header, header + ",x,x,x"])
    lines = [header] + [csv_row(rng, kind, i) for i in range(rng.randint(0, 40))]
    if rng.random() < 0.1:
        lines.append(values.odd_text(rng).decode("latin-1"))
    return write_lines(os.path.join(folder, f"{kind}.csv"), lines)


def sharegpt_conversation(rng, i):
    turns = []
    for t in range(rng.randint(0, 4)):
        turns.append({"from": "human" if t % 2 == 0 else "gpt", "value": "word " * rng.randint(0, 50)})
    c = {"id": f"c{i}", "conversations": turns}
    if rng.random() < 0.3:
        key = rng.choice(["id", "conversations", "from", "value"])
        bad = rng.choice([None, 5, [], {}, "x", values.json_number(rng), [None], [[]], [{"from": 1}]])
        if key in ("id", "conversations"):
            c[key] = bad
        elif turns:
            turns[rng.randrange(len(turns))][key] = bad
    return c


def make_sharegpt(rng, folder):
    convs = [sharegpt_conversation(rng, i) for i in range(rng.randint(0, 12))]
    if rng.random() < 0.5:
        path = os.path.join(folder, "sharegpt.json")
        text = json.dumps(convs)
        if rng.random() < 0.2:
            text = text[: rng.randrange(len(text) + 1)]
        if rng.random() < 0.1:
            text = rng.choice(["{}", "null", "5", "[" * 50000, "[[]]", '"str"'])
        with open(path, "w") as f:
            f.write(text)
        return path
    return write_lines(os.path.join(folder, "sharegpt.jsonl"), [json.dumps(c) for c in convs])


def make_castillo(rng, folder, mutate=True):
    """A CASTILLO folder: *lengths*.jsonl and *prompts*.jsonl, one of them mutated."""
    d = os.path.join(folder, "castillo")
    os.makedirs(d, exist_ok=True)
    lengths, prompts = [], []
    for i in range(rng.randint(1, 40)):
        pid = f"p{i % 13}"
        sizes = [rng.randint(1, 800) for _ in range(rng.randint(1, 10))]
        rec = {"sample_id": f"s{i}", "prompt_id": pid, "model": rng.choice(["m1", "m2"]),
               "dataset": rng.choice(["A", "B"]), "input_size": rng.randint(1, 900), "output_sizes": sizes,
               "output_mean": sum(sizes) / len(sizes), "split": rng.choice(["train", "validate"])}
        if mutate and rng.random() < 0.25:
            rec = mutate_castillo(rng, rec)
        lengths.append(json.dumps(rec, allow_nan=True))
        prompts.append(json.dumps({"prompt_id": pid, "dataset": rec.get("dataset"), "split": "train",
                                   "prompt_text": "how many words " * rng.randint(0, 20)}))
    write_lines(os.path.join(d, "castillo_lengths_x.jsonl"), lengths)
    write_lines(os.path.join(d, "castillo_prompts_x.jsonl"), prompts)
    return d


def mutate_castillo(rng, rec):
    key = rng.choice(["input_size", "output_sizes", "output_mean", "split", "prompt_id", "model"])
    rec[key] = rng.choice([values.json_number(rng), [], [values.json_number(rng)] * rng.randint(1, 3),
                           [2 ** 63 - 1] * 10, None, "x"])
    return rec


def marconi_record(rng, session, turn, ts):
    n_in, n_out = rng.randint(1, 60), rng.randint(1, 30)
    head = [1, 2, 3, 4] if rng.random() < 0.7 else []
    inp = (head + [rng.randrange(32000) for _ in range(n_in)])[:n_in]
    out = [rng.randrange(32000) for _ in range(n_out)]
    return {"session_id": session, "turn_id": turn, "ts": ts, "num_input_tokens": n_in,
            "num_output_tokens": n_out, "input_tokens": inp, "output_tokens": out}


def make_marconi(rng, folder, name="hybrid.jsonl"):
    """A trace in the Marconi simulator's schema (token lists, or counts as in its sysprompt trace),
    with one or two records mutated (extreme numbers, wrong types, lengths that disagree)."""
    records = [marconi_record(rng, i // 3, i % 3, float(i)) for i in range(rng.randint(1, 12))]
    for _ in range(rng.choice([0, 0, 1, 2])):
        r = rng.choice(records)
        key = rng.choice(list(r) + ["extra"])
        r[key] = rng.choice([values.json_number(rng), [], [values.json_number(rng)] * rng.randint(1, 3),
                             [2 ** 63 - 1] * 4, [-1], None, "x", list(range(rng.choice([1, 5000])))])
    lines = [json.dumps(r).encode() for r in records]
    if rng.random() < 0.2:
        lines.insert(rng.randrange(len(lines) + 1), values.odd_text(rng))
    path = os.path.join(folder, name)
    write_lines(path, lines)
    return gzip_file(rng, path) if rng.random() < 0.2 else path


RAGPULSE_KINDS = [("sys_prompt", "1_sys_prompt.jsonl", "sys_prompt_id"),
                  ("passages_ids", "2_passages.jsonl", "passage_id"),
                  ("history", "3_history.jsonl", "history_id"),
                  ("user_input", "4_user_input.jsonl", "user_input_id"),
                  ("web_search", "5_web_search.jsonl", "web_search_id")]


def make_ragpulse(rng, folder):
    """A RAGPulse trace (`0_trace.jsonl`) and its five side files of segment lengths, with ids that may
    be missing from the side files, extreme lengths or timestamps, and mutated lines in either."""
    base = {kind: 100 * (k + 1) for k, (kind, _, _) in enumerate(RAGPULSE_KINDS)}
    side = {kind: {base[kind] + i: rng.randint(1, 600) for i in range(8)} for kind, _, _ in RAGPULSE_KINDS}
    for kind, file, key in RAGPULSE_KINDS:
        lines = [json.dumps({key: i, "token_length": n}).encode() for i, n in side[kind].items()]
        if rng.random() < 0.08:
            victim = rng.randrange(len(lines))
            lines[victim] = json.dumps({key: rng.choice([values.json_number(rng), base[kind]]),
                                        "token_length": values.json_number(rng)}).encode()
        if rng.random() < 0.04:
            lines.append(values.odd_text(rng))
        write_lines(os.path.join(folder, file), lines)
    records = []
    for i in range(rng.randint(1, 10)):
        ids = {kind: rng.sample(sorted(side[kind]), rng.randint(0 if kind != "sys_prompt" else 1, 3))
               for kind, _, _ in RAGPULSE_KINDS}
        held = sum(side[kind][j] for kind in ids for j in ids[kind])
        records.append({"timestamp": str(10 * i), "input_length": held + rng.randint(0, 200),
                        "output_length": rng.randint(1, 300), "hash_ids": ids, "session_id": f"s{i % 3}"})
    for _ in range(rng.choice([0, 0, 1, 2])):
        r = rng.choice(records)
        key = rng.choice(list(r) + ["extra"])
        if key == "hash_ids" and isinstance(r["hash_ids"], dict) and rng.random() < 0.6:
            kind = rng.choice(RAGPULSE_KINDS)[0]
            r["hash_ids"][kind] = rng.choice([[values.json_number(rng)], [99999], "x", None, [0] * 5000])
        else:
            r[key] = values.json_number(rng)
    lines = [json.dumps(r).encode() for r in records]
    if rng.random() < 0.15:
        lines.insert(rng.randrange(len(lines) + 1), values.odd_text(rng))
    path = os.path.join(folder, "0_trace.jsonl")
    write_lines(path, lines)
    return path


def make_rag_samples(rng, folder):
    """A CacheBlend-shaped RAG sample file ([{question, answers?, ctxs: [{title?, text}]}]), often broken."""
    def odd():
        return values.odd_text(rng).decode("utf-8", "surrogateescape")

    def sample():
        ctxs = [{"title": odd(), "text": rng.choice(["Paris is in France.", "", odd(),
                                                                   "word " * rng.choice([1, 50, 3000])])}
                for _ in range(rng.randint(0, 5))]
        s = {"question": rng.choice(["Where is Paris?", "", odd()]), "ctxs": ctxs}
        if rng.random() < 0.5:
            s["answers"] = rng.choice([["France"], [], "France", [1], None])
        if rng.random() < 0.2:
            s[rng.choice(["question", "ctxs"])] = rng.choice([None, 1, [], {}, values.json_number(rng)])
        return s
    text = json.dumps([sample() for _ in range(rng.randint(0, 3))], allow_nan=True)
    style = rng.random()
    if style < 0.1:
        text = text[: rng.randrange(len(text) + 1)]
    elif style < 0.15:
        text = rng.choice(["{}", "[1,2]", "null", "", "[" * 100_000])
    path = os.path.join(folder, "rag.json")
    with open(path, "w", encoding="utf-8", errors="surrogatepass") as f:
        f.write(text)
    return path


def make_trace(rng, folder):
    """Any trace format, sometimes gzip-compressed (whole, truncated or as a bomb)."""
    kind = rng.choice(["mooncake", "mooncake", "csv", "sharegpt", "castillo"])
    path = {"mooncake": make_mooncake, "csv": make_csv, "sharegpt": make_sharegpt,
            "castillo": make_castillo}[kind](rng, folder)
    if os.path.isfile(path) and rng.random() < 0.2:
        path = gzip_file(rng, path)
    return path


def gzip_file(rng, path):
    data = open(path, "rb").read()
    packed = gzip.compress(data)
    r = rng.random()
    if r < 0.3:
        packed = packed[: rng.randrange(len(packed) + 1)]
    elif r < 0.5:
        i = rng.randrange(len(packed))
        packed = packed[:i] + bytes([packed[i] ^ (1 << rng.randrange(8))]) + packed[i + 1:]
    out = path + ".gz"
    with open(out, "wb") as f:
        f.write(packed)
    os.remove(path)
    return out


_BOMB_MEMBER = None


def make_gzip_bomb(rng, folder, name="bomb.jsonl.gz"):
    """A small gzip file that inflates to many GiB: one member of zeros (or newlines, or a repeated
    valid record) repeated as concatenated members, so it costs a few MiB to write."""
    global _BOMB_MEMBER
    fill = rng.choice([b"\0", b"\n", b"a", b"{\"timestamp\": 0, \"input_length\": 512, \"output_length\": 1, \"hash_ids\": [1]}\n"])
    if _BOMB_MEMBER is None or _BOMB_MEMBER[0] != fill:
        chunk = fill * (1 << 20) if len(fill) == 1 else fill * ((1 << 20) // len(fill))
        c = zlib.compressobj(9, zlib.DEFLATED, 31)
        body = b"".join(c.compress(chunk) for _ in range(256)) + c.flush()   # 256 MiB per member
        _BOMB_MEMBER = (fill, body)
    members = rng.choice([1, 40])   # 256 MiB, or 10 GiB through concatenated members
    path = os.path.join(folder, name)
    with open(path, "wb") as f:
        for _ in range(members):
            f.write(_BOMB_MEMBER[1])
    return path


# MARK: GGUF

GGUF_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<B", 10: "<Q", 11: "<q", 12: "<d"}


class GGUFHeader:
    """The header of a GGUF v3 file, parsed far enough to rewrite metadata values and re-emit it."""

    def __init__(self, data):
        self.data = data
        self.pos = 0
        magic, self.version, n_tensors, n_kv = struct.unpack_from("<IIQQ", data, 0)
        assert magic == 0x46554747
        self.pos = 24
        self.kv = []
        for _ in range(n_kv):
            key = self._string()
            t = self._u32()
            self.kv.append([key, t, self._value(t)])
        self.tensor_start = self.pos
        for _ in range(n_tensors):
            self._string()
            nd = self._u32()
            self.pos += 8 * nd + 4 + 8
        self.tensor_end = self.pos
        self.n_tensors = n_tensors
        align = dict((k, v) for k, _, v in self.kv).get("general.alignment", 32)
        self.data_start = (self.pos + align - 1) // align * align
        self.alignment = align

    def _u32(self):
        v = struct.unpack_from("<I", self.data, self.pos)[0]
        self.pos += 4
        return v

    def _string(self):
        n = struct.unpack_from("<Q", self.data, self.pos)[0]
        self.pos += 8
        s = self.data[self.pos:self.pos + n]
        self.pos += n
        return s.decode("utf-8", "replace")

    def _value(self, t):
        if t == 8:
            return self._string()
        if t == 9:
            it = self._u32()
            n = struct.unpack_from("<Q", self.data, self.pos)[0]
            self.pos += 8
            return (it, [self._value(it) for _ in range(n)])
        fmt = GGUF_SCALARS[t]
        v = struct.unpack_from(fmt, self.data, self.pos)[0]
        self.pos += struct.calcsize(fmt)
        return v

    @staticmethod
    def _emit_value(t, v):
        if t == 8:
            b = v.encode("utf-8", "surrogatepass") if isinstance(v, str) else v
            return struct.pack("<Q", len(b)) + b
        if t == 9:
            it, items = v
            return struct.pack("<IQ", it, len(items)) + b"".join(GGUFHeader._emit_value(it, x) for x in items)
        return struct.pack(GGUF_SCALARS[t], v)

    def emit(self):
        """The header bytes up to the aligned data start (tensor infos copied as they were)."""
        out = [struct.pack("<IIQQ", 0x46554747, self.version, self.n_tensors, len(self.kv))]
        for key, t, v in self.kv:
            out.append(self._emit_value(8, key) + struct.pack("<I", t) + self._emit_value(t, v))
        out.append(self.data[self.tensor_start:self.tensor_end])
        head = b"".join(out)
        return head + b"\0" * ((-len(head)) % self.alignment)


GGUF_EXTREMES = [0, 1, 2, 3, 7, 2 ** 31 - 1, 2 ** 32 - 1, 2 ** 40, 2 ** 63 - 1]
GGUF_FLOATS = [float("nan"), float("inf"), -float("inf"), 0.0, -1.0, 1e30, 1e-45]


def mutate_gguf_metadata(rng, header):
    """Sets one llama.* or tokenizer.* value to an extreme of a fitting type (or of the wrong one)."""
    candidates = [i for i, (k, _, _) in enumerate(header.kv) if k.startswith(("llama.", "tokenizer.", "general."))]
    i = rng.choice(candidates)
    key, t, v = header.kv[i]
    r = rng.random()
    if t in (4, 5, 10, 11, 0, 1, 2, 3):
        header.kv[i] = [key, 10, rng.choice(GGUF_EXTREMES)] if r < 0.8 else [key, 8, "12"]
    elif t in (6, 12):
        header.kv[i] = [key, 12, rng.choice(GGUF_FLOATS)]
    elif t == 9:
        it, items = v
        action = rng.choice(["truncate", "empty", "wrongtype", "extremes", "dupe"])
        if action == "truncate":
            items = items[: rng.randrange(len(items) + 1)]
        elif action == "empty":
            items = []
        elif action == "wrongtype":
            it, items = 10, [rng.choice(GGUF_EXTREMES) for _ in range(min(len(items), 100))]
        elif action == "extremes" and it in (4, 5, 6, 10, 11, 12):
            items = list(items)
            for _ in range(10):
                j = rng.randrange(len(items))
                items[j] = rng.choice(GGUF_FLOATS) if it in (6, 12) else rng.choice([0, 2 ** 31 - 1, 2 ** 32 - 1] if it in (4, 5) else GGUF_EXTREMES)
                if it == 5 and items[j] > 2 ** 31 - 1:
                    items[j] = -1
        elif action == "dupe" and it == 8:
            items = list(items)
            for _ in range(10):
                items[rng.randrange(len(items))] = rng.choice(["", "\u0120", items[0], "a" * 100000])
        header.kv[i] = [key, 9, (it, items)]
    else:
        header.kv[i] = [key, 8, rng.choice(["", "llama", "gpt2", "x" * 10000])]
    if rng.random() < 0.1:
        header.kv.pop(rng.randrange(len(header.kv)))
    return key


def make_gguf(rng, folder, model_path, header_cache={}):
    """A copy of the real model whose header has one value made extreme (or raw bytes flipped)."""
    if model_path not in header_cache:
        with open(model_path, "rb") as f:
            head = f.read(16 << 20)
        header_cache[model_path] = GGUFHeader(head)
    h = header_cache[model_path]
    import copy
    h2 = copy.copy(h)
    h2.kv = [list(x) for x in h.kv]
    path = os.path.join(folder, "model.gguf")
    style = rng.random()
    with open(model_path, "rb") as src, open(path, "wb") as out:
        if style < 0.7:
            mutate_gguf_metadata(rng, h2)
            out.write(h2.emit())
        else:   # raw byte damage in the header, or a truncation
            head = bytearray(h.data[: h.data_start])
            if style < 0.9:
                for _ in range(rng.randint(1, 8)):
                    i = rng.randrange(len(head))
                    head[i] = rng.getrandbits(8)
            else:
                head = head[: rng.randrange(len(head))]
                out.write(head)
                return path
            out.write(head)
        src.seek(h.data_start)
        while True:
            block = src.read(8 << 20)
            if not block:
                break
            out.write(block)
    return path


# MARK: Predictor model files and disk tier directories

def mutate_bytes(rng, data):
    """Bit flips, overwrites with extreme integers, truncation or extension of a binary file."""
    data = bytearray(data)
    r = rng.random()
    if r < 0.35 and data:
        for _ in range(rng.randint(1, 6)):
            i = rng.randrange(min(len(data), 256) if rng.random() < 0.7 else len(data))
            data[i] ^= 1 << rng.randrange(8)
    elif r < 0.7 and len(data) >= 8:
        i = rng.randrange(min(len(data) - 8, 256) + 1)
        fmt, v = rng.choice([("<I", 0xFFFFFFFF), ("<I", 0x7FFFFFFF), ("<Q", 2 ** 64 - 1), ("<Q", 2 ** 40),
                             ("<f", float("nan")), ("<f", float("inf")), ("<d", float("nan")), ("<I", 0)])
        struct.pack_into(fmt, data, i, v)
    elif r < 0.85:
        data = data[: rng.randrange(len(data) + 1)]
    else:
        data += values.garbage_bytes(rng, rng.randint(1, 4096))
    return bytes(data)
