"""The C ABI of libkvcache_c (kvcache.h) as Python declares it, and the loaded library.

Every declaration is spelled in C, as in the header: `FUNCTIONS` (return and parameter types),
`STRUCTS` (fields in order) and the enums. tests/test_abi.py parses kvcache.h with a C preprocessor and
pycparser and requires each of them to match the header exactly, so the bindings cannot drift from
the ABI silently. The ctypes types are derived from the C spellings: a `const char *` is a bytes
string, every other pointer an address (ctypes.byref of a struct, or a numpy array's data pointer,
so arrays cross without a copy), everything else its fixed-width ctypes scalar.
"""
import ctypes as C
import enum
import functools
import os

from ._version import ABI_VERSION

# The scalar types of kvcache.h and <stdint.h>/<stdbool.h>/<stddef.h>.
SCALARS = {
    "bool": C.c_bool, "double": C.c_double, "int32_t": C.c_int32, "int64_t": C.c_int64,
    "uint32_t": C.c_uint32, "uint64_t": C.c_uint64, "size_t": C.c_size_t,
    "kvcache_status": C.c_int32, "kvcache_seq_id": C.c_int64, "kvcache_block_id": C.c_int32,
    # A function pointer crosses as an address: a ctypes CFUNCTYPE object cast to c_void_p.
    "kvcache_tier_copy_fn": C.c_void_p, "uint8_t": C.c_uint8,
}

STRUCTS = {
    "kvcache_key": [("lo", "uint64_t"), ("hi", "uint64_t")],
    "kvcache_config": [
        ("block_tokens", "int64_t"), ("capacity_blocks", "int64_t"), ("key_namespace", "const char *"),
        ("eviction_policy", "int32_t"), ("enable_prefix_caching", "bool"), ("record_events", "bool"),
        ("recompute_seconds_per_token", "double"), ("recompute_seconds_per_context_pair", "double")],
    "kvcache_multimodal_item": [("hash", "kvcache_key"), ("start", "int64_t"), ("length", "int64_t")],
    "kvcache_prefix_hit": [("cached_blocks", "int64_t"), ("cached_tokens", "int64_t")],
    "kvcache_allocation": [("new_blocks", "int64_t"), ("needed_blocks", "int64_t"), ("available_blocks", "int64_t")],
    "kvcache_block_copy": [("src", "kvcache_block_id"), ("dst", "kvcache_block_id")],
    "kvcache_stats": [(name, "int64_t") for name in (
        "capacity_blocks", "used_blocks", "cached_blocks", "free_blocks", "lookups", "query_tokens", "hit_tokens",
        "inserted_blocks", "deduplicated_blocks", "evicted_blocks", "copied_blocks")]
        + [("usage", "double"), ("hit_rate", "double")],
    "kvcache_event": [
        ("kind", "int32_t"), ("tier", "int32_t"), ("block_tokens", "int64_t"), ("parent", "kvcache_key"),
        ("has_parent", "bool"), ("first_key", "size_t"), ("key_count", "size_t")],
    "kvcache_tiers_config": [
        ("layers", "int64_t"), ("kv_heads", "int64_t"), ("head_dim", "int64_t"), ("dtype_bytes", "int64_t"),
        ("block_tokens", "int64_t"), ("device_blocks", "int64_t"), ("host_blocks", "int64_t"),
        ("disk_directory", "const char *"), ("disk_capacity_bytes", "int64_t"), ("layer_groups", "int64_t"),
        ("workers", "int64_t"), ("spill_watermark", "double"), ("record_events", "bool"), ("lock_host_memory", "bool"),
        ("synchronous_eviction_copies", "bool"), ("device_to_host", "kvcache_tier_copy_fn"),
        ("host_to_device", "kvcache_tier_copy_fn"), ("copy_context", "void *")],
    "kvcache_tier_lookup": [(name, "int64_t") for name in ("device_blocks", "host_blocks", "disk_blocks", "load_blocks")],
    "kvcache_tier_counters": [(name, "int64_t") for name in (
        "hits", "stored_blocks", "removed_blocks", "bytes_in", "bytes_out", "occupancy", "capacity", "loaded_blocks",
        "not_stored", "failed_loads", "dropped_blocks")],
    "kvcache_tier_stats": [("block_bytes", "int64_t"), ("device", "kvcache_tier_counters"),
                           ("host", "kvcache_tier_counters"), ("disk", "kvcache_tier_counters")],
    "kvcache_tier_admission": [(name, "int64_t") for name in (
        "device_tokens", "loaded_tokens", "compute_tokens", "host_blocks", "disk_blocks", "failed_blocks")],
    "kvcache_prompt_segment": [("kind", "int32_t"), ("tokens", "int64_t"), ("chunk", "kvcache_key")],
    "kvcache_reused_span": [("chunk", "kvcache_key"), ("variant", "uint64_t"), ("tier", "int32_t"), ("exact", "bool"),
                            ("source_start", "int64_t"), ("target_start", "int64_t"), ("tokens", "int64_t"),
                            ("recompute_budget", "int64_t")],
    "kvcache_token_range": [("start", "int64_t"), ("end", "int64_t")],
    "kvcache_chunk_plan": [("plan_id", "uint64_t"), ("prompt_tokens", "int64_t"), ("prefix_tokens", "int64_t"),
                           ("reused_tokens", "int64_t"), ("missing_chunks", "int64_t"), ("n_spans", "size_t"),
                           ("n_recompute", "size_t"), ("n_fresh", "size_t")],
    "kvcache_chunks_stats": [(name, "int64_t") for name in (
        "capacity_blocks", "free_blocks", "block_tokens", "variants", "evicted_variants", "open_plans")],
    "kvcache_chunks_tier_stats": [(name, "int64_t") for name in (
        "block_bytes", "spilled_variants", "loaded_variants", "failed_loads")] + [("tiers", "kvcache_tier_stats")],
    "kvcache_loading_controller": [(name, "double") for name in (
        "recompute_seconds_per_token", "recompute_seconds_per_context_pair", "minimum_ratio", "host_bytes_per_second",
        "disk_bytes_per_second")],
    "kvcache_chunk_load": [("segment", "int64_t"), ("chunk", "kvcache_key"), ("action", "int32_t"), ("tier", "int32_t"),
                           ("decided", "bool")] + [(name, "double") for name in (
        "ratio", "load_seconds", "recompute_seconds", "pipelined_seconds", "recompute_all_seconds")],
}

