"""`HostRegion`: the tier manager's host memory seen from another process.

The library keeps the host tier's blocks in one shared-memory file (a memfd; TierManager.host_region()
gives its descriptor, its address in the owning process and its size). An engine's worker process maps
the same bytes through /proc/<owner pid>/fd/<fd> and copies a block at its offset (the host address the
library handed out, minus the owner's base): no copy through the owner process. `publish` writes where
the region is into a small JSON file that `HostRegion.open_published` reads in the other process.
"""
import json
import mmap
import os

import numpy as np

__all__ = ["HostRegion", "publish"]


def publish(path, fd, size):
    """Writes {pid, fd, size} of this process's host region to `path` (atomically: a temporary file
    renamed over it)."""
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump({"pid": os.getpid(), "fd": fd, "size": size}, f)
    os.replace(tmp, path)


class HostRegion:
    """The host tier's bytes mapped in this process (read-write, shared with the owner). `address`
    is where offset 0 lies here; `array` is the whole region as a uint8 numpy array. Close it with
    close() (or a `with` block) once no copy uses it."""

    def __init__(self, pid, fd, size):
        with open(f"/proc/{int(pid)}/fd/{int(fd)}", "r+b", buffering=0) as f:
            self._map = mmap.mmap(f.fileno(), int(size), mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self.size = int(size)
        self.array = np.frombuffer(self._map, np.uint8)
        self.address = self.array.ctypes.data

    @classmethod
    def open_published(cls, path):
        """The region that `publish` described in `path`."""
        with open(path) as f:
            where = json.load(f)
        return cls(where["pid"], where["fd"], where["size"])

    def check(self, offset, length):
        """Raises ValueError unless [offset, offset + length) lies inside the region."""
        if offset < 0 or length < 0 or offset + length > self.size:
            raise ValueError(f"bytes {offset}..{offset + length} are outside the host region of {self.size} bytes")

    def close(self):
        self.array = None
        self._map.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
