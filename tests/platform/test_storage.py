"""Ray results in a local folder (standing for a shared filesystem) or in an S3-compatible bucket: the
platform names, lists and reads them back alike, through pyarrow's filesystems."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest

from unips.platform import storage
from unips.platform.checkpoint import STATE_FILE, load_state, save_state
from unips.platform.train_loop import newest_readable_state


def test_a_uri_keeps_its_credentials_and_query_through_joins(tmp_path: Path) -> None:
    uri = "s3://key:secret@bucket/results?endpoint_override=127.0.0.1:9000&scheme=http"
    checkpoint = storage.join(uri, "run", "checkpoint_1")
    assert checkpoint == "s3://key:secret@bucket/results/run/checkpoint_1?endpoint_override=127.0.0.1:9000&scheme=http"
    assert storage.name_of(checkpoint) == "checkpoint_1"
    assert storage.parent_of(checkpoint) == storage.join(uri, "run")
    # A URI goes to Ray untouched; a local path becomes absolute, by default ./ray_results.
    assert storage.resolve_storage(uri, tmp_path) == uri
    assert storage.resolve_storage("shared/results", tmp_path) == str(tmp_path / "shared" / "results")
    assert storage.resolve_storage(None, tmp_path) == str(tmp_path / "ray_results")
    assert storage.join(str(tmp_path), "run") == str(tmp_path / "run")


@pytest.mark.parametrize("where", ["folder", "bucket"])
def test_checkpoints_read_back_alike_from_a_folder_and_a_bucket(where: str, tmp_path: Path,
                                                                request: pytest.FixtureRequest) -> None:
    if where == "folder":
        root = str(tmp_path / "shared")
    else:
        root = request.getfixturevalue("s3").uri(f"results-{uuid.uuid4().hex[:8]}")
    run = storage.join(root, "run")
    assert not storage.exists(run) and storage.subfolders(run) == []
    storage.make_dirs(run)
    written = {}
    for step in (1, 2, 3):  # Ray Train's folder names sort by time
        local = save_state(tmp_path / f"local{step}", {"step": step, "weights": [float(step)] * 4})
        written[step] = local.read_bytes()
        storage.write_bytes(storage.join(run, f"checkpoint_2026-12-03_0{step}", STATE_FILE), written[step])
    folders = storage.subfolders(run, "checkpoint_")
    assert [storage.name_of(folder) for folder in folders] == [f"checkpoint_2026-12-03_0{s}" for s in (1, 2, 3)]
    assert storage.is_dir(folders[0]) and not storage.is_dir(storage.join(folders[0], STATE_FILE))
    assert load_state(folders[2])["step"] == 3 and load_state(storage.join(folders[0], STATE_FILE))["step"] == 1

    # A run's folder is not a checkpoint; a missing one is named.
    with pytest.raises(FileNotFoundError, match=re.escape(f"latest: {folders[2]}")):
        load_state(run)
    missing = storage.join(run, "checkpoint_2026-12-03_09", STATE_FILE)
    with pytest.raises(FileNotFoundError, match=re.escape(missing)):
        load_state(missing)

    # The newest cut short (a killed upload): resuming goes back to the one before, naming the file.
    storage.write_bytes(storage.join(folders[2], STATE_FILE), written[3][:1000])
    with pytest.raises(ValueError, match="is not a unips checkpoint"):
        load_state(folders[2])
    state, skipped = newest_readable_state(folders[2])
    assert state["step"] == 2 and skipped == [storage.join(folders[2], STATE_FILE)]
