"""vLLM's offloading connector over the tiers: `KVCacheOffloadingSpec`, an `OffloadingSpec` whose
`OffloadingManager` is a `TierManager` (host memory and a zstd disk store below the GPU).

Configure it as any out-of-tree offloading spec (docs/INTEGRATION.md):

    --kv-transfer-config '{"kv_connector": "OffloadingConnector", "kv_role": "kv_both",
      "kv_connector_extra_config": {"spec_name": "KVCacheOffloadingSpec",
        "spec_module_path": "kvcache.integrations.vllm",
        "host_blocks": 4096, "disk_directory": "/nvme/kvcache", "disk_capacity_bytes": 200000000000}}'

What the manager does, in the order the connector's scheduler side calls it: `lookup(key)` is HIT when
the key is on host now, HIT_PENDING while a disk block is being brought up to host in the background
(started by that lookup; the connector defers the request and asks again), MISS when it is nowhere; `prepare_load(keys)` pins the host copies (bringing disk blocks up to
host first) and returns a `KVCacheTransferSpec` naming, per key, the host address the worker copies from;
`complete_load(keys)` reports those copies done and unpins; `prepare_store(keys)` takes a host slot per
new key (evicting the coldest host block to disk) and returns the addresses the worker copies into;
`complete_store(keys, success)` makes them loadable (or drops them); `take_events()` gives the tiers'
stored/removed events. Every call holds `lock` (a real lock: the copy callables run on the library's
threads).

The worker side (`get_worker`, in vLLM's worker processes): the library keeps the host blocks in a
shared-memory file; the scheduler side publishes where it is (`region_file`, by default
<tmp>/kvcache-vllm-<engine_id>.json) and each worker maps it (HostRegion) and copies between its KV
tensors and the blocks at the specs' `host_offsets` itself: `KVCacheOffloadingWorker`, one memmove per
(block, layer reference), synchronous (a CPU copy; a GPU build would issue cudaMemcpyAsync on a stream
and report from an event instead).
"""
import ctypes
import os
import tempfile
import threading
from dataclasses import dataclass, field

from vllm.v1.kv_offload.base import (DevicePointerGroupInfo, LoadStoreSpec, LookupResult, Medium, OffloadingEvent, OffloadingManager,
                                     OffloadingSpec, OffloadingWorker, PrepareStoreOutput, RequestOffloadingContext,
                                     TransferResult)

from .. import TierManager
from .._abi import EventKind, Tier
from ..host_region import HostRegion, publish
from . import key_of

__all__ = ["KVCacheOffloadingManager", "KVCacheOffloadingSpec", "KVCacheOffloadingWorker", "KVCacheTransferSpec",
           "TransferDesk"]


@dataclass
class KVCacheTransferSpec(LoadStoreSpec):
    """Where the worker copies: `host_addresses[i]` and `lengths[i]` are the host bytes of `keys[i]`
    (the source of a load, the destination of a store). A load's address is 0 for a key that could not be
    loaded (it left the tiers since `lookup`, or failed its checksum): the worker skips it and reports the
    job failed, so the connector recomputes from there. `host_offsets[i]` is the same place as a byte
    offset into the shared host region (-1 where the address is 0): what a worker process uses."""
    keys: list
    host_addresses: list
    lengths: list
    medium: str = "CPU"
    tokens: list = field(default_factory=list, repr=False)
    host_offsets: list = field(default_factory=list)


class TransferDesk:
    """The copies the tier manager asks for, by transfer lane (the tier manager's "device block"): the
    copy callables put them here from the library's threads; prepare_* collects them."""

    def __init__(self):
        self.cond = threading.Condition()
        self.by_lane = {}

    def arrive(self, lane, offset, length, host, token):
        with self.cond:
            self.by_lane[lane] = (host + offset, length, token)
            self.cond.notify_all()

    def collect(self, lanes, still_expected, timeout=60.0):
        """(host, length, token) per lane, waiting while `still_expected(lanes_missing)` says more
        copies will come. Lanes without a copy map to None."""
        with self.cond:
            while True:
                missing = [lane for lane in lanes if lane not in self.by_lane]
                if not missing or not still_expected(missing):
                    return [self.by_lane.pop(lane, None) for lane in lanes]
                if not self.cond.wait(timeout):
                    raise TimeoutError("the tier manager asked for no copy of a planned block")


