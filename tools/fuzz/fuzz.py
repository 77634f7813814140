#!/usr/bin/env python3
"""Black-box fuzzing of the `kvcache` binary with hostile flags and files (Python standard library only).

    python3 tools/fuzz/fuzz.py .build/debug/kvcache --quick            # the test command's run, ~1-2 min
    python3 tools/fuzz/fuzz.py .build/release/kvcache --budget-s 1800  # a long run by hand
    python3 tools/fuzz/fuzz.py BIN --only 'replay-*' --seed 7          # one family, another seed

Every case is `(generator, seed)` (see cases.py): the generator writes its input files and returns the
argv, from `random.Random("generator:seed")`, so a case replays exactly. Each runs under
`ulimit -v 8000000` (an 8 GB address space) and a timeout. A case FAILS when the process
  - dies by a signal (trap, abort, the kernel's OOM kill), or exceeds the timeout twice (a hang:
    a case over its limit is rerun once with four times the limit, so a busy machine is not a hang),
  - exits with a code other than 0, 1 or 64 (64: the argument parser's usage error),
  - or prints a forbidden error shape: Foundation's NSCocoaErrorDomain, a raw `system(call: ...)`,
    a Swift runtime message (`Fatal error`, `Swift/...`), or a Swift enum's debug dump on stderr.
Each failure is written to OUT/failures/NAME-SEED/ as `repro.sh` (the command, run from that folder,
with its input files next to it) and `result.txt`. The last line printed is `N passed, N failed`.

`--quick` runs every case pinned in tools/fuzz/regressions.txt (crashes found before, kept as
regression tests) plus a fixed handful of seeds per generator. The exit status is 1 when a case
failed, 0 otherwise.
"""
import argparse
import fnmatch
import os
import random
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import cases     # noqa: E402
import formats   # noqa: E402

ADDRESS_SPACE_KB = 8_000_000
OK_EXIT_CODES = {0, 1, 64}
FORBIDDEN = [
    (re.compile(r"NSCocoaErrorDomain"), "Foundation error dump"),
    (re.compile(r"system\(call:"), "raw system-call error"),
    (re.compile(r"Fatal error|Swift/[A-Za-z]+\.swift"), "Swift runtime error"),
    (re.compile(r"Error Domain="), "Foundation error dump"),
]
# A Swift enum's debug description on stderr: `caseName(label: ...` or `Type.caseName(`.
ENUM_DUMP = re.compile(r"\b[a-z][A-Za-z0-9]*\((?:[a-z][A-Za-z0-9]*: |\")|\b[A-Z][A-Za-z]+Error\.[a-z]")


def model_path(explicit):
    for p in [explicit, os.environ.get("KVCACHE_MODEL"),
              os.path.join(HERE, "..", "..", "..", "shared", "models", "SmolLM2-135M-Instruct.Q4_1.gguf"),
              "/work/shared/models/SmolLM2-135M-Instruct.Q4_1.gguf"]:
        if p and os.path.isfile(p):
            return os.path.abspath(p)
    return None


def run_binary(binary, argv, cwd, timeout):
    """Runs `binary argv` (or, for argv ["@python", ...], this Python) in `cwd` under the address-space
    limit. Returns (code, out, err, seconds); code is -signal for a signal and None for a timeout."""
    if argv and argv[0] == "@python":
        binary, argv = sys.executable, argv[1:]
    wrapper = ["bash", "-c", f'ulimit -v {ADDRESS_SPACE_KB}; exec "$@"', "kvcache-fuzz", binary] + argv
    t0 = time.monotonic()
    p = subprocess.Popen(wrapper, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
        code = p.returncode
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, 9)
        out, err = p.communicate()
        code = None
    return code, out[-20000:], err[-20000:], time.monotonic() - t0


def judge(code, out, err):
    """None when the case passed, else why it failed."""
    if code is None:
        return "timeout (hang)"
    if code < 0:
        return f"killed by signal {-code}"
    if code not in OK_EXIT_CODES:
        return f"exit code {code}"
    text_out, text_err = out.decode("utf-8", "replace"), err.decode("utf-8", "replace")
    for pattern, why in FORBIDDEN:
        if pattern.search(text_err) or (code != 0 and pattern.search(text_out)):
            return why
    for line in text_err.splitlines():
        if line.startswith("Error:") and ENUM_DUMP.search(line):
            return "Swift enum debug dump in an error"
    return None


# MARK: Fixtures

