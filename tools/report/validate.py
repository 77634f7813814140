#!/usr/bin/env python3
"""Validates kvcache reports (the --json output of any subcommand) against docs/report.schema.json.

    python3 tools/report/validate.py REPORT.json...

Prints one line per file (ok, or the first errors with their paths); exits 0 when every file is valid,
1 when one is not, 3 when the jsonschema module is missing (pip install jsonschema, or Debian's
python3-jsonschema)."""
import json, os, sys

try:
    import jsonschema
except ImportError:
    print("the python3 module jsonschema is missing (apt-get install python3-jsonschema)", file=sys.stderr)
    sys.exit(3)

schema_path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs", "report.schema.json")
schema = json.load(open(schema_path))
jsonschema.Draft202012Validator.check_schema(schema)
validator = jsonschema.Draft202012Validator(schema)
bad = 0
for path in sys.argv[1:]:
    try:
        report = json.load(open(path))
    except Exception as e:
        print(f"{path}: not JSON ({e})"); bad += 1; continue
    errors = sorted(validator.iter_errors(report), key=lambda e: list(e.absolute_path))
    if errors:
        bad += 1
        for e in errors[:5]:
            print(f"{path}: {'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message[:200]}")
    else:
        print(f"{path}: ok ({report.get('command')}, {len(report.get('runs', []))} runs)")
sys.exit(1 if bad else 0)
