"""`ChunkStore`: one kvcache_chunks_t handle (KVChunks' ChunkStore and ChunkPrefillPlan behind the C ABI): the
KV of position-independent chunks in the store's own blocks, and the engine-neutral prefill plan of a prompt
that reuses them at any position (CacheBlend, Cache-Craft, PIE).

The contract is the header's "Chunk reuse" section (Sources/CKVCache/include/kvcache.h): a call that raises
changed nothing; one thread at a time per handle. A plan holds its variants until commit(plan.plan_id).

Cost: one C call per method plus the Python argument checks; plan() sizes its buffers from the segments
(spans and fresh ranges at most one per segment, recomputed positions at most the chunk tokens), so it never
calls twice.
"""
import ctypes as C
from operator import index
from typing import List, NamedTuple

import numpy as np

from ._handle import OwnedHandle
from ._abi import (ABI_VERSION, ChunkAction, ChunkLoadStruct, ChunkPlanStruct, ChunksStatsStruct, ChunksTierStatsStruct,
                   Key, LoadingControllerStruct, PromptSegment, ReusedSpanStruct, SegmentKind, Selection, TiersConfig,
                   TokenRange, library)
from .cache import _i64, _invalid, _text, _tokens
from .tiers import TierStats, _copy_callables, _tier_stats, _tiers_config


class ReusedSpan(NamedTuple):
    """kvcache_reused_span: a chunk's KV placed at prompt positions target_start ..< target_start + tokens.
    recompute_budget: the tokens to recompute, at the plan's ratio; for a chunk a tiered store loaded under
    the loading controller, at the larger of that and the controller's ratio (ChunkLoad.ratio)."""
    chunk: tuple
    variant: int
    tier: int
    exact: bool
    source_start: int
    target_start: int
    tokens: int
    recompute_budget: int


class ChunkPlan(NamedTuple):
    """kvcache_chunk_plan with its arrays: spans in prompt order, recomputed positions ascending (an int64
    array), fresh (start, end) ranges ascending."""
    plan_id: int
    prompt_tokens: int
    prefix_tokens: int
    reused_tokens: int
    missing_chunks: int
    spans: List[ReusedSpan]
    recompute: np.ndarray
    fresh: List[tuple]


class ChunksStats(NamedTuple):
    """kvcache_chunks_stats."""
    capacity_blocks: int
    free_blocks: int
    block_tokens: int
    variants: int
    evicted_variants: int
    open_plans: int


class ChunksTierStats(NamedTuple):
    """kvcache_chunks_tier_stats: the block size, the variants spilled, loaded back and refused, and the
    tiers' own counters (TierStats)."""
    block_bytes: int
    spilled_variants: int
    loaded_variants: int
    failed_loads: int
    tiers: TierStats


class ChunkLoad(NamedTuple):
    """kvcache_chunk_load: what a tiered plan did with one chunk segment (action a ChunkAction, tier a Tier)
    and, when the loading controller decided, its modelled figures (seconds)."""
    segment: int
    chunk: tuple
    action: ChunkAction
    tier: int
    decided: bool
    ratio: float
    load_seconds: float
    recompute_seconds: float
    pipelined_seconds: float
    recompute_all_seconds: float


def _key(pair, what):
    """A (lo, hi) pair as a kvcache_key."""
    try:
        lo, hi = (index(x) for x in pair)
    except (TypeError, ValueError):
        raise _invalid(f"{what} must be a (lo, hi) pair of integers") from None
    if not (0 <= lo < 1 << 64 and 0 <= hi < 1 << 64):
        raise _invalid(f"{what} halves must fit in uint64_t")
    return Key(lo, hi)


