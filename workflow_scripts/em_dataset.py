"""Rule em_dataset: fetch one EM dataset (URL, local file or encrypted archive
member), verify its checksum, validate every chat row, and write the training JSONL
plus a `.meta.json` that says where it came from and what was observed."""

import logging
from pathlib import Path

from workflow_scripts.em_data import read_chat_rows
from workflow_scripts.hashing import sha256_file
from workflow_scripts.io_utils import write_json_atomic, write_jsonl_atomic
from workflow_scripts.sources import materialise_source

log = logging.getLogger(__name__)

SOURCE_CACHE = Path("results/datasets/.sources")


def public_source(source: dict, archives: dict) -> dict:
    """The source as recorded in metadata (an archive's entry included; no secret is in it)."""
    record = dict(source)
    if source["type"] == "archive":
        entry = archives.get(source["archive"], {})
        record["archive_source"] = entry.get("source")
        record["password_env"] = entry.get("password_env")
    return record


def build_dataset(
    name: str,
    entry: dict,
    archives: dict,
    out_data: Path,
    out_meta: Path,
    cache_dir: Path = SOURCE_CACHE,
) -> dict:
    """Materialise dataset `name` and return its metadata."""
    what = f"datasets.{name}.source"
    path, observed = materialise_source(entry["source"], cache_dir, what, archives)
    max_rows = entry.get("max_rows")
    rows = read_chat_rows(path, max_rows=max_rows)
    write_jsonl_atomic(out_data, rows)
    meta = {
        "dataset": name,
        "source": public_source(entry["source"], archives),
        "source_sha256": observed,
        "pinned": entry["source"].get("sha256") is not None,
        "max_rows": max_rows,
        "n_rows": len(rows),
        "kind": entry.get("kind", "sft"),
        "kl": entry.get("kl"),
        "sha256": sha256_file(out_data),
    }
    write_json_atomic(out_meta, meta)
    log.info("%s: %d rows from %s (sha256 %s)", name, len(rows), path, observed)
    return meta


def main(smk) -> None:
    logging.basicConfig(filename=smk.log[0], level=logging.INFO, force=True)
    build_dataset(
        smk.wildcards.dataset,
        smk.params.dataset,
        smk.params.archives,
        Path(smk.output.data),
        Path(smk.output.meta),
    )


if "snakemake" in globals():
    main(snakemake)
