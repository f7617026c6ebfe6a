"""Differential check of clemhost's model-registry resolution against clemcore.

Run through `scripts/check-registry-oracle` (which provides the clemcore 3.7.2
venv and the clemhost binary). For a fixed seed it generates random
registries and random model arguments, resolves every argument twice, once
in this process with clemcore's own `ModelSpec` / `ModelRegistry` and once
with `clemhost models show --json`, and compares the two outcomes:

* a resolved spec: equal values of equal JSON types (`1`, `1.0` and `true`
  are three different answers), with the same key order at every depth;
* "no match": the same `No model spec unifies ...` message;
* an empty registry: the same `Model registry is empty ...` message;
* a registry file clemcore refuses to load: clemhost must refuse it too
  (its message is its own: path, line and column).

Where clemcore itself crashes (most often a query without `model_name`,
see docs/registry.md, "Differences"), the query is counted as "clemcore
crashed" and clemhost is compared, for information, with what clemcore's
unifier (`nltk.featstruct.unify`, called directly, entry by entry) gives
when the crashing name check is left out, which is what clemhost documents.

Registries never put pre-1.0 backend settings (`eos_to_cull`, ...) at the
top level of an entry: clemhost moves those into `model_config` on purpose
(docs/registry.md, "Older registry files").
"""

from __future__ import annotations

import argparse
import importlib.resources
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nltk
from clemcore.backends.model_registry import ModelRegistry, ModelSpec

PLAYER_NAMES = ["mock", "programmatic", "human", "terminal"]

# Top-level keys an entry may carry besides model_name/backend/model_id.
# None of them is one of clemhost's LEGACY_MODEL_CONFIG_KEYS.
TOP_KEYS = [
    "context_size", "languages", "license", "model_config", "open_weight",
    "parameters", "release_date", "huggingface_id", "tier", "flag", "ctx",
    "notes", "rank", "lookup_source",
]
# Keys inside nested objects (model_config and friends).
NESTED_KEYS = [
    "padding_side", "premade_chat_template", "eos_to_cull", "extra_body",
    "top_k", "multimodality", "audio", "name", "url", "a", "b", "0", "1",
]
# Names that are also attributes of clemcore's ModelSpec: as keys they make
# clemcore crash (its spec is a namespace), clemhost treats them as data.
METHOD_KEYS = ["unify", "is_human", "has_backend", "to_string", "rename"]
BACKENDS = ["openai", "huggingface_local", "llamacpp", "echo", "b"]
STRINGS = ["en", "de", "a", "4096", "true", "", "right", "left", "128k", "x y", "é"]
NAMES = ["m", "m2", "gpt-4o", "Llama-3", 'o"q', "x y", "ü-model", "a'b", "", "1", "null", "{m}"]
SHIPPED_NAMES = ["gpt-4o", "gpt-4o-mini", "llama-3.3-70b", "slurk", "qwen2.5-72b"]


# ---------------------------------------------------------------- generation


def gen_scalar(rng: random.Random, odd: bool) -> Any:
    kind = rng.random()
    if odd and rng.random() < 0.1:
        return rng.choice([2**64 + 1, 2**53 + 1, -(2**63) - 1, 1e21, 1e-7, -0.0, 123456789.125])
    if kind < 0.35:
        return rng.choice(STRINGS)
    if kind < 0.6:
        return rng.choice([0, 1, 2, 4096, -3])
    if kind < 0.75:
        return rng.choice([0.0, 1.0, 0.5, 4096.0, 2.25])
    if kind < 0.92:
        return rng.choice([True, False])
    return None


def gen_value(rng: random.Random, depth: int, odd: bool) -> Any:
    kind = rng.random()
    if depth < 3 and kind < 0.15:
        return [gen_value(rng, depth + 1, odd) for _ in range(rng.randint(0, 3))]
    if depth < 3 and kind < 0.3:
        return gen_object(rng, depth + 1, odd)
    return gen_scalar(rng, odd)


def gen_object(rng: random.Random, depth: int, odd: bool) -> dict:
    keys = rng.sample(NESTED_KEYS, rng.randint(0, 3))
    return {k: gen_value(rng, depth, odd) for k in keys}


