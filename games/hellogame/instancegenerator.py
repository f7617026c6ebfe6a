#!/usr/bin/env python3
"""Writes in/instances.json for hellogame (clembench format).

Run from anywhere: python3 games/hellogame/instancegenerator.py
The prompt template lives in resources/initial_prompt.template; each
instance replaces $NAME$ with one name.
"""
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
NAMES = ["Peter", "Max", "Marienne", "Alex", "Susanne", "David", "Sheya", "Lara", "Magnus", "Ding"]


def main():
    template = (HERE / "resources" / "initial_prompt.template").read_text(encoding="utf-8").strip()
    instances = [
        {"game_id": game_id, "prompt": template.replace("$NAME$", name), "target_name": name}
        for game_id, name in enumerate(NAMES)
    ]
    data = {"experiments": [{"name": "greet_en", "language": "en", "game_instances": instances}]}
    out = HERE / "in" / "instances.json"
    out.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {len(instances)} instances to {out}")


if __name__ == "__main__":
    main()
