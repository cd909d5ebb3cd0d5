"""Password-protected dataset archives (easy-dataset-share `.zip.enc`).

The Model-Organisms EM datasets ship as one encrypted archive. `extract_member`
fetches and checksums the archive like any other source, decrypts it once into a
cache (what `easy-dataset-share unprotect-dir FILE -p PW --remove-canaries
--no-gitignore -o DIR` does, through the package's Python API so that the password
never appears on a command line), and returns the path of one member. The caller
checksums the member. The password comes from the environment variable the config
names; it is never logged or written anywhere.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from workflow_scripts.core.io_utils import InputError, atomic_dir, write_text_atomic

log = logging.getLogger(__name__)


CANARY_PATTERN = "dataset_entry_*.jsonl"  # easy-dataset-share's default


_DONE = ".extracted"  # marker: holds the sha256 of the archive the folder came from


class ArchiveError(InputError):
    pass


def archive_password(archive_entry: dict, what: str) -> str:
    variable = archive_entry["password_env"]
    password = os.environ.get(variable)
    if not password:
        raise ArchiveError(
            f"{what}: the archive password is read from the environment variable {variable}, "
            "which is not set (export it before running; it is never stored in config)"
        )
    return password


def decrypt_archive(archive: Path, password: str, out_dir: Path) -> dict:
    """Decrypt and unzip `archive` into `out_dir` and strip easy-dataset-share's canaries.

    Returns what was removed: canary files and the embedded canary string (if any).
    """
    from easy_dataset_share import canary, zipping

    with atomic_dir(out_dir) as tmp:
        try:
            zipping.unzip_and_decrypt(str(archive), password=password, output_dir=str(tmp))
        except ValueError:
            # The library's message carries no secret, but say plainly what it means.
            raise ArchiveError(
                f"{archive}: decryption failed; the password is wrong or the file is not an "
                "easy-dataset-share archive"
            ) from None
        canary_files = canary.detect_canary_files(str(tmp), CANARY_PATTERN)
        canary_string = (
            canary.extract_canary_string_from_content(canary_files[0]) if canary_files else None
        )
        canary.remove_canary_files(root_dir=str(tmp), canary_pattern=CANARY_PATTERN)
        if canary_string:
            canary.remove_canaries_from_files(str(tmp), canary_string)
        removed = {
            "canary_files": sorted(str(p.relative_to(tmp)) for p in canary_files),
            "canary_string": canary_string,
        }
    return removed


def find_member(root: Path, member: str, what: str) -> Path:
    """The file `member` (a relative path, or a file name found once anywhere) under `root`."""
    direct = root / member
    if direct.is_file():
        return direct
    matches = sorted(p for p in root.rglob(Path(member).name) if p.is_file())
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        found = ", ".join(str(p.relative_to(root)) for p in matches)
        raise ArchiveError(f"{what}.member: '{member}' is ambiguous in the archive: {found}")
    names = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.name != _DONE)
    raise ArchiveError(
        f"{what}.member: '{member}' is not in the archive; it holds: {', '.join(names) or 'nothing'}"
    )


def extract_member(
    archive: Path, archive_sha: str, archive_entry: dict, member: str, cache_dir: Path, what: str
) -> Path:
    """Path of `member` inside `archive` (already fetched and checksummed: `archive_sha`),
    decrypted once into `cache_dir` with the password `archive_entry` names."""
    cache_dir = Path(cache_dir)
    out_dir = cache_dir / f"extracted-{archive_sha[:16]}"
    marker = out_dir / _DONE
    # Several dataset jobs may open the same archive at once: one decrypts, the others wait.
    with _locked(cache_dir / f".extract-{archive_sha[:16]}.lock"):
        if not (marker.exists() and marker.read_text().strip() == archive_sha):
            password = archive_password(archive_entry, what)
            if out_dir.exists():
                shutil.rmtree(out_dir)
            removed = decrypt_archive(archive, password, out_dir)
            log.info(
                "decrypted %s (sha256 %s) into %s; removed canary files: %s",
                archive, archive_sha, out_dir, ", ".join(removed["canary_files"]) or "none",
            )
            write_text_atomic(marker, archive_sha + "\n")
    return find_member(out_dir, member, what)


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