def gen_entry(rng: random.Random, names: list, odd: bool) -> dict:
    fields: list[tuple[str, Any]] = []
    if rng.random() < 0.95:
        name = rng.choice(names) if rng.random() < 0.97 else rng.choice([4096, None, True])
        fields.append(("model_name", name))
    if rng.random() < 0.995:
        fields.append(("backend", rng.choice(BACKENDS)))
    if rng.random() < 0.5:
        fields.append(("model_id", rng.choice(["id-1", "id-2", "gpt-4o", ""])))
    for key in rng.sample(TOP_KEYS, rng.randint(0, 4)):
        if key == "languages":
            value: Any = rng.sample(["en", "de", "fr"], rng.randint(0, 3))
        elif key == "model_config":
            value = gen_object(rng, 1, odd)
        elif key == "lookup_source":
            value = rng.choice(["packaged", "cwd", "elsewhere"])
        else:
            value = gen_value(rng, 1, odd)
        fields.append((key, value))
    if odd and rng.random() < 0.05:
        fields.append((rng.choice(METHOD_KEYS), gen_scalar(rng, False)))
    if rng.random() < 0.5:
        rng.shuffle(fields)
    return dict(fields)


@dataclass
class Registry:
    """One generated set of registry files (in lookup order)."""

    files: list  # JSON values: a list of entries or a single entry object
    shipped: bool  # whether the registry shipped with clemhost (clemcore's packaged one) follows


def gen_registry(rng: random.Random, odd: bool) -> Registry:
    shipped = rng.random() < 0.15
    pool = rng.sample(NAMES, rng.randint(2, 5)) + ([rng.choice(SHIPPED_NAMES)] if shipped else [])
    files = []
    for _ in range(1 if rng.random() < 0.8 else 2):
        if rng.random() < 0.02:
            files.append([])
            continue
        entries = [gen_entry(rng, pool, odd) for _ in range(rng.randint(1, 7))]
        if len(entries) == 1 and rng.random() < 0.3:
            files.append(entries[0])
        else:
            files.append(entries)
    return Registry(files, shipped)


def entry_list(value: Any) -> list:
    return [value] if isinstance(value, dict) else list(value)


def names_of(reg: Registry) -> list:
    names = []
    for f in reg.files:
        for e in entry_list(f):
            if isinstance(e, dict) and "model_name" in e:
                names.append(e["model_name"])
    return names


def mutate(rng: random.Random, value: Any, odd: bool) -> Any:
    """A value near `value`: equal for Python but of another type, slightly off, or unrelated."""
    r = rng.random()
    if isinstance(value, bool):
        return rng.choice([int(value), not value, float(value), str(value).lower()])
    if isinstance(value, int):
        return rng.choice([float(value), str(value), value + 1, bool(value) if value in (0, 1) else None])
    if isinstance(value, float):
        return rng.choice([int(value), value + 0.5, str(value), -value])
    if isinstance(value, str):
        return rng.choice([value + " ", value.upper(), "", None, 0])
    if isinstance(value, list):
        if r < 0.25:
            return list(reversed(value))
        if r < 0.45:
            return value[:-1]
        if r < 0.6:
            return value + [gen_scalar(rng, odd)]
        if r < 0.8 and value:
            return {str(i): v for i, v in enumerate(value)}  # a list as an object
        return [mutate(rng, v, odd) for v in value]
    if isinstance(value, dict):
        keys = list(value)
        if r < 0.3:
            return {k: value[k] for k in rng.sample(keys, rng.randint(0, len(keys)))}
        if r < 0.5:
            return {**value, rng.choice(NESTED_KEYS): gen_value(rng, 2, odd)}
        if r < 0.65 and value:
            return list(value.values())  # an object as a list
        if keys:
            k = rng.choice(keys)
            return {**value, k: mutate(rng, value[k], odd)}
        return []
    return gen_value(rng, 1, odd)


def selector_text(rng: random.Random, sel: dict) -> str:
    """A dict selector as a command-line argument, in one of the spellings clemcore reads."""
    text = json.dumps(
        sel,
        ensure_ascii=rng.random() < 0.5,
        separators=rng.choice([(",", ":"), (", ", ": ")]),
    )
    if rng.random() < 0.5 and "'" not in text and '\\"' not in text:
        text = text.replace('"', "'")  # clemcore's "' stands for \"" spelling
    return text


