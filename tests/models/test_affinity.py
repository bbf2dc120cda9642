"""The efficient affinity product equals the naive one and never forms the n x n matrix."""

from __future__ import annotations

import pytest
import torch

from unips.models.affinity import MASS_FLOOR, AffinityHead, AffinityScale, affinity_product


def naive_affinity_product(
    psi: torch.Tensor,
    q0: torch.Tensor,
    q1: torch.Tensor,
    scale: AffinityScale = "pixels",
    centre: bool = False,
    gain: torch.Tensor | float = 1.0,
    support: torch.Tensor | None = None,
) -> torch.Tensor:
    """The reference: forms the ``(n, n)`` affinity matrix. Same arguments as :func:`affinity_product`."""
    n = psi.shape[1]
    affinity = q1.T @ q0  # (n, n): A_ij = phi1(Q)_i . phi0(Q)_j
    if centre:  # phi1_i . (phi0_j - mean_l phi0_l) = A_ij - mean_l A_il
        affinity = affinity - affinity.mean(dim=1, keepdim=True)
    correction = (affinity @ psi.T).T  # (K, n)
    if scale == "pixels":
        correction = correction / n
    elif scale == "mass":
        correction = correction / psi.sum(dim=1, keepdim=True).clamp(min=MASS_FLOOR)
    if support is not None:
        correction = correction * support
    return psi + gain * correction


@pytest.mark.parametrize(("n", "channels", "k"), [(1, 1, 1), (37, 5, 1), (211, 16, 7), (1009, 128, 153), (4096, 3, 1)])
@pytest.mark.parametrize("scale", ["pixels", "mass", "none"])
@pytest.mark.parametrize("centre", [False, True])
@pytest.mark.parametrize("gain", [1.0, 0.37, "tensor"])
@pytest.mark.parametrize("boxed", [False, True])
def test_efficient_product_equals_the_naive_one(
    n: int, channels: int, k: int, scale: str, centre: bool, gain: float | str, boxed: bool
) -> None:
    generator = torch.Generator().manual_seed(n + k)
    psi = torch.rand(k, n, generator=generator)
    q0 = torch.rand(channels, n, generator=generator)
    q1 = torch.rand(channels, n, generator=generator)
    g = torch.tensor(-1.7, dtype=torch.float64) if gain == "tensor" else gain
    support = torch.rand(k, n, generator=generator).double().round() if boxed else None
    # Both in double: the check is that the two orders of the product are the same algebra
    # (centring cancels large terms, which float32 would blur).
    psi, q0, q1 = psi.double(), q0.double(), q1.double()
    fast = affinity_product(psi, q0, q1, scale, centre, g, support)  # type: ignore[arg-type]
    reference = naive_affinity_product(psi, q0, q1, scale, centre, g, support)  # type: ignore[arg-type]
    assert fast.shape == (k, n)
    torch.testing.assert_close(fast, reference, rtol=1e-9, atol=1e-9)


def test_centred_affinity_adds_no_global_boost() -> None:
    """Centred, every row of A sums to zero: a constant Psi channel gets no correction at all,
    while the uncentred ReLU form adds (about) the channel's image mean times a positive constant."""
    generator = torch.Generator().manual_seed(3)
    n, channels = 500, 8
    psi = torch.stack([torch.full((n,), 0.8), torch.rand(n, generator=generator)])
    q0 = torch.rand(channels, n, generator=generator) + 1.0  # ReLU outputs with a large constant part
    q1 = torch.rand(channels, n, generator=generator) + 1.0
    centred = affinity_product(psi, q0, q1, centre=True)
    torch.testing.assert_close(centred[0], psi[0], rtol=0, atol=1e-5)
    plain = affinity_product(psi, q0, q1, centre=False)
    assert bool((plain[0] - psi[0] > 0.8).all())


def test_zero_gain_head_starts_from_the_potential_and_learns_its_gain() -> None:
    torch.manual_seed(0)
    head = AffinityHead(in_channels=8, decoder_channels=8, channels=6, centre=True, learn_gain=True)
    q, psi = torch.randn(6, 5, 7), torch.rand(4, 5, 7)
    p = head(q, psi)
    torch.testing.assert_close(p, psi)  # g = 0 at initialisation: P = Psi
    target = torch.randint(0, 4, (5, 7))
    torch.nn.functional.cross_entropy(p[None], target[None]).backward()
    assert head.gain.grad is not None and float(head.gain.grad.abs()) > 0
    assert float(head.phi0.weight.grad.abs().sum()) == 0  # g = 0 hides phi until the gain moves


