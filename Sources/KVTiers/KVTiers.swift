// KVTiers module: see docs/ARCHITECTURE.md.
import KVCache