_H = "kvcache_t *"  # the opaque handles
_T = "kvcache_tiers_t *"
_C = "kvcache_chunks_t *"
_E = "kvcache_events_t *"
FUNCTIONS = {
    "kvcache_version": ("uint32_t", []),
    "kvcache_version_string": ("const char *", []),
    "kvcache_abi_version": ("uint32_t", []),
    "kvcache_status_name": ("const char *", ["kvcache_status"]),
    "kvcache_last_error": ("const char *", []),
    "kvcache_config_init": ("kvcache_status", ["kvcache_config *"]),
    "kvcache_create": ("kvcache_status", ["const kvcache_config *", "kvcache_t **"]),
    "kvcache_create_checked": ("kvcache_status", ["uint32_t", "size_t", "const kvcache_config *", "kvcache_t **"]),
    "kvcache_destroy": ("kvcache_status", [_H]),
    "kvcache_add_sequence": ("kvcache_status", [_H, "kvcache_seq_id", "const uint32_t *", "size_t", "const char *",
                                                "const char *", "const kvcache_multimodal_item *", "size_t"]),
    "kvcache_add_sequence_keys": ("kvcache_status", [_H, "kvcache_seq_id", "const kvcache_key *", "size_t", "int64_t"]),
    "kvcache_lookup": ("kvcache_status", [_H, "kvcache_seq_id", "kvcache_prefix_hit *"]),
    "kvcache_match_length": ("kvcache_status", [_H, "const kvcache_key *", "size_t", "size_t *"]),
    "kvcache_allocate": ("kvcache_status", [_H, "kvcache_seq_id", "int64_t", "int64_t", "kvcache_allocation *"]),
    "kvcache_commit": ("kvcache_status", [_H, "kvcache_seq_id", "int64_t"]),
    "kvcache_append_tokens": ("kvcache_status", [_H, "kvcache_seq_id", "const uint32_t *", "size_t"]),
    "kvcache_append_count": ("kvcache_status", [_H, "kvcache_seq_id", "int64_t"]),
    "kvcache_free_sequence": ("kvcache_status", [_H, "kvcache_seq_id"]),
    "kvcache_fork": ("kvcache_status", [_H, "kvcache_seq_id", "kvcache_seq_id"]),
    "kvcache_block_table": ("kvcache_status", [_H, "kvcache_seq_id", "kvcache_block_id *", "size_t", "size_t *"]),
    "kvcache_prompt_keys": ("kvcache_status", [_H, "kvcache_seq_id", "kvcache_key *", "size_t", "size_t *"]),
    "kvcache_computed_tokens": ("kvcache_status", [_H, "kvcache_seq_id", "int64_t *"]),
    "kvcache_token_count": ("kvcache_status", [_H, "kvcache_seq_id", "int64_t *"]),
    "kvcache_drain_copies": ("kvcache_status", [_H, "kvcache_block_copy *", "size_t", "size_t *"]),
    "kvcache_drain_events": ("kvcache_status", [_H, "kvcache_event *", "size_t", "size_t *", "kvcache_key *", "size_t",
                                                "size_t *"]),
    "kvcache_get_stats": ("kvcache_status", [_H, "kvcache_stats *"]),
    "kvcache_block_tokens": ("kvcache_status", [_H, "int64_t *"]),
    "kvcache_free_block_count": ("kvcache_status", [_H, "int64_t *"]),
    "kvcache_sequence_count": ("kvcache_status", [_H, "int64_t *"]),
    "kvcache_reset": ("kvcache_status", [_H]),
    "kvcache_validate": ("kvcache_status", [_H]),
    "kvcache_metrics_text": ("kvcache_status", [_H, "char *", "size_t", "size_t *"]),
    # Caches, tiers and the event publisher from a configuration (libkvcache_config.so, opened by the library).
    "kvcache_create_from_env": ("kvcache_status", ["kvcache_t **"]),
    "kvcache_create_from_file": ("kvcache_status", ["const char *", "kvcache_t **"]),
    "kvcache_tiers_create_from_config": ("kvcache_status", ["const char *", "kvcache_tier_copy_fn", "kvcache_tier_copy_fn",
                                                            "void *", "kvcache_tiers_t **"]),
    "kvcache_events_open_from_config": ("kvcache_status", [_H, "const char *", "kvcache_events_t **"]),
    "kvcache_events_add_tiers": ("kvcache_status", [_E, _T]),
    "kvcache_events_publish": ("kvcache_status", [_E, "int64_t *"]),
    "kvcache_events_close": ("kvcache_status", [_E]),
    # The tiers (kvcache_tiers_t).
    "kvcache_tiers_config_init": ("kvcache_status", ["kvcache_tiers_config *"]),
    "kvcache_tiers_create_checked": ("kvcache_status", ["uint32_t", "size_t", "const kvcache_tiers_config *",
                                                        "kvcache_tiers_t **"]),
    "kvcache_tiers_destroy": ("kvcache_status", [_T]),
    "kvcache_tiers_lookup": ("kvcache_status", [_T, "const kvcache_key *", "size_t", "int64_t", "int64_t", "int32_t *",
                                                "size_t", "kvcache_tier_lookup *"]),
    "kvcache_tiers_loadable": ("kvcache_status", [_T, "kvcache_key", "int32_t *"]),
    "kvcache_tiers_prepare_load": ("kvcache_status", [_T, "const kvcache_key *", "size_t", "size_t",
                                                      "const kvcache_block_id *", "size_t", "uint64_t *"]),
    "kvcache_tiers_is_complete": ("kvcache_status", [_T, "uint64_t", "bool *"]),
    "kvcache_tiers_failed_blocks": ("kvcache_status", [_T, "uint64_t", "uint8_t *", "size_t", "size_t *"]),
    "kvcache_tiers_complete_load": ("kvcache_status", [_T, "uint64_t", "uint8_t *", "size_t", "size_t *"]),
    "kvcache_tiers_prepare_store": ("kvcache_status", [_T, "const kvcache_block_id *", "const kvcache_key *", "size_t",
                                                       "const kvcache_key *", "uint64_t *"]),
    "kvcache_tiers_complete_store": ("kvcache_status", [_T, "uint64_t", "uint8_t *", "size_t", "size_t *"]),
    "kvcache_tiers_copy_done": ("kvcache_status", [_T, "uint64_t", "bool"]),
    "kvcache_tiers_touch": ("kvcache_status", [_T, "const kvcache_key *", "size_t", "size_t *"]),
    "kvcache_tiers_prefetch": ("kvcache_status", [_T, "const kvcache_key *", "size_t", "size_t *"]),
    "kvcache_tiers_will_evict": ("kvcache_status", [_T, "kvcache_block_id", "kvcache_key"]),
    "kvcache_tiers_disk_put": ("kvcache_status", [_T, "kvcache_key", "const kvcache_key *", "const void *", "size_t",
                                                  "bool *"]),
    "kvcache_tiers_disk_get": ("kvcache_status", [_T, "kvcache_key", "void *", "size_t", "bool *"]),
    "kvcache_tiers_disk_contains": ("kvcache_status", [_T, "const kvcache_key *", "size_t", "size_t *"]),
    "kvcache_tiers_take_events": ("kvcache_status", [_T, "kvcache_event *", "size_t", "size_t *", "kvcache_key *",
                                                     "size_t", "size_t *"]),
    "kvcache_tiers_get_stats": ("kvcache_status", [_T, "kvcache_tier_stats *"]),
    "kvcache_tiers_device_block": ("kvcache_status", [_T, "kvcache_block_id", "void **", "size_t *"]),
    "kvcache_tiers_host_region": ("kvcache_status", [_T, "int32_t *", "void **", "size_t *"]),
    "kvcache_tiers_validate": ("kvcache_status", [_T]),
    # A prompt's tier leg through the library (a cache with its tiers attached).
    "kvcache_tiers_attach": ("kvcache_status", [_H, _T]),
    "kvcache_tiers_detach": ("kvcache_status", [_H]),
    "kvcache_tiers_admit": ("kvcache_status", [_H, _T, "kvcache_seq_id", "int64_t", "kvcache_tier_admission *"]),
    "kvcache_tiers_record_stored": ("kvcache_status", [_H, _T, "kvcache_seq_id", "int64_t"]),
    # The chunk store and its prefill plan (kvcache_chunks_t).
    "kvcache_chunks_create": ("kvcache_status", ["int64_t", "int64_t", "int64_t", "const char *", "kvcache_chunks_t **"]),
    "kvcache_chunks_destroy": ("kvcache_status", [_C]),
    "kvcache_chunks_key": ("kvcache_status", [_C, "const uint32_t *", "size_t", "kvcache_key *"]),
    "kvcache_chunks_insert": ("kvcache_status", [_C, "kvcache_key", "int64_t", "int64_t", "kvcache_key", "double",
                                                 "uint64_t *", "kvcache_block_id *", "size_t", "size_t *"]),
    "kvcache_chunks_blocks": ("kvcache_status", [_C, "uint64_t", "kvcache_block_id *", "size_t", "size_t *"]),
    "kvcache_chunks_remove": ("kvcache_status", [_C, "uint64_t"]),
    "kvcache_chunks_plan": ("kvcache_status", [_C, "const kvcache_prompt_segment *", "size_t", "kvcache_key", "int32_t",
                                               "double", "uint64_t", "kvcache_reused_span *", "size_t", "int64_t *",
                                               "size_t", "kvcache_token_range *", "size_t", "kvcache_chunk_plan *"]),
    "kvcache_chunks_commit": ("kvcache_status", [_C, "uint64_t"]),
    "kvcache_chunks_get_stats": ("kvcache_status", [_C, "kvcache_chunks_stats *"]),
    "kvcache_chunks_validate": ("kvcache_status", [_C]),
    "kvcache_chunks_create_tiered_checked": ("kvcache_status", ["uint32_t", "size_t", "const kvcache_tiers_config *",
                                                                "int64_t", "const char *", "kvcache_chunks_t **"]),
    "kvcache_chunks_put": ("kvcache_status", [_C, "uint64_t", "const void *", "size_t"]),
    "kvcache_chunks_fetch": ("kvcache_status", [_C, "uint64_t", "void *", "size_t", "size_t *"]),
    "kvcache_chunks_get_tier_stats": ("kvcache_status", [_C, "kvcache_chunks_tier_stats *"]),
    "kvcache_chunks_set_loading_controller": ("kvcache_status", [_C, "const kvcache_loading_controller *"]),
    "kvcache_chunks_plan_loads": ("kvcache_status", [_C, "uint64_t", "kvcache_chunk_load *", "size_t", "size_t *"]),
    "kvcache_chunks_mark_written": ("kvcache_status", [_C, "uint64_t"]),
    "kvcache_chunks_copy_done": ("kvcache_status", [_C, "uint64_t", "bool"]),
}