def test_identity_activation_keeps_negative_affinities() -> None:
    torch.manual_seed(0)
    head = AffinityHead(in_channels=8, decoder_channels=8, channels=6, activation="identity", scale="pixels",
                        centre=False, learn_gain=False)
    q, psi = torch.randn(6, 5, 7), torch.rand(4, 5, 7)
    q0 = head.phi0(q[None])[0].reshape(6, -1)
    q1 = head.phi1(q[None])[0].reshape(6, -1)
    assert bool((q0 < 0).any())
    expected = naive_affinity_product(psi.reshape(4, -1), q0, q1).reshape(4, 5, 7)
    torch.testing.assert_close(head(q, psi), expected, rtol=1e-5, atol=1e-6)


def test_product_at_a_size_where_the_naive_matrix_could_not_exist() -> None:
    """n = 300,000: the n x n matrix would need 360 GB; the efficient product needs a few MB."""
    n, channels, k = 300_000, 4, 3
    psi, q0, q1 = torch.rand(k, n), torch.rand(channels, n), torch.rand(channels, n)
    out = affinity_product(psi, q0, q1, scale="pixels")
    # Closed form for a check: with normalisation, P = Psi + (q1^T (q0 Psi^T)) / n.
    expected = psi + (q1.double().T @ (q0.double() @ psi.double().T)).T / n
    torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=1e-9)


def test_head_applies_phi_then_the_product() -> None:
    torch.manual_seed(0)
    head = AffinityHead(in_channels=8, decoder_channels=8, channels=6, scale="pixels", centre=False,
                        learn_gain=False)
    q, psi = torch.randn(6, 5, 7), torch.rand(4, 5, 7)
    p = head(q, psi)
    q0 = torch.relu(head.phi0(q[None]))[0].reshape(6, -1)  # the 1x1 convolutions, as convolutions
    q1 = torch.relu(head.phi1(q[None]))[0].reshape(6, -1)
    expected = naive_affinity_product(psi.reshape(4, -1), q0, q1).reshape(4, 5, 7)
    torch.testing.assert_close(p, expected, rtol=1e-5, atol=1e-6)


def test_mass_scaling_revises_a_small_and_a_large_segment_alike() -> None:
    """With "mass" scaling a channel's correction is its mean feature seen from pixel i, not its sum:
    two channels over regions of the same features get the same correction whatever their areas."""
    n, channels = 400, 3
    q = torch.zeros(channels, n)
    q[0, :] = 1.0  # every pixel has the same features
    psi = torch.zeros(2, n)
    psi[0, :20], psi[1, 20:] = 0.5, 0.5  # a small segment and a large one
    q0, q1 = q.clone(), q.clone()
    by_mass = affinity_product(psi, q0, q1, scale="mass") - psi
    torch.testing.assert_close(by_mass[0], by_mass[1])
    by_pixels = affinity_product(psi, q0, q1, scale="pixels") - psi
    assert float(by_pixels[1, 0]) > 10 * float(by_pixels[0, 0])  # 1/n: the large segment's boost is 19x


def test_box_support_revises_a_detection_only_inside_its_box() -> None:
    """Two look-alike instances: with the whole image as support each channel gains on the other's
    pixels; limited to its box, a detection's channel stays exactly Psi (zero) outside it, while a
    stuff channel is still revised everywhere."""
    from unips.models.panoptic_head import PanopticHead

    torch.manual_seed(0)
    height, width = 8, 16
    semantic = torch.full((3, height, width), 1 / 3)  # classes: 0 stuff, 1 and 2 things
    detections = {"boxes": torch.tensor([[0.0, 0.0, 16.0, 32.0], [40.0, 0.0, 64.0, 32.0]]),  # image pixels
                  "scores": torch.tensor([0.9, 0.8]), "labels": torch.tensor([1, 1])}
    q = torch.randn(6, height, width)
    results = {}
    for support in ("image", "box"):
        affinity = AffinityHead(in_channels=8, decoder_channels=8, channels=6, scale="mass", centre=True,
                                learn_gain=False, support=support)
        torch.nn.init.eye_(affinity.phi0.weight.view(6, 6))
        torch.nn.init.eye_(affinity.phi1.weight.view(6, 6))
        torch.nn.init.zeros_(affinity.phi0.bias)
        torch.nn.init.zeros_(affinity.phi1.bias)
        head = PanopticHead(stuff_classes=[0], variant="B", affinity=affinity, stride=4)
        psi, p = head(semantic, detections, q=q)
        results[support] = (psi, p)
    psi, boxed = results["box"]
    _, everywhere = results["image"]
    outside_first = torch.ones(height, width, dtype=torch.bool)
    outside_first[:, :4] = False  # the first box covers frame columns 0-3
    torch.testing.assert_close(boxed[1][outside_first], torch.zeros(int(outside_first.sum())))
    assert float((everywhere[1][outside_first] - psi[1][outside_first]).abs().max().detach()) > 1e-3
    torch.testing.assert_close(boxed[1][~outside_first], everywhere[1][~outside_first])  # inside: the same
    torch.testing.assert_close(boxed[0], everywhere[0])  # stuff: the whole image either way
