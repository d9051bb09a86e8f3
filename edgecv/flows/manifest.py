"""The run manifest: what each finished stage of ``compress`` wrote, so a rerun continues instead of redoing.

``run.json`` in the output folder holds a key (a hash of the options, the data and the edgecv version) and,
per finished stage, its files with their SHA-256 and its result. A rerun into the same folder reuses a stage
only when the key is the same and every file is still there with the same hash: never an artifact made with
other options or data, never a file changed since.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from edgecv import __version__
from edgecv.errors import DataError
from edgecv.fsutil import sha256, write_text


def run_key(config: dict, data_fingerprint: str) -> str:
    """Everything that decides a run's artifacts: options (not the folder), data, version, the input model."""
    options = {k: v for k, v in config.items() if k not in ("out", "max_drop")}  # the gate is always recomputed
    if options.get("data"):
        options["data"] = str(Path(options["data"]).resolve())
    if options.get("model"):
        try:
            options["model_sha256"] = sha256(Path(options["model"]).read_bytes())
        except OSError as e:
            raise DataError(f"model file {options['model']} cannot be read: {e.strerror or e}") from None
    text = json.dumps({"options": options, "data": data_fingerprint, "edgecv": __version__}, sort_keys=True,
                      default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class RunManifest:
    def __init__(self, out: Path, key: str):
        self.out, self.key = out, key
        self.path = out / "run.json"
        self.entries: dict[str, dict] = {}
        self.reused: list[str] = []
        try:
            saved = json.loads(self.path.read_text())
            if isinstance(saved, dict) and saved.get("key") == key and isinstance(saved.get("stages"), dict):
                self.entries = saved["stages"]
        except (OSError, ValueError):
            pass  # no manifest, or a damaged one: every stage runs

    def get(self, name: str) -> dict | None:
        """The stage's record when all its files are present and unchanged; None means: run it."""
        entry = self.entries.get(name)
        if not isinstance(entry, dict):
            return None
        for file, digest in entry.get("files", {}).items():
            path = self.out / file
            if not path.is_file() or sha256(path.read_bytes()) != digest:
                return None
        self.reused.append(name)
        return entry

    def drop(self, prefix: str = "") -> None:
        """Forgets the stages whose name starts with ``prefix`` (all by default): they were built from a parent
        that has just been made again."""
        self.entries = {k: v for k, v in self.entries.items() if not k.startswith(prefix)}

    def put(self, name: str, files: list[Path], result: dict | None = None) -> None:
        self.entries[name] = {"files": {p.name: sha256(p.read_bytes()) for p in files}, "result": result}
        write_text(self.path, json.dumps({"key": self.key, "stages": self.entries}, indent=1, default=str) + "\n")