# Header functions this package does not call (yet); the ABI test accepts exactly these as unbound.
UNBOUND_PREFIXES = (
    "kvcache_hybrid_",  # the hybrid attention + SSM cache: C and Swift only for now
)

# Object-like macros of kvcache.h that the package relies on.
MACROS = {"KVCACHE_ABI_VERSION": ABI_VERSION, "KVCACHE_MAX_SEQUENCE_TOKENS": 1 << 48}


class Status(enum.IntEnum):
    """enum kvcache_status_code, each member KVCACHE_<name>."""
    OK = 0
    ERR_NULL_HANDLE = 1
    ERR_NULL_POINTER = 2
    ERR_INVALID_ARGUMENT = 3
    ERR_UNKNOWN_SEQUENCE = 4
    ERR_DUPLICATE_SEQUENCE = 5
    ERR_INSUFFICIENT_BLOCKS = 6
    ERR_BLOCKS_IN_USE = 7
    ERR_BUFFER_TOO_SMALL = 8
    ERR_INVALID_BLOCK = 9
    ERR_DOUBLE_FREE = 10
    ERR_BLOCK_STILL_REFERENCED = 11
    ERR_BLOCK_NOT_REFERENCED = 12
    ERR_INVARIANT_VIOLATION = 13
    ERR_OUT_OF_MEMORY = 14


