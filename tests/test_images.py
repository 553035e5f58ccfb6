"""Images crossing the API: float <-> 8-bit <-> Pillow, exact on the 8-bit grid."""

import pytest
import torch

from synthscope.images import from_pil, to_float, to_pil, to_pil_list, to_uint8


def test_every_8_bit_level_survives_the_round_trip():
    levels = torch.arange(256, dtype=torch.uint8).reshape(1, 16, 16)
    assert torch.equal(to_uint8(to_float(levels)), levels)
    assert torch.equal(from_pil(to_pil(levels)), to_float(levels))


def test_float_rounds_to_the_nearest_level_computed_exactly():
    # 0.5 / 255 * 255 is a tie (rounds to even: 0); just above it rounds up; out of range is clamped.
    x = torch.tensor([-0.2, 0.4999 / 255, 0.5001 / 255, 1.4999 / 255, 254.5001 / 255, 1.3], dtype=torch.float64)
    assert to_uint8(x).tolist() == [0, 0, 1, 1, 255, 255]
    # a float32 whose product with 255, rounded to float32, lands on 114.5 and so on 114
    y = torch.tensor([0.4490196108818054], dtype=torch.float32)
    assert y.mul(255).round().item() == 114 and to_uint8(y).item() == 115


@pytest.mark.parametrize("channels, mode", [(1, "L"), (3, "RGB"), (4, "RGBA")])
def test_pillow_modes_follow_the_channels(channels, mode):
    batch = torch.rand(2, channels, 5, 7)
    pictures = to_pil_list(batch)
    assert [p.mode for p in pictures] == [mode, mode] and pictures[0].size == (7, 5)
    assert torch.equal(from_pil(pictures[1]), to_float(to_uint8(batch[1])))


def test_a_wrong_shape_is_refused_with_what_was_given():
    with pytest.raises(ValueError, match=r"got \(2, 5, 7\)"):
        to_pil(torch.rand(2, 5, 7))
