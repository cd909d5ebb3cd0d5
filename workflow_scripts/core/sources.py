"""Data files named in config: a local path, a URL, or a member of an encrypted
archive. Every file is checksummed; a mismatch stops with the expected and found hash.
"""

from __future__ import annotations

import logging
import urllib.request
from pathlib import Path

from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential

from workflow_scripts.core.archives import extract_member
from workflow_scripts.core.hashing import sha256_file
from workflow_scripts.core.io_utils import InputError, atomic_path

log = logging.getLogger(__name__)


class ChecksumError(InputError):
    pass


def verify_sha256(path: Path, expected: str | None, what: str, allow_unpinned: bool = False) -> str:
    found = sha256_file(path)
    if expected is None:
        if not allow_unpinned:
            raise ChecksumError(
                f"{what}.sha256: no checksum pinned for {path} (found {found}); pin it, "
                "or set allow_unpinned: true"
            )
        log.warning("%s: %s is not pinned; observed sha256 %s", what, path, found)
    elif found != expected:
        raise ChecksumError(
            f"{what}: checksum mismatch for {path}: expected sha256 {expected}, found {found}"
        )
    return found


@retry(
    retry=retry_if_exception_type(OSError),
    stop=stop_after_attempt(5),
    wait=wait_exponential(multiplier=2, max=60),
    reraise=True,
)
def download(url: str, dest: Path, timeout_s: float = 120) -> None:
    with atomic_path(dest) as tmp, urllib.request.urlopen(url, timeout=timeout_s) as response:
        tmp.write_bytes(response.read())


def materialise_source(
    source: dict, cache_dir: Path, what: str, archives: dict | None = None
) -> tuple[Path, str]:
    """Return (local path, sha256) of a configured file, fetching it if needed."""
    kind = source["type"]
    expected = source.get("sha256")
    unpinned = bool(source.get("allow_unpinned"))
    if kind == "local":
        path = Path(source["path"])
        if not path.exists():
            raise InputError(f"{what}.path: file not found: {path}")
        return path, verify_sha256(path, expected, what, allow_unpinned=unpinned)
    if kind == "url":
        url = source["url"]
        dest = cache_dir / (expected or "unpinned") / Path(url.split("?")[0]).name
        if not dest.exists():
            log.info("downloading %s", url)
            download(url, dest)
        return dest, verify_sha256(dest, expected, what, allow_unpinned=unpinned)
    if kind == "archive":
        if not archives or source["archive"] not in archives:
            raise InputError(f"{what}.archive: '{source['archive']}' is not an entry of `archives`")
        archive_entry = archives[source["archive"]]
        archive_dir = cache_dir / source["archive"]
        archive, archive_sha = materialise_source(
            archive_entry["source"], archive_dir, f"{what}: archive"
        )
        path = extract_member(
            archive, archive_sha, archive_entry, source["member"], archive_dir, what
        )
        return path, verify_sha256(path, expected, what, allow_unpinned=unpinned)
    raise InputError(f"{what}.type: unknown source type '{kind}'; expected url, local or archive")
