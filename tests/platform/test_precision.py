"""The GPU switches, exercised on the CPU: mixed precision (bfloat16, float16 with a loss scaler) and
channels-last memory format."""

from __future__ import annotations

import pytest
import torch

from unips.config import load_config
from unips.platform.train_loop import AMP_DTYPES, build_trainee, train_step

SMALL = ["model.backbone.fpn_channels=16", "model.semantic.channels=16", "model.panoptic.affinity_channels=8",
         "model.detector.box_head_dim=32", "model.detector.mask_head_channels=8", "model.backbone.freeze_at=0"]


def _one_step(batch, *overrides: str):  # type: ignore[no-untyped-def]
    """One training step of the small network: the trainee, its total loss and the dtype and memory format
    of the first convolution's output."""
    categories, (images, targets) = batch
    cfg = load_config("smoke", [*SMALL, *overrides])
    trainee = build_trainee(cfg, categories, torch.device("cpu"))
    seen = {}
    stem = trainee.model.backbone.body.conv1

    def record(module: torch.nn.Module, inputs: object, output: torch.Tensor) -> None:
        seen.update(dtype=output.dtype, channels_last=output.is_contiguous(memory_format=torch.channels_last)
                    and not output.is_contiguous())

    stem.register_forward_hook(record)
    torch.manual_seed(1)
    total, _ = train_step(trainee.model, trainee.optimizer, trainee.scheduler, trainee.scaler, images, targets,
                          step=1, amp=AMP_DTYPES[cfg.optim.amp])
    return trainee, float(total), seen


@pytest.mark.parametrize(("amp", "dtype", "scaled"), [("bf16", torch.bfloat16, False), ("fp16", torch.float16, True)])
def test_mixed_precision_computes_in_half_and_keeps_float32_weights(  # type: ignore[no-untyped-def]
    batch, amp: str, dtype: torch.dtype, scaled: bool
) -> None:
    _, reference, seen = _one_step(batch)
    assert seen["dtype"] == torch.float32
    trainee, total, seen = _one_step(batch, f"optim.amp={amp}")
    assert seen["dtype"] == dtype  # convolutions ran in half precision
    assert trainee.scaler.is_enabled() == scaled  # a loss scaler for float16 only
    assert all(p.dtype == torch.float32 for p in trainee.model.parameters())  # the weights stay float32
    assert abs(total - reference) < 0.05 * abs(reference), (total, reference)  # the same losses, roughly


def test_channels_last_keeps_activations_nhwc_and_the_losses(batch) -> None:  # type: ignore[no-untyped-def]
    _, reference, _ = _one_step(batch)
    trainee, total, seen = _one_step(batch, "optim.channels_last=true")
    conv = trainee.model.backbone.body.conv1.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    assert seen["channels_last"]
    assert total == pytest.approx(reference, rel=1e-4)


def test_amp_of_older_configs_reads_as_float16_or_off() -> None:
    assert load_config("smoke", ["optim.amp=true"]).optim.amp == "fp16"
    assert load_config("smoke", ["optim.amp=false"]).optim.amp == "off"
    with pytest.raises(Exception, match="optim.amp"):
        load_config("smoke", ["optim.amp=fp8"])
