"""The lifecycle shared by the classes that own one C handle (Cache, TierManager)."""
from . import errors
from ._abi import Status


class OwnedHandle:
    """Owns `self._handle`, released by the library function named `_DESTROY` (kvcache_destroy,
    kvcache_tiers_destroy): close() or a `with` block, else when the object is collected. Calls on a
    closed handle pass NULL and raise ClosedCacheError."""
    _DESTROY = None
    _handle = None

    def close(self):
        """Releases the handle and everything it owns; later calls raise ClosedCacheError. Idempotent."""
        if self._handle is not None:
            handle, self._handle = self._handle, None
            self._check(getattr(self._lib, self._DESTROY)(handle))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        if getattr(self, "_handle", None) is not None:
            getattr(self._lib, self._DESTROY)(self._handle)
            self._handle = None

    def _check(self, status):
        if status != Status.OK:
            raise errors.from_status(self._lib, status)