def make_fixtures(binary, folder, model, lib):
    """Shared inputs the generators read: the model, a valid CASTILLO folder, a predictor model file
    trained on it, a version 2 KV-event recording written by `replay --record-events`, and a disk tier
    directory written by `disk stress`. A fixture that cannot be made
    is left out (its cases are skipped) and said on stderr."""
    os.makedirs(folder, exist_ok=True)
    fx = {}
    if model:
        fx["model"] = model
    if lib and os.path.isfile(lib):
        fx["lib"] = os.path.abspath(lib)
    rng = random.Random("fixtures")
    castillo = os.path.join(folder, "castillo")
    if not os.path.isdir(castillo):
        formats.make_castillo(rng, folder, mutate=False)
    fx["castillo"] = castillo
    pm = os.path.join(folder, "predictor.model")
    if not os.path.isfile(pm):
        run_binary(binary, ["predict", "train", "--data", castillo, "--out", pm, "--epochs", "1",
                            "--hash-bits", "10"], folder, 120)
    if os.path.isfile(pm):
        fx["predictor_model"] = pm
    else:
        print("fuzz: could not train the predictor fixture; its cases are skipped", file=sys.stderr)
    recording = os.path.join(folder, "events.kvev")
    if not os.path.isfile(recording):
        run_binary(binary, ["replay", "--range", "0.9:1", "--capacity-blocks", "300", "--record-events", recording],
                   folder, 120)
    if os.path.isfile(recording):
        fx["recording"] = recording
    else:
        print("fuzz: could not record the KV-event fixture; its cases are skipped", file=sys.stderr)
    disk = os.path.join(folder, "disk")
    if not os.path.isdir(disk):
        run_binary(binary, ["disk", "stress", disk, "--seconds", "0.5", "--block-kib", "16",
                            "--capacity-mib", "2"], folder, 120)
    if os.path.isdir(disk) and any(n.endswith(".kvlog") for n in os.listdir(disk)):
        fx["disk_dir"] = disk
    else:
        print("fuzz: could not write the disk tier fixture; its cases are skipped", file=sys.stderr)
    return fx


# MARK: Cases

def regression_list():
    path = os.path.join(HERE, "regressions.txt")
    pinned = []
    for line in open(path):
        line = line.split("#", 1)[0].split()
        if len(line) >= 2:
            pinned.append((line[0], int(line[1])))
    return pinned


def copy_case(src, dst):
    """Copies a case folder, recreating FIFOs and symlinks instead of opening them."""
    os.makedirs(dst, exist_ok=True)
    for name in os.listdir(src):
        s, d = os.path.join(src, name), os.path.join(dst, name)
        st = os.lstat(s)
        if stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(s).replace(src, "."), d)
        elif stat.S_ISFIFO(st.st_mode):
            os.mkfifo(d)
        elif stat.S_ISDIR(st.st_mode):
            copy_case(s, d)
        elif stat.S_ISREG(st.st_mode):
            shutil.copy2(s, d)


def write_reproducer(out_dir, name, seed, folder, argv, why, code, out, err, timeout):
    dst = os.path.join(out_dir, "failures", f"{name}-{seed}")
    shutil.rmtree(dst, ignore_errors=True)
    copy_case(folder, dst)
    args = " ".join(shlex_quote(a.replace(folder, ".")) for a in argv)
    if args.startswith("@python "):
        command = f"timeout {timeout} python3 {args[len('@python '):]}"
    else:
        command = f'timeout {timeout} "${{KVCACHE:-kvcache}}" {args}'
    with open(os.path.join(dst, "repro.sh"), "w") as f:
        f.write(f"#!/usr/bin/env bash\n# {name} seed {seed}: {why}\n"
                'cd "$(dirname "$0")"\n'
                f"ulimit -v {ADDRESS_SPACE_KB}\n"
                f"{command}\n"
                'echo "exit $?"\n')
    os.chmod(os.path.join(dst, "repro.sh"), 0o755)
    with open(os.path.join(dst, "result.txt"), "wb") as f:
        f.write(f"{why}\nexit: {code}\n--- stdout (tail)\n".encode() + out[-4000:] + b"\n--- stderr (tail)\n" + err[-4000:])
    return dst, args


def shlex_quote(s):
    import shlex
    return shlex.quote(s)


