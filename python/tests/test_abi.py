"""The Python declarations (kvcache/_abi.py) against kvcache.h, parsed by a C preprocessor and pycparser:
every bound function's return and parameter types, every struct's fields in order with their ctypes
layout, every constant of the four enums, and the macros the package relies on. A header change the
package does not follow fails here instead of corrupting memory at run time."""
import ctypes as C
import os
import shutil
import subprocess

import pycparser
import pytest
from pycparser import c_ast

import kvcache
from kvcache import _abi

# Just enough of the C library for kvcache.h; the real headers carry compiler extensions pycparser lacks.
FAKE_LIBC = {
    "stdbool.h": "typedef _Bool bool;\n#define true 1\n#define false 0\n",
    "stddef.h": "typedef unsigned long size_t;\n#define NULL ((void *)0)\n",
    "stdint.h": "typedef int int32_t; typedef long int64_t; typedef unsigned int uint32_t;\n"
                "typedef unsigned long uint64_t; typedef unsigned char uint8_t;\n",
}


@pytest.fixture(scope="module")
def header(header_path, tmp_path_factory):
    """(functions, structs, enums, macros) of kvcache.h: the names mapped to C type spellings."""
    compilers = [os.environ.get("CC"), shutil.which("cc"), shutil.which("gcc"), shutil.which("clang")]
    preprocess = next(([c, "-E"] for c in compilers if c), None) or ([shutil.which("cpp")] if shutil.which("cpp") else None)
    assert preprocess, "a C preprocessor (cc, gcc, clang or cpp) is needed to read kvcache.h"
    d = tmp_path_factory.mktemp("abi")
    for name, text in FAKE_LIBC.items():
        (d / name).write_text(text)
    probe = d / "probe.c"
    # Each macro becomes an initializer pycparser can read.
    probe.write_text(f'#include "{header_path}"\n'
                     + "".join(f"long long kvcache_probe_{m} = {m};\n" for m in _abi.MACROS))
    source = subprocess.run([*preprocess, "-P", "-nostdinc", "-isystem", str(d), str(probe)], check=True,
                            capture_output=True, text=True).stdout
    ast = pycparser.CParser().parse(source, "kvcache.h")
    # Only the declarations the package binds are spelled out: the rest of the header may use C this
    # reader does not render (arrays, callbacks) without breaking the check.
    functions, structs, enums, macros = {}, {}, {}, {}
    for node in ast.ext:
        if isinstance(node, c_ast.Decl) and isinstance(node.type, c_ast.FuncDecl):
            functions[node.name] = None
            if node.name in _abi.FUNCTIONS:
                params = node.type.args.params if node.type.args else []
                spelled = [spell(p.type) for p in params]
                functions[node.name] = (spell(node.type.type), [] if spelled == ["void"] else spelled)
        elif isinstance(node, c_ast.Typedef) and isinstance(node.type.type, c_ast.Struct) and node.name in _abi.STRUCTS:
            structs[node.name] = [(f.name, spell(f.type)) for f in node.type.type.decls or []]
        elif isinstance(node, c_ast.Decl) and isinstance(node.type, c_ast.Enum) and node.type.name in _abi.ENUMS:
            value, values = -1, {}
            for e in node.type.values.enumerators:
                value = evaluate(e.value) if e.value is not None else value + 1
                values[e.name] = value
            enums[node.type.name] = values
        elif isinstance(node, c_ast.Decl) and node.name and node.name.startswith("kvcache_probe_"):
            macros[node.name[len("kvcache_probe_"):]] = evaluate(node.init)
    return functions, structs, enums, macros


def spell(t):
    """A pycparser type as C spells it in the tables: "const kvcache_config *", "kvcache_t **"."""
    stars = ""
    while isinstance(t, c_ast.PtrDecl):
        stars += "*"
        t = t.type
    if not isinstance(t, c_ast.TypeDecl):  # an array or a function: named by its kind, never equal to a table's
        return f"<{type(t).__name__}>"
    base = t.type.name if isinstance(t.type, c_ast.Struct) else " ".join(t.type.names)
    spelled = " ".join(t.quals + [base])
    return f"{spelled} {stars}" if stars else spelled


def evaluate(node):
    """The value of a constant expression of the header (integers, casts, + - * <<, parentheses)."""
    if isinstance(node, c_ast.Constant):
        return int(node.value.rstrip("uUlL"), 0)
    if isinstance(node, c_ast.Cast):
        return evaluate(node.expr)
    if isinstance(node, c_ast.UnaryOp) and node.op == "-":
        return -evaluate(node.expr)
    if isinstance(node, c_ast.BinaryOp):
        a, b = evaluate(node.left), evaluate(node.right)
        return {"+": a + b, "-": a - b, "*": a * b, "<<": a << b}[node.op]
    raise AssertionError(f"cannot evaluate {node}")