class ChunkStore(OwnedHandle):
    """A chunk store of `capacity_blocks` blocks of `block_tokens` tokens, at most `max_variants` variants
    per chunk, keys computed under `key_namespace`."""
    _DESTROY = "kvcache_chunks_destroy"

    def __init__(self, capacity_blocks, block_tokens=16, max_variants=4, key_namespace=None):
        self._lib = lib = library()
        self._handle = None
        out = C.c_void_p()
        self._check(lib.kvcache_chunks_create(_i64(capacity_blocks, "capacity_blocks"), _i64(block_tokens, "block_tokens"),
                                              _i64(max_variants, "max_variants"), _text(key_namespace, "key_namespace"),
                                              C.byref(out)))
        self._handle = out.value

    @classmethod
    def tiered(cls, *, layers, kv_heads, head_dim, device_blocks, host_blocks, dtype_bytes=2, block_tokens=16,
               disk_directory=None, disk_capacity_bytes=0, max_variants=4, key_namespace=None, workers=2,
               spill_watermark=0.9, device_to_host=None, host_to_device=None):
        """A tiered chunk store (kvcache_chunks_create_tiered): a pool of `device_blocks` blocks, whose evicted
        variants go to `host_blocks` blocks of host memory and past them to the disk folder, with their KV,
        and are loaded back by plan (spans with tier HOST or DISK). Without callables the library holds the
        pool (put, fetch); with `device_to_host` and `host_to_device` (called on a library thread as
        fn(block, offset, length, host_address, token), each reported with copy_done(token, ok)) the pool is
        the engine's own memory: it writes a variant's blocks itself and calls mark_written."""
        self = cls.__new__(cls)
        self._lib = lib = library()
        self._handle = None
        config = _tiers_config(lib, self._check, layers=layers, kv_heads=kv_heads, head_dim=head_dim,
                               dtype_bytes=dtype_bytes, block_tokens=block_tokens, device_blocks=device_blocks,
                               host_blocks=host_blocks, disk_directory=disk_directory,
                               disk_capacity_bytes=disk_capacity_bytes, layer_groups=1, workers=workers,
                               spill_watermark=spill_watermark, record_events=False, lock_host_memory=False,
                               synchronous_eviction_copies=False)
        # The C function pointers must outlive the handle: kept on self.
        self._callbacks, config.device_to_host, config.host_to_device = _copy_callables(device_to_host, host_to_device)
        out = C.c_void_p()
        self._check(lib.kvcache_chunks_create_tiered_checked(ABI_VERSION, C.sizeof(TiersConfig), C.byref(config),
                                                             _i64(max_variants, "max_variants"),
                                                             _text(key_namespace, "key_namespace"), C.byref(out)))
        self._handle = out.value
        return self

    def put(self, variant, kv):
        """Writes a variant's KV (tiered stores): bytes-like or an array of n_blocks x block_bytes bytes."""
        data = np.ascontiguousarray(np.frombuffer(kv, np.uint8) if isinstance(kv, (bytes, bytearray)) else kv)
        self._check(self._lib.kvcache_chunks_put(self._handle, index(variant), data.ctypes.data, data.nbytes))

    def fetch(self, variant):
        """A variant's KV from the store's pool (tiered stores), as a uint8 array of n_blocks x block_bytes."""
        n = C.c_size_t()
        status = self._lib.kvcache_chunks_fetch(self._handle, index(variant), None, 0, C.byref(n))
        out = np.empty(n.value, np.uint8)
        if n.value or status != 0:
            self._check(self._lib.kvcache_chunks_fetch(self._handle, index(variant), out.ctypes.data, out.size, C.byref(n)))
        return out

    def mark_written(self, variant):
        """The engine wrote the variant's KV into its blocks itself (a store over the engine's memory)."""
        self._check(self._lib.kvcache_chunks_mark_written(self._handle, index(variant)))

    def copy_done(self, token, ok=True):
        """The engine finished the copy of `token` handed to its callable (any thread)."""
        self._check(self._lib.kvcache_chunks_copy_done(self._handle, index(token), bool(ok)))

    def tier_stats(self):
        """The counters of a tiered store (ChunksTierStats)."""
        s = ChunksTierStatsStruct()
        self._check(self._lib.kvcache_chunks_get_tier_stats(self._handle, C.byref(s)))
        return ChunksTierStats(s.block_bytes, s.spilled_variants, s.loaded_variants, s.failed_loads, _tier_stats(s.tiers))

    def set_loading_controller(self, recompute_seconds_per_token=None, recompute_seconds_per_context_pair=0.0,
                               minimum_ratio=0.15, host_bytes_per_second=0.0, disk_bytes_per_second=0.0):
        """The loading controller of a tiered store's plans (kvcache_chunks_set_loading_controller): a chunk
        a tier holds loads only when that is no slower than recomputing it. Bandwidths 0: the tiers' measured
        estimates. recompute_seconds_per_token None removes the controller (every held chunk loads)."""
        if recompute_seconds_per_token is None:
            self._check(self._lib.kvcache_chunks_set_loading_controller(self._handle, None))
            return
        c = LoadingControllerStruct(float(recompute_seconds_per_token), float(recompute_seconds_per_context_pair),
                                    float(minimum_ratio), float(host_bytes_per_second), float(disk_bytes_per_second))
        self._check(self._lib.kvcache_chunks_set_loading_controller(self._handle, C.byref(c)))

    def plan_loads(self, plan_id):
        """What the open plan `plan_id` of a tiered store did with each chunk segment: a list of ChunkLoad."""
        n = C.c_size_t()
        status = self._lib.kvcache_chunks_plan_loads(self._handle, index(plan_id), None, 0, C.byref(n))
        loads = (ChunkLoadStruct * max(1, n.value))()
        if n.value or status != 0:
            self._check(self._lib.kvcache_chunks_plan_loads(self._handle, index(plan_id), loads, n.value, C.byref(n)))
        return [ChunkLoad(l.segment, (l.chunk.lo, l.chunk.hi), ChunkAction(l.action), l.tier, l.decided, l.ratio, l.load_seconds,
                          l.recompute_seconds, l.pipelined_seconds, l.recompute_all_seconds) for l in loads[:n.value]]

    def key(self, tokens):
        """The chunk key of `tokens` as a (lo, hi) pair."""
        t = _tokens(tokens)
        k = Key()
        self._check(self._lib.kvcache_chunks_key(self._handle, t.ctypes.data, t.size, C.byref(k)))
        return (k.lo, k.hi)

    def insert(self, chunk, tokens, computed_at, context=(0, 0), context_impact=None):
        """Stores a variant; returns (variant, blocks) with the blocks (int32 array) the engine writes into."""
        bt = self.stats().block_tokens
        n_tokens = _i64(tokens, "tokens")
        blocks = np.empty(max(0, -(-n_tokens // bt)), np.int32)
        variant, n = C.c_uint64(), C.c_size_t()
        impact = float("nan") if context_impact is None else float(context_impact)
        self._check(self._lib.kvcache_chunks_insert(self._handle, _key(chunk, "chunk"), n_tokens,
                                                    _i64(computed_at, "computed_at"), _key(context, "context"), impact,
                                                    C.byref(variant), blocks.ctypes.data, blocks.size, C.byref(n)))
        return variant.value, blocks[:n.value]

    def blocks(self, variant):
        """The blocks of a stored variant, in token order (int32 array)."""
        n = C.c_size_t()
        status = self._lib.kvcache_chunks_blocks(self._handle, index(variant), None, 0, C.byref(n))
        blocks = np.empty(n.value, np.int32)
        if n.value or status != 0:
            self._check(self._lib.kvcache_chunks_blocks(self._handle, index(variant), blocks.ctypes.data, blocks.size,
                                                        C.byref(n)))
        return blocks

    def remove(self, variant):
        """Drops a variant (BlocksInUseError while a plan holds it)."""
        self._check(self._lib.kvcache_chunks_remove(self._handle, index(variant)))

    def plan(self, segments, context=(0, 0), selection=Selection.HKVD, ratio=0.15, seed=0):
        """Plans a prompt given as segments: ("fresh", n), ("prefix", n) first only, or ("chunk", n, key).
        The plan's variants are held until commit(plan.plan_id)."""
        kinds = {"fresh": SegmentKind.FRESH, "prefix": SegmentKind.CACHED_PREFIX, "chunk": SegmentKind.CHUNK}
        array = (PromptSegment * max(1, len(segments)))()
        chunk_tokens = 0
        for i, s in enumerate(segments):
            if not s or s[0] not in kinds:
                raise _invalid(f"segment {i}: the kind must be one of {sorted(kinds)}")
            array[i].kind = kinds[s[0]]
            array[i].tokens = _i64(s[1], "tokens")
            if s[0] == "chunk":
                array[i].chunk = _key(s[2], "chunk")
                chunk_tokens += max(0, array[i].tokens)
        n = len(segments)
        spans = (ReusedSpanStruct * max(1, n))()
        recompute = np.empty(chunk_tokens, np.int64)
        fresh = (TokenRange * max(1, n))()
        out = ChunkPlanStruct()
        self._check(self._lib.kvcache_chunks_plan(self._handle, array, n, _key(context, "context"), int(Selection(selection)),
                                                  float(ratio), index(seed), spans, n, recompute.ctypes.data,
                                                  recompute.size, fresh, n, C.byref(out)))
        return ChunkPlan(out.plan_id, out.prompt_tokens, out.prefix_tokens, out.reused_tokens, out.missing_chunks,
                         [ReusedSpan((s.chunk.lo, s.chunk.hi), s.variant, s.tier, s.exact, s.source_start, s.target_start,
                                     s.tokens, s.recompute_budget) for s in spans[:out.n_spans]],
                         recompute[:out.n_recompute].copy(), [(r.start, r.end) for r in fresh[:out.n_fresh]])

    def commit(self, plan_id):
        """The engine executed the plan (or gave it up): its variants are no longer held."""
        self._check(self._lib.kvcache_chunks_commit(self._handle, index(plan_id)))

    def stats(self):
        s = ChunksStatsStruct()
        self._check(self._lib.kvcache_chunks_get_stats(self._handle, C.byref(s)))
        return ChunksStats(*(getattr(s, f) for f, _ in ChunksStatsStruct._fields_))

    def validate(self):
        self._check(self._lib.kvcache_chunks_validate(self._handle))