def run_case(binary, name, seed, fx, work, timeout):
    gen, check = cases.GENERATORS[name][0], (cases.GENERATORS[name][2:] or [None])[0]
    rng = random.Random(f"{name}:{seed}")
    folder = os.path.join(work, f"{name}-{seed}")
    os.makedirs(folder)
    try:
        argv = gen(rng, folder, fx)
    except OSError as e:   # e.g. the same odd entry drawn twice: the case is skipped, not the run
        print(f"fuzz: {name} {seed}: generator failed: {e}", file=sys.stderr)
        argv = None
    if argv is None:
        shutil.rmtree(folder, ignore_errors=True)
        return name, seed, "skipped", None
    code, out, err, seconds = run_binary(binary, argv, folder, timeout)
    if code is None:
        # A machine slowed by other work looks like a hang: a case over its limit runs once more with
        # four times the limit, and only a second timeout counts as a hang.
        print(f"fuzz: {name} {seed}: over {timeout:.0f} s, rerunning with {4 * timeout:.0f} s", file=sys.stderr)
        code, out, err, seconds = run_binary(binary, argv, folder, 4 * timeout)
    why = judge(code, out, err) or (check(argv, code, out, err) if check else None)
    return name, seed, why, (folder, argv, code, out, err, seconds)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("binary", help="the kvcache binary to test")
    ap.add_argument("--quick", action="store_true", help="regressions plus a fixed handful of seeds (CI)")
    ap.add_argument("--budget-s", type=float, default=600, help="stop starting cases after this long (long mode)")
    ap.add_argument("--seed", type=int, default=None, help="first seed of long mode (default: random)")
    ap.add_argument("--only", default="*", help="glob over generator names, e.g. 'replay-*'")
    ap.add_argument("--out", default="fuzz-out", help="folder for fixtures and failure reproducers")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=None, help="seconds per case (default: 15 quick, 30 long)")
    ap.add_argument("--lib", default=None, help="libkvcache_c.so for the C ABI cases (default: next to the binary)")
    ap.add_argument("--model", default=None, help="the GGUF model (default: $KVCACHE_MODEL or ../shared/models)")
    args = ap.parse_args()

    if args.timeout is None:
        args.timeout = 15 if args.quick else 30
    binary = os.path.abspath(args.binary)
    out_dir = os.path.abspath(args.out)
    os.makedirs(out_dir, exist_ok=True)
    fx = make_fixtures(binary, os.path.join(out_dir, "fixtures"), model_path(args.model),
                       args.lib or os.path.join(os.path.dirname(binary), "libkvcache_c.so"))
    names = [n for n in cases.GENERATORS if fnmatch.fnmatch(n, args.only)]

    plan = [(n, s) for n, s in regression_list() if n in names]
    if args.quick:
        for n in names:
            cost = cases.GENERATORS[n][1]
            plan += [(n, s) for s in range(max(1, 6 // cost))]
        budget = 150.0
    else:
        first = args.seed if args.seed is not None else random.randrange(1 << 30)
        print(f"fuzz: long mode from seed {first}", file=sys.stderr)
        weights = [1.0 / cases.GENERATORS[n][1] for n in names]
        rng = random.Random(first)
        plan += [(rng.choices(names, weights)[0], first + i) for i in range(1_000_000)]
        budget = args.budget_s
    seen, unique = set(), []
    for c in plan:
        if c not in seen:
            seen.add(c)
            unique.append(c)

    work = tempfile.mkdtemp(prefix="kvcache-fuzz-")
    passed = failed = skipped = 0
    t0 = time.monotonic()
    try:
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            pending = []
            it = iter(unique)
            exhausted = False
            while pending or not exhausted:
                while not exhausted and len(pending) < args.jobs * 2 and time.monotonic() - t0 < budget:
                    nxt = next(it, None)
                    if nxt is None:
                        exhausted = True
                        break
                    pending.append(pool.submit(run_case, binary, nxt[0], nxt[1], fx, work, args.timeout))
                if time.monotonic() - t0 >= budget:
                    exhausted = True
                if not pending:
                    break
                done = pending.pop(0)
                name, seed, why, detail = done.result()
                if why == "skipped":
                    skipped += 1
                    continue
                folder, argv, code, out, err, seconds = detail
                if why is None:
                    passed += 1
                else:
                    failed += 1
                    dst, line = write_reproducer(out_dir, name, seed, folder, argv, why, code, out, err, args.timeout)
                    print(f"FAIL {name} {seed}: {why} ({seconds:.1f} s): kvcache {line[:300]}", flush=True)
                shutil.rmtree(folder, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    extra = f", {skipped} skipped" if skipped else ""
    unrun = len(unique) - passed - failed - skipped
    if args.quick and unrun:
        extra += f", {unrun} not run (time budget of {budget:.0f} s spent)"
    print(f"fuzz: {time.monotonic() - t0:.0f} s; reproducers under {out_dir}/failures", file=sys.stderr)
    print(f"{passed} passed, {failed} failed{extra}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
