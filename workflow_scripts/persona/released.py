"""Rule released_adapter: a released persona adapter (Open Character Training's
`maius/<model>-personas`, one subfolder per persona) fetched from the Hugging Face
Hub at a pinned revision into results/, where every later job reads it offline.

The rule carries `internet=1` (a serial/login node on clusters). Where the Hub is
unreachable (HF_HUB_OFFLINE=1, compute nodes) the Hugging Face cache is used, and
a missing entry is one clear error naming the repository and what to run."""

import logging
import os
import shutil
from pathlib import Path

from workflow_scripts.core.hashing import sha256_file, weights_hash
from workflow_scripts.core.io_utils import InputError, atomic_dir, read_json, write_json_atomic

log = logging.getLogger(__name__)


RECORD_FILE = "released_adapter.json"


ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin")


def describe(repo: str, subfolder: str | None, revision: str) -> str:
    return f"{repo}{'/' + subfolder if subfolder else ''}@{revision}"


def _snapshot(repo: str, subfolder: str | None, revision: str) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    what = describe(repo, subfolder, revision)
    prefix = f"{subfolder}/" if subfolder else ""
    try:
        return Path(
            snapshot_download(
                repo_id=repo, revision=revision, allow_patterns=[prefix + f for f in ADAPTER_FILES]
            )
        )
    except GatedRepoError:
        raise InputError(
            f"released adapter {what}: the repository is gated; accept its terms on huggingface.co "
            "and export HF_TOKEN before running the released_adapter rule"
        ) from None
    except RevisionNotFoundError:
        raise InputError(f"released adapter {what}: revision '{revision}' does not exist") from None
    except RepositoryNotFoundError:
        raise InputError(
            f"released adapter {what}: repository not found (or private: set HF_TOKEN)"
        ) from None
    except LocalEntryNotFoundError:
        raise _not_cached(repo, subfolder, revision) from None


def _offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _not_cached(repo: str, subfolder: str | None, revision: str) -> InputError:
    from huggingface_hub import constants

    offline = os.environ.get("HF_HUB_OFFLINE", "")
    include = f" --include '{subfolder}/*'" if subfolder else ""
    return InputError(
        f"released adapter {describe(repo, subfolder, revision)}: not in the Hugging Face cache "
        f"({constants.HF_HUB_CACHE}) and the Hub is unreachable"
        f"{' (HF_HUB_OFFLINE=' + offline + ')' if offline else ''}; run the released_adapter rule "
        "where there is internet (it has resources internet=1), or fetch it there with "
        f"`hf download {repo} --revision {revision}{include}`"
    )


def fetch_released_adapter(
    repo: str, subfolder: str | None, revision: str, out_dir: str | Path
) -> dict:
    """Copy the adapter files of repo/subfolder@revision to `out_dir` with a record of
    where they came from (resolved commit, file hashes, LoRA shape)."""
    what = describe(repo, subfolder, revision)
    snapshot = _snapshot(repo, subfolder, revision)
    source = snapshot / subfolder if subfolder else snapshot
    if not (source / "adapter_config.json").exists():
        if _offline():
            raise _not_cached(repo, subfolder, revision)
        raise InputError(
            f"released adapter {what}: no adapter_config.json in the repository folder"
        )
    files = [source / f for f in ADAPTER_FILES[1:] if (source / f).exists()]
    if not files:
        raise InputError(f"released adapter {what}: no adapter_model.safetensors or .bin")
    config = read_json(source / "adapter_config.json")
    with atomic_dir(out_dir) as tmp:
        for f in [source / "adapter_config.json", *files]:
            shutil.copyfile(f, tmp / f.name)
        record = {
            "repo": repo,
            "subfolder": subfolder,
            "revision": revision,
            "resolved_commit": snapshot.name,
            "files": {f.name: sha256_file(tmp / f.name) for f in sorted(tmp.iterdir())},
            "weights_sha256": weights_hash(tmp),
            "lora": {
                key: config.get(key)
                for key in (
                    "r",
                    "lora_alpha",
                    "use_rslora",
                    "target_modules",
                    "base_model_name_or_path",
                )
            },
        }
        write_json_atomic(tmp / RECORD_FILE, record)
    if record["resolved_commit"] != revision:
        log.warning(
            "released adapter %s resolved to commit %s: pin it in the config", what, snapshot.name
        )
    return record
