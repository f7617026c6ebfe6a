#!/usr/bin/env python3
"""Writes pyfacts/tests/python.json: what Python 3 prints for the inputs the
clemhost-pyfacts tests feed to their Rust counterparts.

Run it from the repository root (python3 scripts/pyfacts-expectations.py);
the tests read the file, they never run Python themselves.
"""
import json
import math
import struct
import sys
from datetime import datetime, timedelta
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "pyfacts" / "tests" / "python.json"


def bits(f):
    return struct.unpack("<Q", struct.pack("<d", f))[0]


def main():
    timedeltas = [0, 1, 9, 16_489, 999_999, 1_000_000, 2_000_000, 59_999_999,
                  3_599_999_999, 3_723_500_000, 36_000_000_000, 86_399_999_999,
                  86_400_000_000, 90_000_000_000, 172_805_000_000,
                  400 * 86_400_000_000 + 1]
    datetimes = [(2026, 11, 29, 8, 25, 17, 0), (2026, 11, 29, 8, 25, 17, 810_570),
                 (2026, 1, 2, 3, 4, 5, 5), (1, 1, 1, 0, 0, 0, 0),
                 (9999, 12, 31, 23, 59, 59, 999_999), (2024, 2, 29, 12, 0, 0, 100_000)]
    floats = [0.0, -0.0, 1.0, 0.1, -2.5, 0.7, 4096.0, 123.456, 123456.789,
              0.30000000000000004, 1e15, 9999999999999998.0, 1e16, 1.5e16, 1e20,
              1e300, 1.7976931348623157e308, 0.0001, 0.00009999, 1e-05, 2.5e-05,
              1.5e-07, 1.2345e-07, 5e-324, 2.2250738585072014e-308, -1e-300,
              1 / 3, 2 / 3, 100.0, 1e-4 * 3, math.pi, -math.e,
              float("nan"), float("inf"), float("-inf")]
    strings = ["plain", "o\"model", "back\\slash", "a\nb\r\tc", "\b\f",
               "\x00\x01\x1f\x7f", "café ☕ 😀", "<b> & 'c' / d", "\u2028\u2029", "\ufeff"]
    values = [None, False, True, 0, 0.0, -0.0, 1, 2.5, "", "a", "0", "false", [], [0],
              {}, {"a": 1}]
    compact = [{"model_name": "gpt-4o", "model_id": None, "t": 0.7, "n": 3,
                "l": ["a", True]}, {"x": [1e16, 1e-05, -0.0, "é"]}, [], {}]
    data = {
        "python": sys.version.split()[0],
        "timedelta": [[us, str(timedelta(microseconds=us))] for us in timedeltas],
        "datetime": [[list(t), str(datetime(*t)), datetime(*t).isoformat()]
                     for t in datetimes],
        "float": [[bits(f), repr(f), json.dumps(f)] for f in floats],
        "string": [[s, json.dumps(s), json.dumps(s, ensure_ascii=False)] for s in strings],
        "truthy": [[v, bool(v)] for v in values],
        "compact": [[v, json.dumps(v, separators=(",", ":"))] for v in compact],
    }
    OUT.write_text(json.dumps(data, indent=1, ensure_ascii=True) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
