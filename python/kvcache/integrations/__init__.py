"""Adapters that put the tiers under serving engines through the seams they already have:
`kvcache.integrations.vllm` (an OffloadingSpec for vLLM's offloading connector) and
`kvcache.integrations.sglang` (a HiCacheStorage backend). Each imports its engine only when it is
imported itself. See docs/INTEGRATION.md."""
import hashlib


def key_of(name):
    """An engine's block identifier (bytes, or str as UTF-8) as a kvcache key (lo, hi): the 128-bit
    BLAKE2b digest of it, never the reserved zero key. About a microsecond."""
    data = name.encode() if isinstance(name, str) else bytes(name)
    d = hashlib.blake2b(data, digest_size=16).digest()
    lo, hi = int.from_bytes(d[:8], "little"), int.from_bytes(d[8:], "little")
    return (lo, hi) if lo or hi else (1, 0)
