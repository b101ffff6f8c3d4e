"""Folders that hf-rrg exports (model repos, Parquet datasets): marked, written beside the target, swapped in.

Rules every export follows (`hf-rrg export`, `hf-rrg push`, `hf-rrg data export`):

- the output is never the source nor a folder that contains it (that would delete the source when it is replaced);
- a non-empty output folder is replaced only with ``overwrite`` and only when it is a previous export of the same
  kind, recognised by its manifest ``hf_rrg_export.json`` (a user's own folder is never deleted);
- everything is written to a hidden temporary sibling first; the old folder is renamed away, the new one renamed in,
  and only then is the old one deleted, so an interrupted export leaves the previous one in place.

The manifest records the kind of export, the hf-rrg version and the sha256 of the files that must not change
(`hf_rrg.hub.loading` checks the weights' digests when a model folder is loaded).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

MANIFEST_FILE = "hf_rrg_export.json"
MANIFEST_KEY = "hf_rrg_export"  # its value is the kind: "model" or "dataset"


def sha256_file(path: Path, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks (bounded memory for multi-GB weights)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_manifest(folder: Path, kind: str, checksummed: Iterable[Path]) -> dict[str, Any]:
    """Write `folder`/hf_rrg_export.json: kind, hf-rrg version and ``{relative path: sha256}``; returns it."""
    from . import __version__

    manifest = {
        MANIFEST_KEY: kind,
        "hf_rrg_version": __version__,
        "sha256": {path.relative_to(folder).as_posix(): sha256_file(path) for path in sorted(checksummed)},
    }
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """The manifest of `folder`, or None when it has none; a manifest that cannot be read is an error naming it."""
    path = folder / MANIFEST_FILE
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON ({error}); the export is damaged: export it again.") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("sha256", {}), Mapping):
        raise ValueError(f"{path} is not an hf-rrg export manifest; export the folder again.")
    return manifest


def check_output_folder(
    out_dir: Path, kind: str, sources: Iterable[Path], overwrite: bool, inside_forbidden: Iterable[Path] = ()
) -> None:
    """Refuse an output folder that would destroy a source or a user's files (see the module rules).

    Args:
        sources: folders the export reads; the output may not be one of them or contain one.
        inside_forbidden: folders the output may not lie inside either (e.g. the model folder itself).
    """
    out = out_dir.resolve()
    for source in sources:
        resolved = source.resolve()
        if resolved == out or out in resolved.parents:
            raise ValueError(
                f"Output folder {out_dir} is or contains the source {source}: replacing it would delete the source. "
                "Choose an output folder outside the source."
            )
    for folder in inside_forbidden:
        if folder.resolve() in out.parents:
            raise ValueError(f"Output folder {out_dir} must not be inside {folder}; choose a folder outside it.")
    if not out_dir.exists() and not out_dir.is_symlink():
        return
    if out_dir.is_symlink() or not out_dir.is_dir():
        raise FileExistsError(f"Output path {out_dir} exists and is not a folder; choose a new folder name.")
    if not any(out_dir.iterdir()):
        return
    if not overwrite:
        raise FileExistsError(
            f"Export folder {out_dir} already exists and is not empty; choose another folder or pass "
            "overwrite=True (`--overwrite`) to replace a previous hf-rrg export."
        )
    manifest = read_manifest(out_dir)
    if manifest is None or manifest.get(MANIFEST_KEY) != kind:
        found = f"no {MANIFEST_FILE}" if manifest is None else f"a {manifest.get(MANIFEST_KEY)} export, not a {kind}"
        raise FileExistsError(
            f"{out_dir} is not a previous hf-rrg export ({found}), so --overwrite will not delete it. "
            "Choose a new folder, or empty this one yourself."
        )


@contextmanager
def staged_folder(out_dir: Path) -> Iterator[Path]:
    """Yield a hidden temporary sibling of `out_dir` to write into; on success it replaces `out_dir` (see
    `replace_folder`), on any error it is removed and `out_dir` is left as it was."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)  # mkdtemp makes it private; an export is an ordinary folder
    try:
        yield staging
        replace_folder(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def replace_folder(new: Path, target: Path) -> None:
    """Put folder `new` at `target`: the old `target` is renamed away first and deleted only after the swap."""
    if not target.exists():
        new.rename(target)
        return
    old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
    target.rename(old)
    try:
        new.rename(target)
    except BaseException:
        old.rename(target)
        raise
    shutil.rmtree(old, ignore_errors=True)


__all__ = [
    "MANIFEST_FILE",
    "MANIFEST_KEY",
    "check_output_folder",
    "read_manifest",
    "replace_folder",
    "sha256_file",
    "staged_folder",
    "write_manifest",
]
