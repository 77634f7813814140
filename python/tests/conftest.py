"""Where the tests find kvcache.h: $KVCACHE_HEADER, the repository's (when run from a checkout), or the
copy bundled beside the library in the installed package."""
import os

import pytest

import kvcache


@pytest.fixture(scope="session")
def header_path():
    here = os.path.dirname(os.path.abspath(__file__))
    candidates = [os.environ.get("KVCACHE_HEADER"),
                  os.path.join(here, "..", "..", "Sources", "CKVCache", "include", "kvcache.h"),
                  os.path.join(os.path.dirname(kvcache.__file__), "_lib", "kvcache.h")]
    for path in candidates:
        if path and os.path.exists(path):
            return os.path.abspath(path)
    pytest.fail(f"kvcache.h not found; tried {candidates}")