class TierStatus(enum.IntEnum):
    """enum kvcache_tier_status_code: the statuses only the tier calls return."""
    ERR_TIER_SYSTEM = 15


class ConfigStatus(enum.IntEnum):
    """enum kvcache_config_status_code: the status only the configuration calls return."""
    ERR_CONFIG_LIBRARY = 16


class EvictionPolicy(enum.IntEnum):
    """enum kvcache_eviction_policy, each member KVCACHE_EVICTION_<name>."""
    LRU = 0
    FIFO = 1
    LFU = 2
    PGDSF = 3
    PROBATION = 4
    PGDSF_PROBATION = 5
    MARKING = 6


class EventKind(enum.IntEnum):
    """enum kvcache_event_kind, each member KVCACHE_EVENT_<name>."""
    BLOCK_STORED = 0
    BLOCK_REMOVED = 1
    ALL_BLOCKS_CLEARED = 2


class SegmentKind(enum.IntEnum):
    """enum kvcache_segment_kind, each member KVCACHE_SEGMENT_<name>."""
    FRESH = 0
    CACHED_PREFIX = 1
    CHUNK = 2


class Selection(enum.IntEnum):
    """enum kvcache_recompute_selection, each member KVCACHE_SELECT_<name>."""
    NONE = 0
    HKVD = 1
    RANDOM = 2
    LEADING = 3
    CONTEXT_IMPACT = 4


