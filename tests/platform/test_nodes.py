"""Each Ray node reads its own copy of the data: a node without it is named in the error."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import ray

from tests.platform.conftest import tiny_config
from unips.platform.train_loop import data_on_this_node


@ray.remote(num_cpus=0)
def _check_on_a_node(cfg):  # type: ignore[no-untyped-def]
    data_on_this_node(cfg)
    return ray.get_runtime_context().get_node_id()


def test_a_node_without_the_dataset_is_named_with_the_missing_path(local_ray: None, tmp_path: Path) -> None:
    missing = tiny_config(tmp_path, "data.dataset=cityscapes", f"data.root={tmp_path / 'cityscapes'}")
    with pytest.raises(FileNotFoundError) as error:
        ray.get(_check_on_a_node.remote(missing))
    node = ray.get_runtime_context().get_node_id()  # the suite's one node
    assert re.search(rf"on Ray node {node} \(.*\): data\.root {re.escape(str(tmp_path / 'cityscapes'))} "
                     r"\(cityscapes\) does not exist", str(error.value)), str(error.value)
    # The synthetic set counts as there: each node generates it (the same bytes from the same seed).
    assert ray.get(_check_on_a_node.remote(tiny_config(tmp_path))) == node
