"""Values the cache hands back: prefix hits, counters, KV events, and the numpy dtypes that are the
C structs' layouts (so arrays of keys and block copies cross the boundary without a copy)."""
import dataclasses
from typing import NamedTuple, Optional

import numpy as np

from ._abi import EventKind, Tier

# kvcache_key: one 128-bit block key as its two 64-bit halves (XXH128_hash_t's).
KEY_DTYPE = np.dtype([("lo", "<u8"), ("hi", "<u8")])
# kvcache_block_copy: copy block `src` to block `dst` before the next engine step.
BLOCK_COPY_DTYPE = np.dtype([("src", "<i4"), ("dst", "<i4")])


def key_to_int(key):
    """A key (a KEY_DTYPE element or a (lo, hi) pair) as one 128-bit integer, hi << 64 | lo."""
    lo, hi = (int(key["lo"]), int(key["hi"])) if isinstance(key, np.void) else (int(key[0]), int(key[1]))
    return hi << 64 | lo


class PrefixHit(NamedTuple):
    """The longest cached prefix of a prompt, in whole blocks (kvcache_prefix_hit)."""
    cached_blocks: int
    cached_tokens: int


class TierAdmission(NamedTuple):
    """What Cache.admit did (kvcache_tier_admission), in prompt tokens: found in the device pool, loaded
    from host and disk (committed as computed), left for the engine to compute (slots allocated), and
    the blocks loaded from each tier and those whose load failed (computed instead)."""
    device_tokens: int
    loaded_tokens: int
    compute_tokens: int
    host_blocks: int
    disk_blocks: int
    failed_blocks: int


@dataclasses.dataclass(frozen=True)
class Stats:
    """A cache's counters (kvcache_stats)."""
    capacity_blocks: int
    used_blocks: int
    cached_blocks: int
    free_blocks: int
    lookups: int
    query_tokens: int
    hit_tokens: int
    inserted_blocks: int
    deduplicated_blocks: int
    evicted_blocks: int
    copied_blocks: int
    usage: float
    hit_rate: float


@dataclasses.dataclass(frozen=True)
class Event:
    """One KV event (kvcache_event), in the shape of vLLM's KV events for routers. `keys` is a
    KEY_DTYPE array (a view into the batch drained with it); `parent` is the first key's parent for
    BLOCK_STORED, None for a first block and for the other kinds."""
    kind: EventKind
    tier: Tier
    block_tokens: int
    parent: Optional[tuple]
    keys: np.ndarray

    def __eq__(self, other):
        if not isinstance(other, Event):
            return NotImplemented
        return (self.kind, self.tier, self.block_tokens, self.parent) == \
            (other.kind, other.tier, other.block_tokens, other.parent) and np.array_equal(self.keys, other.keys)

    __hash__ = None