class ChunkAction(enum.IntEnum):
    """enum kvcache_chunk_action, each member KVCACHE_CHUNK_<name>."""
    IN_POOL = 0
    LOADED = 1
    RECOMPUTE = 2
    MISSING = 3


class Tier(enum.IntEnum):
    """enum kvcache_tier, each member KVCACHE_TIER_<name>."""
    DEVICE = 0
    HOST = 1
    DISK = 2
    REMOTE = 3


# enum type name in kvcache.h -> (Python enum, prefix of its constants).
ENUMS = {
    "kvcache_status_code": (Status, "KVCACHE_"),
    "kvcache_tier_status_code": (TierStatus, "KVCACHE_"),
    "kvcache_config_status_code": (ConfigStatus, "KVCACHE_"),
    "kvcache_eviction_policy": (EvictionPolicy, "KVCACHE_EVICTION_"),
    "kvcache_event_kind": (EventKind, "KVCACHE_EVENT_"),
    "kvcache_tier": (Tier, "KVCACHE_TIER_"),
    "kvcache_segment_kind": (SegmentKind, "KVCACHE_SEGMENT_"),
    "kvcache_recompute_selection": (Selection, "KVCACHE_SELECT_"),
    "kvcache_chunk_action": (ChunkAction, "KVCACHE_CHUNK_"),
}


