"""Where a report's files land: never over anything the kit did not write.

A report folder carries a manifest (MANIFEST) naming its study and the files the kit wrote there. A new folder,
or one holding nothing but an earlier report of this study, is replaced as a whole (readers see the old report
or the new, never a mix); into an empty folder, or one where the user keeps files beside an earlier report of this
study, only the report's own files are written and the earlier report's files that are no longer produced are
removed. Anything else (a file, a folder of someone else's files, another study's report) is refused before
the report is built.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from flowkit.settings import ConfigError

MANIFEST = ".flowkit-report.json"


def _manifest(folder: Path) -> dict | None:
    """The manifest of a kit report folder, or None where there is none (or it is not one of ours)."""
    try:
        data = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("files"), list):
        return None
    if not all(isinstance(name, str) and name and Path(name).name == name for name in data["files"]):
        return None  # a manifest naming paths outside its folder is not the kit's
    return data


def check_out_dir(out_dir: Path, study_name: str) -> None:
    """Refuse an output folder the report would have to overwrite someone else's files in."""
    if out_dir.is_symlink() or (out_dir.exists() and not out_dir.is_dir()):
        raise ConfigError(f"report --out {out_dir}: exists and is not a folder; give a new or empty folder")
    if not out_dir.exists() or not any(out_dir.iterdir()):
        return
    manifest = _manifest(out_dir)
    if manifest is None:
        raise ConfigError(
            f"report --out {out_dir}: the folder holds files the kit did not write; "
            "give a new or empty folder, or one holding an earlier report of this study"
        )
    if manifest.get("study") != study_name:
        raise ConfigError(
            f"report --out {out_dir}: the folder holds the report of study {manifest.get('study')!r}, "
            f"not of {study_name!r}; give another folder"
        )


def staging_folder(out_dir: Path) -> Path:
    """A fresh folder beside out_dir to build the report in (same file system, so that it can be renamed)."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.staging."))


def publish(staging: Path, out_dir: Path, study_name: str) -> None:
    """Move the report built in staging to out_dir (checked by check_out_dir) and write its manifest."""
    files = sorted(path.name for path in staging.iterdir())
    (staging / MANIFEST).write_text(json.dumps({"study": study_name, "files": files}, indent=1) + "\n")
    if not out_dir.exists():
        staging.rename(out_dir)
        return
    old = _manifest(out_dir)
    entries = {path.name for path in out_dir.iterdir()}
    if old is not None and entries <= set(old["files"]) | {MANIFEST}:
        aside = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.replaced."))
        out_dir.rename(aside / "report")
        staging.rename(out_dir)
        shutil.rmtree(aside)
        return
    for name in files:
        os.replace(staging / name, out_dir / name)
    for name in set(old["files"] if old else ()) - set(files):
        (out_dir / name).unlink(missing_ok=True)
    os.replace(staging / MANIFEST, out_dir / MANIFEST)
    staging.rmdir()
