"""A run's folder of Parquet parts: each block of rows one file, written to a temporary name and renamed into place
(a file is whole or absent), named by the images it holds; the run's settings in ``_run.json``, so that a resumed
run adds only the images no part holds — and only to a folder of the same run (a cached result is reused only when
all it depends on is equal)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from ..errors import ClassContrastError

ROW_GROUP = 64  # rows per Parquet row group: reading one map reads at most this many
SETTINGS = "_run.json"


class PartStore:
    """The Parquet parts of one run under ``out`` (see the module docstring); ``settings``: what its rows depend on
    (the model, methods, contrasts, targets, maps, options), plain JSON values."""

    def __init__(self, out: Path, settings: dict[str, Any]) -> None:
        if out.exists() and not out.is_dir():
            raise ClassContrastError(f"--out {out}: a file, not a folder")
        out.mkdir(parents=True, exist_ok=True)
        self.out = out
        path = out / SETTINGS
        text = json.dumps(settings, sort_keys=True, indent=1)
        if path.exists():
            try:
                before = json.loads(path.read_text())
            except (OSError, ValueError) as e:
                raise ClassContrastError(f"--out {out}: {SETTINGS} is unreadable ({e}); choose another folder") from e
            changed = sorted(k for k in {*before, *settings} if before.get(k) != settings.get(k))
            if changed:
                raise ClassContrastError(f"--out {out} holds the results of another run ({', '.join(changed)} "
                                         "differ): choose another folder, or remove that one")
        else:
            write_atomic(path, text.encode())
        for stale in out.glob(".part-*.tmp"):  # a write a killed run left unfinished
            stale.unlink()

    def parts(self) -> list[Path]:
        return sorted(self.out.glob("part-*.parquet"))

    def done(self) -> set[str]:
        """The stamps (`Sample.stamp`) of every image a part holds."""
        import pyarrow.parquet as pq

        found: set[str] = set()
        for part in self.parts():
            found.update(v for v in pq.read_table(part, columns=["stamp"]).column("stamp").to_pylist() if v)
        return found

    def write(self, table: Any) -> Path | None:
        """One block of rows as a part of its own (None for an empty block)."""
        import pyarrow.parquet as pq

        if table.num_rows == 0:
            return None
        stamps = sorted(set(table.column("stamp").to_pylist()))
        name = "part-" + hashlib.sha256("\n".join(map(str, stamps)).encode()).hexdigest()[:20] + ".parquet"
        final, tmp = self.out / name, self.out / f".{name}.tmp"
        pq.write_table(table, tmp, row_group_size=ROW_GROUP)
        os.replace(tmp, final)
        return final


def write_atomic(path: Path, data: bytes) -> None:
    """``data`` into ``path`` whole or not at all (a temporary file beside it, renamed into place)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


__all__ = ["ROW_GROUP", "SETTINGS", "PartStore", "write_atomic"]