def gen_query(rng: random.Random, reg: Registry, odd: bool) -> str:
    names = [n for n in names_of(reg) if isinstance(n, str)]
    entries = [e for f in reg.files for e in entry_list(f) if isinstance(e, dict)]
    r = rng.random()
    if r < 0.25 and names:
        name = rng.choice(names)
        return name.replace('"', "'") if rng.random() < 0.5 else name
    if r < 0.33:
        base = rng.choice(names) if names else "m"
        return rng.choice([base + " ", base.upper(), " " + base, "unknown-model", rng.choice(PLAYER_NAMES),
                           rng.choice(SHIPPED_NAMES), "*", base + "*"])
    if r < 0.37:
        return rng.choice(['"m"', "123", "[1, 2]", "null", "true", "{bad", "{'model_name': 'm'", "{}", "[]"])
    if r < 0.82 and entries:
        entry = rng.choice(entries)
        keys = [k for k in entry if k != "model_name"]
        chosen = rng.sample(keys, rng.randint(0, len(keys)))
        sel: dict = {}
        if "model_name" in entry and rng.random() < 0.85:
            sel["model_name"] = entry["model_name"]
        for k in chosen:
            sel[k] = mutate(rng, entry[k], odd) if rng.random() < 0.3 else entry[k]
        if rng.random() < 0.3:
            extra = rng.choice(["temperature", "max_tokens", rng.choice(TOP_KEYS), rng.choice(NESTED_KEYS)])
            sel[extra] = gen_value(rng, 1, odd)
        if odd and rng.random() < 0.03:
            sel[rng.choice(METHOD_KEYS)] = gen_scalar(rng, False)
        if rng.random() < 0.5:
            items = list(sel.items())
            rng.shuffle(items)
            sel = dict(items)
        return selector_text(rng, sel)
    if r < 0.92:
        sel = {}
        if rng.random() < 0.5:
            sel["model_name"] = rng.choice(names + NAMES) if names else rng.choice(NAMES)
        for k in rng.sample(TOP_KEYS + ["backend", "model_id"], rng.randint(0, 3)):
            sel[k] = gen_value(rng, 1, odd)
        return selector_text(rng, sel)
    if r < 0.95:
        sel = {"model_name": rng.choice(PLAYER_NAMES), "backend": rng.choice(BACKENDS), "x": [1]}
        return selector_text(rng, sel)
    if not odd:
        return rng.choice(names) if names else "m"
    # Spellings that are not plain JSON for every reader.
    name = json.dumps(rng.choice(names) if names else "m")
    return rng.choice([
        '{"model_name": %s, "x": NaN}' % name,
        '{"model_name": %s, "x": Infinity}' % name,
        '{"model_name": %s, "x": 1e400}' % name,
        '{"model_name": %s, "x": 1E2}' % name,
        '{"model_name": "zz", "model_name": %s}' % name,
        '  {"model_name": %s}  ' % name,
        '{"model_name": %s} trailing' % name,
        '{"model_name": %s, "x": 100000000000000000000000}' % name,
        '{"model_name": "\\u00fc-model"}',
        '{"model_name": %s, "x": "\\ud800"}' % name,
    ])


# ---------------------------------------------------------------- outcomes
#
# An outcome is a tuple: ("spec", canonical form), ("nomatch", message),
# ("empty", message), ("load-error", text), ("crash", class, text),
# ("error", text) for any other clemhost error, ("no-reference", text).


def canon(value: Any) -> Any:
    """A comparable form that keeps JSON types and key order."""
    if isinstance(value, dict):
        return ("object", [(k, canon(v)) for k, v in value.items()])
    if isinstance(value, list):
        return ("array", [canon(v) for v in value])
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int):
        return ("int", value)
    if isinstance(value, float):
        return ("float", repr(value))
    if value is None:
        return ("null",)
    return ("string", value)


