"""Loads vLLM's own KV event classes (vllm/distributed/kv_events.py) for the subscriber test.

Importing the `vllm` package pulls in torch and the whole engine, so only that one file is used: the
module is loaded from the installed vllm when it imports, else from the file tools/install-deps.sh
extracts from the vllm wheel (KVCACHE_VLLM_KV_EVENTS, default /opt/kvcache-vllm/kv_events.py). Its
module-level imports of other vllm modules are publisher plumbing, not the event schema; they are
satisfied with small stand-ins so that the classes (EventBatch, KVEventBatch, BlockStored,
BlockRemoved, AllBlocksCleared) are exactly vLLM's.
"""
import dataclasses
import importlib.util
import logging
import os
import sys
import types

DEFAULT_PATH = "/opt/kvcache-vllm/kv_events.py"


def _stub(name, **attrs):
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    sys.modules[name] = module
    return module


def load():
    try:
        import vllm.distributed.kv_events as kv_events  # a full vllm install
        return kv_events
    except Exception:
        pass
    path = os.environ.get("KVCACHE_VLLM_KV_EVENTS", DEFAULT_PATH)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: run tools/install-deps.sh (it extracts kv_events.py from the vllm wheel)")

    @dataclasses.dataclass
    class KVEventsConfig:
        enable_kv_cache_events: bool = False
        publisher: str = "null"
        endpoint: str = ""
        replay_endpoint: str | None = None
        buffer_steps: int = 10_000
        hwm: int = 100_000
        max_queue_size: int = 100_000
        topic: str = ""

    for pkg in ("vllm", "vllm.config", "vllm.utils", "vllm.v1", "vllm.v1.core", "vllm.distributed"):
        sys.modules.setdefault(pkg, types.ModuleType(pkg))
    _stub("vllm.config.kv_events", KVEventsConfig=KVEventsConfig)
    _stub("vllm.logger", init_logger=logging.getLogger)
    _stub("vllm.utils.network_utils", get_ip=lambda: "127.0.0.1", get_tcp_uri=lambda ip, port: f"tcp://{ip}:{port}",
          is_valid_ipv6_address=lambda ip: False, split_zmq_path=lambda path: path.split(":"))
    _stub("vllm.v1.core.kv_cache_utils", ExternalBlockHash=bytes | int)
    spec = importlib.util.spec_from_file_location("vllm.distributed.kv_events", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["vllm.distributed.kv_events"] = module
    spec.loader.exec_module(module)
    return module