def _ctype(spelling, structs):
    """The ctypes type of a C type spelling from the tables above."""
    s = " ".join(spelling.split())
    if s == "const char *":
        return C.c_char_p
    if s.endswith("*"):
        return C.c_void_p
    return SCALARS.get(s) or structs[s]


def _build_structs():
    built = {}
    for name, fields in STRUCTS.items():  # a struct's field types are declared before it
        built[name] = type(name, (C.Structure,), {"_fields_": [(f, _ctype(t, built)) for f, t in fields]})
    return built


STRUCT_TYPES = _build_structs()
Key = STRUCT_TYPES["kvcache_key"]
Config = STRUCT_TYPES["kvcache_config"]
MultimodalItem = STRUCT_TYPES["kvcache_multimodal_item"]
PrefixHitStruct = STRUCT_TYPES["kvcache_prefix_hit"]
Allocation = STRUCT_TYPES["kvcache_allocation"]
BlockCopy = STRUCT_TYPES["kvcache_block_copy"]
StatsStruct = STRUCT_TYPES["kvcache_stats"]
EventStruct = STRUCT_TYPES["kvcache_event"]
TiersConfig = STRUCT_TYPES["kvcache_tiers_config"]
TierLookupStruct = STRUCT_TYPES["kvcache_tier_lookup"]
TierStatsStruct = STRUCT_TYPES["kvcache_tier_stats"]
TierAdmissionStruct = STRUCT_TYPES["kvcache_tier_admission"]
PromptSegment = STRUCT_TYPES["kvcache_prompt_segment"]
ReusedSpanStruct = STRUCT_TYPES["kvcache_reused_span"]
TokenRange = STRUCT_TYPES["kvcache_token_range"]
ChunkPlanStruct = STRUCT_TYPES["kvcache_chunk_plan"]
ChunksStatsStruct = STRUCT_TYPES["kvcache_chunks_stats"]
ChunksTierStatsStruct = STRUCT_TYPES["kvcache_chunks_tier_stats"]
LoadingControllerStruct = STRUCT_TYPES["kvcache_loading_controller"]
ChunkLoadStruct = STRUCT_TYPES["kvcache_chunk_load"]
# void (*)(void *context, kvcache_block_id block, size_t offset, size_t length, void *host, uint64_t token)
CopyFn = C.CFUNCTYPE(None, C.c_void_p, C.c_int32, C.c_size_t, C.c_size_t, C.c_void_p, C.c_uint64)


class LibraryNotFound(ImportError):
    """No libkvcache_c of this package's ABI could be loaded."""


def candidates():
    """Where the library is looked for, in order: $KVCACHE_LIB, the copy bundled in this package
    (kvcache/_lib, put there by tools/python/build.sh), then the loader's own search (an install by
    tools/install.sh under a prefix that ldconfig or LD_LIBRARY_PATH knows)."""
    env = os.environ.get("KVCACHE_LIB")
    if env:
        return [env]
    name = f"libkvcache_c.so.{ABI_VERSION}"
    return [os.path.join(os.path.dirname(os.path.abspath(__file__)), "_lib", name), name]


@functools.cache
def library():
    """The loaded library with every function of FUNCTIONS typed; loaded once per process.
    Raises LibraryNotFound when none loads, or when the one found has another ABI."""
    errors = []
    for path in candidates():
        if os.sep in path and not os.path.exists(path):
            errors.append(f"{path}: no such file")
            continue
        try:
            lib = C.CDLL(path)
        except OSError as e:
            errors.append(str(e))
            continue
        missing = [name for name in FUNCTIONS if not hasattr(lib, name)]
        if missing:
            raise LibraryNotFound(f"{path} lacks {', '.join(missing)}: it was built from an older kvcache.h")
        for name, (res, args) in FUNCTIONS.items():
            fn = getattr(lib, name)
            fn.restype = None if res == "void" else _ctype(res, STRUCT_TYPES)
            fn.argtypes = [_ctype(a, STRUCT_TYPES) for a in args]
        abi = lib.kvcache_abi_version()
        if abi != ABI_VERSION:
            raise LibraryNotFound(f"{path} has ABI {abi}; this package was written for ABI {ABI_VERSION}")
        lib.path = path
        return lib
    raise LibraryNotFound("libkvcache_c not found (build it into the package with tools/python/build.sh, or set "
                          "KVCACHE_LIB): " + "; ".join(errors))