def load_with_clemcore(reg: Registry, paths: list) -> ModelRegistry:
    registry = ModelRegistry()
    for path in paths:
        with open(path, encoding="utf-8") as f:
            registry.register_from_list(json.load(f), lookup_source=str(path))
    if reg.shipped:
        packaged = importlib.resources.files("clemcore.backends").joinpath("model_registry.json")
        with packaged.open("r", encoding="utf-8") as f:
            registry.register_from_list(json.load(f), lookup_source="packaged")
    return registry


def crash_class(exc: BaseException) -> str:
    text = str(exc)
    if isinstance(exc, AttributeError) and "no attribute 'model_name'" in text:
        return "AttributeError: no model_name (query without model_name)"
    if isinstance(exc, KeyError):
        return "KeyError inside nltk (an object meets a list)"
    if isinstance(exc, TypeError) and "not callable" in text:
        return "TypeError: a key shadows a ModelSpec method"
    return f"{type(exc).__name__}: {text[:60]}"


def clemcore_outcome(reg: Registry, paths: list, query: str) -> tuple:
    try:
        registry = load_with_clemcore(reg, paths)
    except ValueError as e:
        return ("load-error", str(e))
    except Exception as e:  # noqa: BLE001 - any crash is an outcome here
        return ("crash", crash_class(e), f"{type(e).__name__}: {e}")
    try:
        spec = registry.get_first_model_spec_that_unify_with(ModelSpec.from_string(query))
    except ValueError as e:
        text = str(e)
        if text.startswith("No model spec unifies"):
            return ("nomatch", text)
        return ("crash", f"ValueError: {text[:60]}", text)
    except AttributeError as e:
        if str(e).startswith("Model registry is empty"):
            return ("empty", str(e))
        return ("crash", crash_class(e), f"AttributeError: {e}")
    except Exception as e:  # noqa: BLE001
        return ("crash", crash_class(e), f"{type(e).__name__}: {e}")
    return ("spec", canon(spec.to_dict()))


def reference_outcome(reg: Registry, paths: list, shipped_extra: list, query: str) -> tuple:
    """clemcore's unifier applied entry by entry, without the model_name check."""
    entries = []
    for path in paths:
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except ValueError as e:
            return ("load-error", str(e))
        for e in entry_list(data):
            if not isinstance(e, dict) or "backend" not in e:
                return ("load-error", f"bad entry {e!r}")
            entries.append({**e, "lookup_source": e.get("lookup_source", str(path))})
    if reg.shipped:
        packaged = importlib.resources.files("clemcore.backends").joinpath("model_registry.json")
        with packaged.open("r", encoding="utf-8") as f:
            for e in json.load(f) + shipped_extra:
                entries.append({**e, "lookup_source": e.get("lookup_source", "packaged")})
    text = query.replace("'", '"')
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    selector = parsed if isinstance(parsed, dict) else {"model_name": text}
    name = selector.get("model_name", object())
    if name in ["human", "terminal"]:
        return ("spec", canon({"model_name": name, "backend": "_player_human"}))
    if name in ["mock", "programmatic"]:
        return ("spec", canon({"model_name": name, "backend": "_player_programmed"}))
    if not entries:
        return ("empty", "Model registry is empty. Load a model registry and try again.")
    for entry in entries:
        try:
            result = nltk.featstruct.unify(selector, entry)
        except Exception as e:  # noqa: BLE001
            return ("no-reference", f"the unifier crashes too: {type(e).__name__}: {e}")
        if result is not None:
            return ("spec", canon(result))
    return ("nomatch", "No model spec unifies with model selector=" + json.dumps(selector, separators=(",", ":")))


def clemhost_outcome(binary: str, reg: Registry, paths: list, query: str, cwd: str) -> tuple:
    args = [binary, "-q"]
    if not reg.shipped:
        args.append("--no-default-registry")
    for path in paths:
        args += ["--registry", str(path)]
    args += ["models", "show", "--json", "--", query]
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode == 0:
        try:
            return ("spec", canon(json.loads(proc.stdout)))
        except ValueError as e:
            return ("error", f"unreadable JSON on stdout ({e}): {proc.stdout[:200]}")
    lines = proc.stderr.splitlines()
    first = next((line for line in lines if line.startswith("error: ")), lines[0] if lines else "")
    message = first.removeprefix("error: ")
    if message.startswith("No model spec unifies"):
        return ("nomatch", message)
    if message.startswith("Model registry is empty"):
        return ("empty", message)
    if any(str(p) in proc.stderr for p in paths):
        return ("load-error", proc.stderr.strip())
    return ("error", proc.stderr.strip() or f"exit status {proc.returncode}")


