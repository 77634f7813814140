"""Imports vLLM's and SGLang's plain-Python seams from their wheels (installed without dependencies:
tools/install-deps.sh), with exactly these stand-ins, and nothing else of the engines:
- `torch`, when it is not installed: a module whose only member is `Tensor` (an empty class). The seams
  name torch.Tensor in annotations and dataclass fields only.
- The packages' own `__init__` (vllm/__init__.py imports torch through vllm.env_override; sglang's
  sets up platform probes), and vllm.distributed's (torch.distributed): a bare package object over the
  installed folder is put in sys.modules, so `vllm.v1.kv_offload.*` and `sglang.srt.mem_cache.*` load
  from the wheels' files unchanged.
- `vllm.distributed.parallel_state`: only is_local_first_rank() and is_global_first_rank(), both True
  (one process, rank 0), which vllm.logger's warning_once asks when the factory loads an
  out-of-tree spec.
The test modules skip, saying why, when a wheel is not installed."""
import importlib.machinery
import importlib.util
import os
import sys
import types

import pytest


def _bare_package(name):
    if getattr(sys.modules.get(name), "__kvcache_bare__", False):
        return
    spec = importlib.util.find_spec(name) if "." not in name else None
    if "." in name:
        parent = sys.modules[name.rsplit(".", 1)[0]]
        path = os.path.join(parent.__path__[0], name.rsplit(".", 1)[1])
        spec = importlib.util.spec_from_file_location(name, os.path.join(path, "__init__.py"),
                                                      submodule_search_locations=[path])
    if spec is None or not spec.submodule_search_locations:
        pytest.skip(f"the {name} wheel is not installed (tools/install-deps.sh installs it without dependencies)",
                    allow_module_level=True)
    package = types.ModuleType(name)
    package.__path__ = list(spec.submodule_search_locations)
    package.__spec__ = spec
    package.__kvcache_bare__ = True
    sys.modules[name] = package


def _torch_stand_in():
    if "torch" not in sys.modules and importlib.util.find_spec("torch") is None:
        torch = types.ModuleType("torch")
        torch.__spec__ = importlib.machinery.ModuleSpec("torch", None)
        torch.Tensor = type("Tensor", (), {})
        sys.modules["torch"] = torch


def vllm():
    """vllm's offloading seam: (base, factory, config) modules."""
    _torch_stand_in()
    _bare_package("vllm")
    _bare_package("vllm.distributed")
    if "vllm.distributed.parallel_state" not in sys.modules:
        state = types.ModuleType("vllm.distributed.parallel_state")
        state.is_local_first_rank = state.is_global_first_rank = lambda: True
        sys.modules["vllm.distributed.parallel_state"] = state
    from vllm.v1.kv_offload import base, config, factory
    return base, factory, config


def sglang():
    """SGLang's HiCache storage seam: (hicache_storage, backend_factory) modules."""
    _torch_stand_in()
    _bare_package("sglang")
    from sglang.srt.mem_cache import hicache_storage
    from sglang.srt.mem_cache.storage import backend_factory
    return hicache_storage, backend_factory
