"""The efficient affinity product equals the naive one and never forms the n x n matrix."""

from __future__ import annotations

import pytest
import torch

from unips.models.affinity import AffinityHead, affinity_product, naive_affinity_product


@pytest.mark.parametrize(("n", "channels", "k"), [(1, 1, 1), (37, 5, 1), (211, 16, 7), (1009, 128, 153), (4096, 3, 1)])
@pytest.mark.parametrize("normalize", [True, False])
def test_efficient_product_equals_the_naive_one(n: int, channels: int, k: int, normalize: bool) -> None:
    generator = torch.Generator().manual_seed(n + k)
    psi = torch.rand(k, n, generator=generator)
    q0 = torch.rand(channels, n, generator=generator)
    q1 = torch.rand(channels, n, generator=generator)
    fast = affinity_product(psi, q0, q1, normalize)
    reference = naive_affinity_product(psi.double(), q0.double(), q1.double(), normalize)
    assert fast.shape == (k, n)
    torch.testing.assert_close(fast.double(), reference, rtol=1e-5, atol=1e-12)


def test_product_at_a_size_where_the_naive_matrix_could_not_exist() -> None:
    """n = 300,000: the n x n matrix would need 360 GB; the efficient product needs a few MB."""
    n, channels, k = 300_000, 4, 3
    psi, q0, q1 = torch.rand(k, n), torch.rand(channels, n), torch.rand(channels, n)
    out = affinity_product(psi, q0, q1, normalize=True)
    # Closed form for a check: with normalisation, P = Psi + (q1^T (q0 Psi^T)) / n.
    expected = psi + (q1.double().T @ (q0.double() @ psi.double().T)).T / n
    torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=1e-9)


def test_head_applies_phi_then_the_product() -> None:
    torch.manual_seed(0)
    head = AffinityHead(in_channels=8, decoder_channels=8, channels=6)
    q, psi = torch.randn(6, 5, 7), torch.rand(4, 5, 7)
    p = head(q, psi)
    q0 = torch.relu(head.phi0(q[None]))[0].reshape(6, -1)  # the 1x1 convolutions, as convolutions
    q1 = torch.relu(head.phi1(q[None]))[0].reshape(6, -1)
    expected = naive_affinity_product(psi.reshape(4, -1), q0, q1).reshape(4, 5, 7)
    torch.testing.assert_close(p, expected, rtol=1e-5, atol=1e-6)