class KVCacheOffloadingManager(OffloadingManager):
    """An OffloadingManager over a TierManager (see the module's documentation)."""

    def __init__(self, tiers, desk, lanes, has_disk, region_base=0, region_file=None):
        self.tiers, self.desk = tiers, desk
        self._region_base, self._region_file = region_base, region_file
        # A key leaves the tiers when it leaves the lowest one.
        self._lowest = Tier.DISK if has_disk else Tier.HOST
        self._events = []
        self._lock = threading.Lock()
        self._free_lanes = list(range(lanes - 1, -1, -1))
        self._stores = {}   # offload key -> (store id, lane, token)
        self._loads = {}    # offload key -> [(load id, lane, token), ...] (a key may be loaded twice at once)
        self._by_kv_key = {}
        self._promoted = {}  # request id -> {key whose promotion this request started: seen on host since}
        self._promote_limit = max(1, tiers.stats().host.capacity // 2)
        self.hits = 0

    @property
    def lock(self):
        return self._lock

    def _kv(self, key):
        kv = key_of(key)
        self._by_kv_key[kv] = key
        return kv

    def lookup(self, key, req_context):
        kv = self._kv(key)
        tier = self.tiers.loadable(kv)
        if tier is None:
            return LookupResult.MISS
        # A disk block is brought up to host in the background; the connector asks again later, and
        # prepare_load then finds it on host: no load waits for the disk. One that cannot get a host slot
        # now is a HIT read from disk by the load itself.
        # A request promotes at most half the host tier's blocks, each once: when its disk prefix is larger,
        # promoting later blocks would evict earlier ones (its own included) back to disk without end; the
        # rest are HITs read from disk by the load.
        promoted = self._promoted.setdefault(req_context.req_id, {})   # key -> seen on host since
        if tier == Tier.HOST and kv in promoted:
            promoted[kv] = True
        elif tier == Tier.DISK:
            if kv in promoted:
                if not promoted[kv] and self.tiers.prefetch([kv]) > 0:   # still on its way up
                    return LookupResult.HIT_PENDING
            elif len(promoted) < self._promote_limit:
                promoted[kv] = False
                if self.tiers.prefetch([kv]) > 0:
                    return LookupResult.HIT_PENDING
        self.hits += 1
        return LookupResult.HIT

    def _take_lanes(self, n):
        if n > len(self._free_lanes):
            return None
        return [self._free_lanes.pop() for _ in range(n)]

    def _transfer(self, transfer_id, keys, lanes):
        """Collects the copies of a transfer just prepared; keys without one failed at once."""
        def still_expected(missing):
            failed = self.tiers.failed_blocks(transfer_id)
            return any(not failed[lanes.index(lane)] for lane in missing)
        return self.desk.collect(lanes, still_expected)

    def prepare_load(self, keys, req_context):
        keys = list(keys)
        lanes = self._take_lanes(len(keys))
        if lanes is None:
            raise RuntimeError("more blocks in flight than transfer lanes; raise extra_config transfer_lanes")
        load_id = self.tiers.prepare_load([self._kv(k) for k in keys], 0, lanes)
        copies = self._transfer(load_id, keys, lanes)
        for key, lane, copy in zip(keys, lanes, copies):
            self._loads.setdefault(key, []).append((load_id, lane, copy[2] if copy else None))
        return self._spec(keys, copies)

    def _spec(self, keys, copies):
        """The transfer spec of `keys` whose copies (host, length, token) the library asked for (None: none)."""
        addresses = [c[0] if c else 0 for c in copies]
        return KVCacheTransferSpec(keys, addresses, [c[1] if c else 0 for c in copies],
                                   tokens=[c[2] if c else None for c in copies],
                                   host_offsets=[a - self._region_base if a else -1 for a in addresses])

    def complete_load(self, keys, req_context):
        ids = set()
        for key in keys:
            load_id, lane, token = self._loads[key].pop(0)
            if not self._loads[key]:
                del self._loads[key]
            if token is not None:
                self.tiers.copy_done(token, True)
            self._free_lanes.append(lane)
            ids.add(load_id)
        for load_id in ids:
            self.tiers.complete_load(load_id)

    def prepare_store(self, keys, req_context):
        keys = [k for k in keys if k not in self._stores]
        new = [k for k in keys if self.tiers.loadable(self._kv(k)) is None]
        lanes = self._take_lanes(len(new))
        if lanes is None:
            return None
        if not new:
            return PrepareStoreOutput([], KVCacheTransferSpec([], [], []), [])
        store_id = self.tiers.prepare_store(lanes, [self._kv(k) for k in new])
        copies = self._transfer(store_id, new, lanes)
        stored = []
        for key, lane, copy in zip(new, lanes, copies):
            if copy is None:   # no host slot free or evictable: not stored
                self._free_lanes.append(lane)
                continue
            self._stores[key] = (store_id, lane, copy[2])
            stored.append((key, copy))
        spec = self._spec([k for k, _ in stored], [c for _, c in stored])
        return PrepareStoreOutput([k for k, _ in stored], spec, self._pending_removals())

    def _pending_removals(self):
        """Takes the tier manager's events in (kept for take_events, with their offload keys) and returns
        the offload keys that left the lowest tier: evicted from the tiers."""
        gone = []
        for e in self.tiers.take_events():
            kv = [(int(k["lo"]), int(k["hi"])) for k in e.keys]
            keys = [self._by_kv_key[k] for k in kv if k in self._by_kv_key]
            self._events.append((e, keys))
            if e.kind == EventKind.BLOCK_REMOVED and e.tier == self._lowest:
                gone += keys
                for k in kv:
                    self._by_kv_key.pop(k, None)
        return gone

    def complete_store(self, keys, req_context, success=True):
        ids = set()
        for key in keys:
            if key not in self._stores:
                continue
            store_id, lane, token = self._stores.pop(key)
            self.tiers.copy_done(token, bool(success))
            self._free_lanes.append(lane)
            ids.add(store_id)
        for store_id in ids:
            # A store covers the keys of one prepare_store; finish it once none of its keys is pending.
            if not any(s == store_id for s, _, _ in self._stores.values()):
                self.tiers.complete_store(store_id)

    def on_new_request(self, req_context):
        return RequestOffloadingContext()

    def on_request_finished(self, req_context):
        self._promoted.pop(req_context.req_id, None)
        finished = getattr(super(), "on_request_finished", None)
        if finished is not None:
            return finished(req_context)

    def take_events(self):
        self._pending_removals()
        events, self._events = self._events, []
        for e, keys in events:
            if keys:
                yield OffloadingEvent(keys=keys, medium=Medium.CPU if e.tier == Tier.HOST else Medium.STORAGE,
                                      removed=e.kind == EventKind.BLOCK_REMOVED)

    def shutdown(self):
        if self._region_file:
            try:
                os.remove(self._region_file)
            except FileNotFoundError:
                pass
        self.tiers.close()


class KVCacheOffloadingSpec(OffloadingSpec):
    """The spec vLLM's OffloadingSpecFactory builds from kv_connector_extra_config (spec_name
    "KVCacheOffloadingSpec", spec_module_path "kvcache.integrations.vllm"). Extra config keys:
    host_blocks (offload chunks kept in host memory; default: cpu_bytes_to_use / chunk bytes, else 1024),
    disk_directory and disk_capacity_bytes (the disk tier; none by default), transfer_lanes (copies in
    flight at most; default 4096), workers (transfer threads; default 2), spill_watermark (default 0.9),
    lock_host_memory (default false), region_file (where the scheduler side publishes the shared host
    region for the workers; default <tmp>/kvcache-vllm-<engine_id>.json)."""

    def __init__(self, config):
        super().__init__(config)
        extra = self.extra_config
        # One offloaded chunk holds blocks_per_chunk GPU blocks of this worker.
        self.chunk_bytes = config.worker_kv_bytes_per_block * max(1, self.blocks_per_chunk)
        default_host = int(extra.get("cpu_bytes_to_use", 0)) // self.chunk_bytes or 1024
        self.host_blocks = int(extra.get("host_blocks", default_host))
        self.disk_directory = extra.get("disk_directory")
        self.disk_capacity_bytes = int(extra.get("disk_capacity_bytes", 0))
        self.transfer_lanes = int(extra.get("transfer_lanes", 4096))
        engine = getattr(config, "engine_id", None) or "default"
        self.region_file = extra.get("region_file") or os.path.join(tempfile.gettempdir(), f"kvcache-vllm-{engine}.json")
        self._manager = None
        self._worker = None

    def get_manager(self):
        if self._manager is None:
            desk = TransferDesk()
            # The chunk is one opaque run of bytes: 1 layer, 1 head, 1 token, fp8, head_dim = bytes / 2.
            if self.chunk_bytes % 2:
                raise ValueError("an offload chunk of an odd number of bytes")
            tiers = TierManager(
                layers=1, kv_heads=1, head_dim=self.chunk_bytes // 2, dtype_bytes=1, block_tokens=1,
                device_blocks=self.transfer_lanes, host_blocks=self.host_blocks,
                disk_directory=self.disk_directory, disk_capacity_bytes=self.disk_capacity_bytes,
                workers=int(self.extra_config.get("workers", 2)),
                spill_watermark=float(self.extra_config.get("spill_watermark", 0.9)),
                lock_host_memory=bool(self.extra_config.get("lock_host_memory", False)),
                record_events=True,
                device_to_host=desk.arrive, host_to_device=desk.arrive)
            fd, region_base, size = tiers.host_region()
            publish(self.region_file, fd, size)
            self._manager = KVCacheOffloadingManager(tiers, desk, self.transfer_lanes, self.disk_directory is not None,
                                                     region_base, self.region_file)
        return self._manager

    def get_worker(self, kv_caches):
        """The worker side over this worker's KV tensors (vLLM's CanonicalKVCaches). The shared host region
        is mapped at the first transfer (the scheduler side may publish it after the workers start)."""
        if self._worker is None:
            if kv_caches is None:
                raise ValueError("get_worker needs the worker's KV caches (CanonicalKVCaches)")
            self._worker = KVCacheOffloadingWorker(kv_caches, self.blocks_per_chunk, self.chunk_bytes,
                                                   self.region_file)
        return self._worker


def iter_pointer_groups(device_ptrs, blocks_per_chunk):
    """The non-empty groups of a transfer's DevicePointers with their chunk counts and the pages skipped
    in each group's first chunk: vLLM's pointer_utils.iter_pointer_groups (which this module does not
    import: its vllm.utils import needs torch.nn)."""
    offset = 0
    for group_idx, (size, refs, first) in enumerate(zip(device_ptrs.group_block_counts,
                                                        device_ptrs.group_data_ref_counts, device_ptrs.block_indices)):
        if size == 0:
            continue
        skip = first % blocks_per_chunk
        yield DevicePointerGroupInfo(group_idx=group_idx, group_size=size, n_data_refs=refs, skip=skip,
                                     n_chunks=-(-(size + skip) // blocks_per_chunk), dev_ptr_offset=offset)
        offset += size * refs


class KVCacheOffloadingWorker(OffloadingWorker):
    """Copies between a worker's KV tensors and the shared host blocks named by KVCacheTransferSpec's
    `host_offsets`. A host block (one offloaded chunk) holds, for each layer reference of its KV cache
    group in order, `blocks_per_chunk` pages of that reference's page size; device block b of a group
    whose first block sits `skip` blocks into its chunk goes to chunk (b + skip) // blocks_per_chunk,
    page (b + skip) % blocks_per_chunk, as vLLM's own CPU worker lays them out. Transfers run
    synchronously in submit_*; get_finished reports them."""

    def __init__(self, kv_caches, blocks_per_chunk, chunk_bytes, region_file):
        self.blocks_per_chunk = max(1, int(blocks_per_chunk))
        self.chunk_bytes = int(chunk_bytes)
        self.region_file = region_file
        # Per KV cache group: the byte offset of each layer reference's pages within a chunk, and its page size.
        self._layout = []
        for refs in kv_caches.group_data_refs:
            offsets, at = [], 0
            for ref in refs:
                offsets.append((at, ref.page_size_bytes))
                at += ref.page_size_bytes * self.blocks_per_chunk
            if at > self.chunk_bytes:
                raise ValueError(f"a KV cache group needs {at} bytes per chunk, more than the {self.chunk_bytes} of one")
            self._layout.append(offsets)
        self._region = None
        self._finished = []

    def _host(self):
        if self._region is None:
            self._region = HostRegion.open_published(self.region_file)
        return self._region

    def _copies(self, device_ptrs, spec):
        """(device address, host address, length) of every copy of a transfer; None when a chunk of it
        has no host block (a load whose block left the tiers)."""
        region = self._host()
        out, chunk = [], 0
        for g in iter_pointer_groups(device_ptrs, self.blocks_per_chunk):
            layout = self._layout[g.group_idx]
            for d in range(g.n_data_refs):
                ref_offset, page = layout[d]
                for b in range(g.group_size):
                    i = g.dev_ptr_offset + d * g.group_size + b
                    flat = b + g.skip
                    host = spec.host_offsets[chunk + flat // self.blocks_per_chunk]
                    if host < 0:
                        return None
                    length = int(device_ptrs.sizes[i])
                    if length > page:
                        raise ValueError(f"a copy of {length} bytes into a page of {page}")
                    at = host + ref_offset + (flat % self.blocks_per_chunk) * page
                    region.check(at, length)
                    out.append((int(device_ptrs.ptrs[i]), region.address + at, length))
            chunk += g.n_chunks
        return out

    def _run(self, job_id, device_ptrs, spec, to_host):
        copies = self._copies(device_ptrs, spec)
        moved = 0
        for device, host, length in copies or ():
            if to_host:
                ctypes.memmove(host, device, length)
            else:
                ctypes.memmove(device, host, length)
            moved += length
        self._finished.append(TransferResult(job_id=job_id, success=copies is not None, transfer_size=moved))
        return True

    def submit_store(self, job_id, device_ptrs, dst_spec):
        return self._run(job_id, device_ptrs, dst_spec, to_host=True)

    def submit_load(self, job_id, src_spec, device_ptrs, expedited=False):
        return self._run(job_id, device_ptrs, src_spec, to_host=False)

    def get_finished(self):
        done, self._finished = self._finished, []
        return done

    def wait(self, job_ids):
        return  # every transfer finished inside its submit_*

    def shutdown(self):
        if self._region is not None:
            self._region.close()
            self._region = None