def same(theirs: tuple, ours: tuple) -> bool:
    """Whether clemhost's outcome (`ours`) is clemcore's (`theirs`)."""
    if theirs[0] != ours[0]:
        return False
    if theirs[0] == "load-error":
        return True  # each side words it its own way
    if theirs[0] == "empty":
        return ours[1].startswith(theirs[1])  # clemhost adds the files it read
    return theirs[1] == ours[1]


def has_wide_int(value: Any) -> bool:
    if isinstance(value, dict):
        return any(has_wide_int(v) for v in value.values())
    if isinstance(value, list):
        return any(has_wide_int(v) for v in value)
    return isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**64


# Disagreements docs/registry.md lists as deliberate: clemhost reads standard
# JSON only (no NaN, Infinity, 1e400 or lone surrogates) and keeps numbers as
# 64-bit integers or doubles.
KNOWN_CAUSES = {
    "query JSON only Python reads (NaN, Infinity, 1e400, lone surrogate)",
    "integer outside the 64-bit range",
}


def likely_cause(reg: Registry, query: str) -> str:
    """A first guess at why the two sides differ, for the summary."""
    if any(t in query for t in ("NaN", "Infinity", "1e400", "\\ud800")):
        return "query JSON only Python reads (NaN, Infinity, 1e400, lone surrogate)"
    try:
        parsed = json.loads(query.replace("'", '"'))
    except ValueError:
        parsed = None
    if has_wide_int(reg.files) or has_wide_int(parsed):
        return "integer outside the 64-bit range"
    return "other"


# ---------------------------------------------------------------- reporting


def show(outcome: tuple) -> str:
    if outcome[0] == "spec":
        return "spec " + json.dumps(uncanon(outcome[1]))
    return " ".join(str(x) for x in outcome)


