"""Write the JSON Schema of every JSON file a stage writes to docs/schema/ (from the models in
crosstime.artifacts, :func:`crosstime.artifacts.json_schemas`), one file per artifact, named by its
path in the run directory: ``evaluation.json`` -> ``evaluation.schema.json``,
``attribution/TASK/summary.json`` -> ``attribution.TASK.summary.schema.json``.

    python docs/generate_schemas.py      # after changing a model; tests/artifacts/test_schemas.py checks it was run
"""

from __future__ import annotations

import json
from pathlib import Path

from crosstime.artifacts import json_schemas

SCHEMA_DIR = Path(__file__).resolve().parent / "schema"


def schema_name(path: str) -> str:
    """The schema file of the artifact at ``path`` in the run directory."""
    return path.removesuffix(".json").replace("/", ".") + ".schema.json"


def schema_texts() -> dict[str, str]:
    """``{file name: its text}`` of every schema, as written."""
    return {schema_name(path): json.dumps(schema, indent=2, ensure_ascii=False) + "\n"
            for path, schema in json_schemas().items()}


def main() -> None:
    texts = schema_texts()
    SCHEMA_DIR.mkdir(exist_ok=True)
    for old in SCHEMA_DIR.glob("*.schema.json"):  # an artifact that is gone takes its schema with it
        if old.name not in texts:
            old.unlink()
    for name, text in texts.items():
        (SCHEMA_DIR / name).write_text(text, encoding="utf-8")
        print(f"wrote {SCHEMA_DIR / name}")


if __name__ == "__main__":
    main()
