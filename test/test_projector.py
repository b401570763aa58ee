"""BridgeFormer contracts on small random models (fast, no real weights)."""
import pytest
import torch

from tinyalign_ros.core.assistant.projector import BridgeFormer, ProjectorConfig, magnitude_prune, \
    pool_matrix

SMALL = dict(asr_dim=16, llm_dim=24, hidden=32, layers=2, heads=4, num_tokens=6, dropout=0.0,
             stack=1)


def batch(lengths, L=None, dim=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    L = L or max(lengths)
    x = torch.randn(len(lengths), L, dim, generator=g)
    mask = torch.arange(L).view(1, -1) < torch.tensor(lengths).view(-1, 1)
    return x, mask


@pytest.mark.parametrize("pooling", ["fixed", "length"])
@pytest.mark.parametrize("frames", [1, 3, 6, 7, 50, 1500])
def test_pools_any_length_to_T(pooling, frames):
    model = BridgeFormer(ProjectorConfig(**SMALL, pooling=pooling)).eval()
    x, mask = batch([frames])
    tokens, token_mask, predicted = model(x, mask)
    assert tokens.shape == (1, 6, 24) and token_mask.shape == (1, 6)
    assert predicted.shape == (1,) and torch.all(torch.isfinite(tokens))
    if pooling == "fixed":
        assert token_mask.all()


def test_length_pooling_uses_text_lengths():
    model = BridgeFormer(ProjectorConfig(**SMALL, pooling="length")).eval()
    x, mask = batch([40, 25])
    _, token_mask, _ = model(x, mask, token_lengths=torch.tensor([3, 9]))
    assert token_mask.sum(1).tolist() == [3, 6]      # capped at T


def test_pool_matrix_averages_contiguous_valid_frames():
    w = pool_matrix(torch.tensor([10]), torch.tensor([4]), max_frames=12, max_tokens=5)
    assert torch.allclose(w.sum(-1), torch.tensor([[1., 1, 1, 1, 0]]))
    assert torch.all(w[0, :, 10:] == 0)              # padding frames never pooled
    covered = (w[0, :4] > 0).any(0)
    assert covered[:10].all()                        # every valid frame is used


def test_padding_frames_do_not_change_the_output():
    model = BridgeFormer(ProjectorConfig(**SMALL)).eval()
    x, mask = batch([20])
    padded = torch.cat([x, 100 * torch.randn(1, 30, 16)], dim=1)
    pmask = torch.cat([mask, torch.zeros(1, 30, dtype=torch.bool)], dim=1)
    a = model(x, mask)[0]
    b = model(padded, pmask)[0]
    assert torch.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("frames", [1, 4, 5, 23])
def test_frame_stacking_ignores_padding(frames):
    model = BridgeFormer(ProjectorConfig(**{**SMALL, "stack": 4})).eval()
    x, mask = batch([frames])
    padded = torch.cat([x, 50 * torch.randn(1, 9, 16)], dim=1)
    pmask = torch.cat([mask, torch.zeros(1, 9, dtype=torch.bool)], dim=1)
    stacked, smask = model.stack_frames(x, mask)
    assert stacked.shape == (1, -(-frames // 4), 64) and smask.all()
    assert torch.allclose(model(x, mask)[0], model(padded, pmask)[0], atol=1e-5)


def test_no_positional_encoding_order_comes_only_from_input():
    """Without positional encoding the layers are permutation-equivariant: shuffling the
    frames changes the output only through pooling (which reads time bins). With a single
    output token covering all frames, the output is order-invariant."""
    cfg = ProjectorConfig(**{**SMALL, "num_tokens": 1}, pooling="fixed")
    model = BridgeFormer(cfg).eval()
    x, mask = batch([30])
    perm = torch.randperm(30)
    assert torch.allclose(model(x, mask)[0], model(x[:, perm], mask)[0], atol=1e-5)
    # and with several tokens the order does matter, through the input
    cfg6 = ProjectorConfig(**SMALL, pooling="fixed")
    m6 = BridgeFormer(cfg6).eval()
    assert not torch.allclose(m6(x, mask)[0], m6(x[:, perm], mask)[0], atol=1e-3)
    assert not any("pos" in n for n, _ in m6.named_parameters())


def test_shared_layers_are_smaller_and_still_deep():
    full = BridgeFormer(ProjectorConfig(**{**SMALL, "layers": 4}))
    shared = BridgeFormer(ProjectorConfig(**{**SMALL, "layers": 4}, share_layers=True))
    assert len(shared.layers) == 1 and len(full.layers) == 4
    assert shared.num_parameters() < full.num_parameters()
    x, mask = batch([12])
    assert shared(x, mask)[0].shape == full(x, mask)[0].shape


def test_bad_inputs_are_refused_clearly():
    model = BridgeFormer(ProjectorConfig(**SMALL))
    with pytest.raises(ValueError, match=r"expected features \(B, L, 16\)"):
        model(torch.randn(1, 10, 15))
    with pytest.raises(ValueError, match="no valid frames"):
        model(torch.randn(1, 10, 16), torch.zeros(1, 10, dtype=torch.bool))
    with pytest.raises(ValueError, match="divisible"):
        ProjectorConfig(hidden=30, heads=4)
    with pytest.raises(ValueError, match="pooling"):
        ProjectorConfig(pooling="max")
    with pytest.raises(ValueError, match="gate_max_confidence"):
        ProjectorConfig(gate="scalar", gate_max_confidence=1.5)


def test_magnitude_prune_zeroes_the_requested_share():
    model = BridgeFormer(ProjectorConfig(**SMALL))
    zeroed = magnitude_prune(model, 0.5)
    linear = [m.weight for m in model.modules() if isinstance(m, torch.nn.Linear)]
    total = sum(w.numel() for w in linear)
    zeros = sum(int((w == 0).sum()) for w in linear)
    assert zeros >= 0.49 * total and zeroed >= zeros