def normal(spelling):
    return " ".join(spelling.replace("*", " * ").split()).replace("* *", "**")


def test_every_bound_function_has_the_headers_prototype(header):
    functions = header[0]
    for name, (res, args) in _abi.FUNCTIONS.items():
        assert name in functions, f"{name} is bound but kvcache.h does not declare it"
        want_res, want_args = functions[name]
        assert normal(res) == normal(want_res), f"{name} returns {want_res} in kvcache.h, {res} here"
        assert [normal(a) for a in args] == [normal(a) for a in want_args], \
            f"{name}: kvcache.h has ({', '.join(want_args)}), the bindings ({', '.join(args)})"


def test_every_header_function_is_bound_or_listed_as_unbound(header):
    unbound = [n for n in header[0] if n not in _abi.FUNCTIONS and not n.startswith(_abi.UNBOUND_PREFIXES)]
    assert not unbound, f"kvcache.h declares functions the package neither binds nor lists as unbound: {unbound}"


def test_every_struct_a_binding_uses_has_the_headers_fields_and_layout(header):
    structs = header[1]
    for name, fields in _abi.STRUCTS.items():
        assert name in structs, f"struct {name} is not in kvcache.h"
        assert [(f, normal(t)) for f, t in fields] == [(f, normal(t)) for f, t in structs[name]], \
            f"struct {name}: kvcache.h has {structs[name]}, the bindings {fields}"
    # Struct parameters of bound functions are all declared (the ABI test would miss an undeclared one).
    scalars = set(_abi.SCALARS) | {"char", "kvcache_t", "kvcache_tiers_t", "kvcache_chunks_t", "kvcache_events_t", "void"}
    for name, (res, args) in _abi.FUNCTIONS.items():
        for spelled in [res, *args]:
            base = normal(spelled).replace("const ", "").rstrip(" *")
            assert base in scalars or base in _abi.STRUCTS, f"{name}: {spelled} is not declared in _abi.py"


def test_struct_layouts_are_the_documented_ones():
    # The sizes kvcache_layout.c asserts at compile time, seen through ctypes.
    sizes = {"kvcache_key": 16, "kvcache_block_copy": 8, "kvcache_prefix_hit": 16, "kvcache_allocation": 24,
             "kvcache_multimodal_item": 32, "kvcache_stats": 104, "kvcache_config": 48, "kvcache_event": 56,
             "kvcache_tier_admission": 48}
    assert {n: C.sizeof(_abi.STRUCT_TYPES[n]) for n in sizes} == sizes
    assert _abi.EventStruct.first_key.offset == 40 and _abi.Config.recompute_seconds_per_token.offset == 32
    # The numpy dtypes are the structs' layouts (arrays cross the boundary without a copy).
    assert kvcache.KEY_DTYPE.itemsize == 16 and kvcache.KEY_DTYPE.fields["hi"][1] == _abi.Key.hi.offset
    assert kvcache.BLOCK_COPY_DTYPE.itemsize == 8 and kvcache.BLOCK_COPY_DTYPE.fields["dst"][1] == _abi.BlockCopy.dst.offset


def test_enums_are_the_headers(header):
    enums = header[2]
    for c_name, (py_enum, prefix) in _abi.ENUMS.items():
        assert c_name in enums, f"enum {c_name} is not in kvcache.h"
        assert {prefix + m.name: int(m) for m in py_enum} == enums[c_name], f"enum {c_name} differs"


def test_macros_and_versions_are_the_headers(header, header_path):
    assert header[3] == _abi.MACROS
    text = open(header_path).read()
    version = ".".join(next(line.split()[2] for line in text.splitlines()
                            if line.startswith(f"#define KVCACHE_VERSION_{part} ")) for part in ("MAJOR", "MINOR", "PATCH"))
    assert kvcache.__version__ == version
    assert kvcache.version() == version and kvcache.abi_version() == kvcache.ABI_VERSION


def test_spell_renders_what_the_tables_write():
    # The renderer itself, on declarations whose spelling is known, so a comparison cannot pass vacuously.
    ast = pycparser.CParser().parse("typedef int kvcache_t; typedef int cfg;"
                                    "int f(const cfg *a, kvcache_t **b, const char *c, unsigned long d);")
    params = ast.ext[-1].type.args.params
    assert [spell(p.type) for p in params] == ["const cfg *", "kvcache_t **", "const char *", "unsigned long"]
    assert normal("const cfg*") == normal("const cfg *") and normal("kvcache_t * *") == "kvcache_t **"
