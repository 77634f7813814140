# The release and the ABI of the kvcache.h this package follows (KVCACHE_VERSION_* and
# KVCACHE_ABI_VERSION); tests/test_abi.py checks both against the header.
__version__ = "0.3.0"
ABI_VERSION = 1