def uncanon(c: Any) -> Any:
    kind = c[0]
    if kind == "object":
        return {k: uncanon(v) for k, v in c[1]}
    if kind == "array":
        return [uncanon(v) for v in c[1]]
    if kind == "float":
        return float(c[1])
    if kind == "null":
        return None
    return c[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clemhost", required=True, help="the clemhost binary")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--per-registry", type=int, default=10, help="queries per generated registry")
    ap.add_argument("--no-odd", action="store_true",
                    help="leave out NaN/Infinity, huge numbers and keys named like ModelSpec methods")
    ap.add_argument("--show", type=int, default=5, help="disagreements printed in full")
    ap.add_argument("--out", help="write every disagreement and crash as JSON lines here")
    args = ap.parse_args()

    rng = random.Random(args.seed)
    odd = not args.no_odd
    repo = Path(__file__).resolve().parent.parent
    packaged_names = {e["model_name"] for e in json.loads(
        importlib.resources.files("clemcore.backends").joinpath("model_registry.json").read_text())}
    shipped_extra = [e for e in json.loads((repo / "model_registry.json").read_text())
                     if e.get("model_name") not in packaged_names]

    counts = {"queries": 0, "agreed": 0, "crashed": 0, "known": 0, "disagreed": 0}
    crash_classes: dict = {}
    crash_vs_reference = {"same as unifier": 0, "differs from unifier": 0, "no reference": 0}
    kinds: dict = {}
    causes: dict = {}
    disagreements = []
    crash_diffs = []
    out = open(args.out, "w", encoding="utf-8") if args.out else None
    clemhost_seconds = 0.0
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="registry-oracle-") as tmp:
        tmp = os.path.realpath(tmp)
        cwd = os.path.join(tmp, "cwd")  # no model_registry.json here
        os.mkdir(cwd)
        index = 0
        while counts["queries"] < args.queries:
            odd_here = odd and rng.random() < 0.1
            reg = gen_registry(rng, odd_here)
            paths = []
            for i, data in enumerate(reg.files):
                path = Path(tmp) / f"reg{index}-{i}.json"
                path.write_text(json.dumps(data, ensure_ascii=rng.random() < 0.5, indent=rng.choice([None, 2])),
                                encoding="utf-8")
                paths.append(path)
            index += 1
            for _ in range(min(args.per_registry, args.queries - counts["queries"])):
                query = gen_query(rng, reg, odd_here)
                if reg.shipped and "echo-1" in query:
                    continue  # the one entry clemhost ships and clemcore does not
                counts["queries"] += 1
                ours_start = time.monotonic()
                ours = clemhost_outcome(args.clemhost, reg, paths, query, cwd)
                clemhost_seconds += time.monotonic() - ours_start
                theirs = clemcore_outcome(reg, paths, query)
                record = {"registry": reg.files, "shipped": reg.shipped, "query": query,
                          "clemcore": show(theirs), "clemhost": show(ours)}
                if theirs[0] == "crash":
                    counts["crashed"] += 1
                    crash_classes[theirs[1]] = crash_classes.get(theirs[1], 0) + 1
                    ref = reference_outcome(reg, paths, shipped_extra, query)
                    if ref[0] == "no-reference":
                        crash_vs_reference["no reference"] += 1
                    elif same(ref, ours):
                        crash_vs_reference["same as unifier"] += 1
                    else:
                        crash_vs_reference["differs from unifier"] += 1
                        record["unifier"] = show(ref)
                        record["cause"] = likely_cause(reg, query)
                        crash_diffs.append(record)
                    if out:
                        out.write(json.dumps({"kind": "crash", **record}) + "\n")
                elif same(theirs, ours):
                    counts["agreed"] += 1
                    kinds[theirs[0]] = kinds.get(theirs[0], 0) + 1
                else:
                    record["cause"] = likely_cause(reg, query)
                    counts["known" if record["cause"] in KNOWN_CAUSES else "disagreed"] += 1
                    causes[record["cause"]] = causes.get(record["cause"], 0) + 1
                    disagreements.append(record)
                    if out:
                        out.write(json.dumps({"kind": "disagreement", **record}) + "\n")
    elapsed = time.monotonic() - started
    if out:
        out.close()

    print(f"registry oracle: seed {args.seed}, {index} registries, clemcore 3.7.2 vs {args.clemhost}")
    print()
    print(f"{'queries':>10} {'agreed':>10} {'clemcore crashed':>18} {'known differences':>19} {'disagreed':>10}")
    print(f"{counts['queries']:>10} {counts['agreed']:>10} {counts['crashed']:>18} {counts['known']:>19} "
          f"{counts['disagreed']:>10}")
    print()
    print("agreed, by outcome: " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())))
    if crash_classes:
        print("clemcore crashes, by class:")
        for name, n in sorted(crash_classes.items(), key=lambda kv: -kv[1]):
            print(f"  {n:>5}  {name}")
        print("clemhost on those queries, against clemcore's unifier without the name check: "
              + ", ".join(f"{k} {v}" for k, v in crash_vs_reference.items()))
    if causes:
        print("disagreements, by likely cause (known: documented in docs/registry.md, not failures):")
        for name, n in sorted(causes.items(), key=lambda kv: -kv[1]):
            print(f"  {n:>5}  {name}" + ("  (known)" if name in KNOWN_CAUSES else ""))
    print(f"time: {elapsed:.1f} s in all, {clemhost_seconds / max(counts['queries'], 1) * 1000:.1f} ms "
          "per clemhost process")
    for title, records in (("disagreement", disagreements), ("crash where clemhost differs from the unifier",
                                                             crash_diffs)):
        for n, rec in enumerate(records[: args.show], 1):
            print()
            print(f"{title} {n}" + (f" ({rec['cause']}):" if "cause" in rec else ":"))
            print(f"  registry files: {json.dumps(rec['registry'])}"
                  + ("  (+ shipped registry)" if rec["shipped"] else ""))
            print(f"  query:    {rec['query']!r}")
            print(f"  clemcore: {rec['clemcore']}")
            if "unifier" in rec:
                print(f"  unifier:  {rec['unifier']}")
            print(f"  clemhost: {rec['clemhost']}")
    return 0 if counts["disagreed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
