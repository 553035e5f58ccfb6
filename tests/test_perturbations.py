import math
from itertools import pairwise

import pytest
import torch
from synthscope.detectors import perturbations as P
from synthscope.detectors.perturbations import (
    SWEEPS,
    BlurJpegAugment,
    Chain,
    Perturbation,
    parse_perturbation,
    reencode,
)


def _images(n=4, c=3, size=32, seed=0):
    """Smooth structure plus fine texture, values strictly inside (0, 1)."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    out = []
    for _ in range(n):
        f = torch.rand(c, 2, generator=g) * 6 + 1
        ph = torch.rand(c, 1, 1, generator=g) * 6
        base = torch.sin(f[:, 0, None, None] * math.pi * xx + ph) * torch.cos(f[:, 1, None, None] * math.pi * yy)
        tex = torch.rand(c, size, size, generator=g) - 0.5
        out.append(0.5 + 0.25 * base + 0.3 * tex)
    return torch.stack(out).clamp(0.02, 0.98)


def _hf_energy(x):
    """Mean squared difference of neighbouring pixels (high-frequency energy)."""
    return ((x[..., 1:, :] - x[..., :-1, :]) ** 2).mean() + ((x[..., :, 1:] - x[..., :, :-1]) ** 2).mean()


def _mad(a, b):
    return (a - b).abs().mean().item()


# ----------------------------------------------------------------------- identity & sweeps


def test_identity_levels_return_input_exactly():
    x = _images()
    identities = [Perturbation("identity"), Perturbation("blur", 0), Perturbation("downscale", 1),
                  Perturbation("crop", 1), Perturbation("noise", 0)]
    for p in identities:
        assert p.is_identity
        y = p(x, seed=3)
        assert y is not x
        assert torch.equal(y, x), p.name
    for name, levels in SWEEPS.items():
        assert levels[0].is_identity, name
        assert torch.equal(levels[0](x, seed=1), x), name
        assert all(not p.is_identity for p in levels[1:]), name
        assert all(not torch.equal(p(x, seed=1), x) for p in levels[1:]), name


def test_sweep_levels_are_the_documented_ones():
    assert [p.strength for p in SWEEPS["jpeg"][1:]] == [100, 90, 75, 60, 45, 30]
    assert [p.strength for p in SWEEPS["blur"]] == [0, 0.5, 1, 1.5, 2, 3]
    assert [p.strength for p in SWEEPS["downscale"]] == [1, 0.75, 0.5, 0.25]
    assert [p.strength for p in SWEEPS["crop"]] == [1, 0.9, 0.75, 0.5]
    assert [p.strength for p in SWEEPS["noise"]] == [0, 0.01, 0.02, 0.05, 0.1]
    social = SWEEPS["social"][1:]
    assert social and all(isinstance(c, Chain) for c in social)
    assert all([p.kind for p in c.perturbations] == ["downscale", "jpeg"] for c in social)


# --------------------------------------------------------------------------------- per kind


def test_jpeg_strength_ordering_range_and_shape():
    x = _images()
    y90, y30 = Perturbation("jpeg", 90)(x), Perturbation("jpeg", 30)(x)
    for y in (y90, y30):
        assert y.shape == x.shape and y.dtype == x.dtype
        assert y.min() >= 0 and y.max() <= 1
    assert 0 < _mad(y90, x) < _mad(y30, x)
    # the whole sweep is monotone in damage
    damage = [_mad(p(x), x) for p in SWEEPS["jpeg"]]
    assert damage[0] == 0
    assert all(a < b for a, b in pairwise(damage[1:])), damage


def test_blur_removes_more_high_frequency_energy_with_larger_sigma():
    x = _images()
    energies = [_hf_energy(p(x)).item() for p in SWEEPS["blur"]]
    assert all(a > b for a, b in pairwise(energies)), energies
    y = Perturbation("blur", 3)(x)
    assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1


def test_blur_works_on_tiny_images():
    x = _images(n=2, size=8)
    y = Perturbation("blur", 3)(x)
    assert y.shape == x.shape and _hf_energy(y) < _hf_energy(x)


def test_downscale_keeps_size_and_loses_detail():
    x = _images()
    prev = _hf_energy(x)
    for p in SWEEPS["downscale"][1:]:
        y = p(x)
        assert y.shape == x.shape
        assert y.min() >= 0 and y.max() <= 1
        e = _hf_energy(y)
        assert e < prev, p.name
        prev = e


def test_crop_keeps_size_and_zooms_into_the_centre():
    x = torch.zeros(1, 1, 32, 32)
    x[..., 8:24, 8:24] = 1.0  # a centred square covering the central half
    y = Perturbation("crop", 0.5)(x)
    assert y.shape == x.shape
    assert y.mean() > 0.9  # the central half now fills the frame
    assert Perturbation("crop", 0.9)(x).mean() > x.mean()


# ------------------------------------------------------------------------------------ noise


def test_noise_is_deterministic_for_a_seed_and_changes_with_the_seed():
    x = _images()
    p = Perturbation("noise", 0.05)
    a, b, c = p(x, seed=7), p(x, seed=7), p(x, seed=8)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    assert a.shape == x.shape and a.min() >= 0 and a.max() <= 1
    assert 0.02 < (a - x).std().item() < 0.08


def test_noise_of_one_image_does_not_depend_on_batch_composition():
    x = _images(n=5)
    p = Perturbation("noise", 0.05)
    keys = ["real/a.png", "real/b.png", "fake/a.png", "fake/b.png", "fake/c.png"]
    full = p(x, seed=1, keys=keys)
    for i in range(5):
        alone = p(x[i : i + 1], seed=1, keys=[keys[i]])
        assert torch.equal(alone[0], full[i])
        assert torch.equal(p(x[i], seed=1, keys=keys[i]), full[i])  # unbatched, scalar key
    sub = p(x[[3, 1]], seed=1, keys=[keys[3], keys[1]])
    assert torch.equal(sub, full[[3, 1]])
    # default keys (pixel digest): same independence without any bookkeeping
    full_default = p(x, seed=1)
    for i in range(5):
        assert torch.equal(p(x[i], seed=1), full_default[i])
    assert torch.equal(p(x.flip(0), seed=1), full_default.flip(0))


def test_real_and_fake_at_the_same_index_do_not_share_noise():
    real, fake = _images(n=3, seed=1), _images(n=3, seed=2)
    p = Perturbation("noise", 0.02)  # small enough that nothing is clipped
    nr, nf = p(real, seed=0) - real, p(fake, seed=0) - fake
    for i in range(3):
        assert not torch.allclose(nr[i], nf[i], atol=1e-4)
    # caller-supplied keys decide the noise: the same key gives the same noise, a distinct one does not
    same = p(fake, seed=0, keys=[0, 1, 2]) - fake
    assert torch.allclose(p(real, seed=0, keys=[0, 1, 2]) - real, same, atol=1e-6)
    other = p(fake, seed=0, keys=["fake/0", "fake/1", "fake/2"]) - fake
    assert not torch.allclose(other, same, atol=1e-4)


def test_noise_levels_share_random_numbers_and_keys_are_validated():
    x = _images(n=2)
    small = Perturbation("noise", 0.01)(x, seed=4, keys=[10, 11]) - x
    large = Perturbation("noise", 0.02)(x, seed=4, keys=[10, 11]) - x
    assert torch.allclose(large, 2 * small, atol=1e-6)
    with pytest.raises(ValueError, match="one key per image"):
        Perturbation("noise", 0.01)(x, keys=[1])


# ----------------------------------------------------------------------------------- chains


def test_chain_applies_in_order_and_has_a_readable_name():
    x = _images()
    down, jpeg = Perturbation("downscale", 0.5), Perturbation("jpeg", 75)
    chain = Chain([down, jpeg])
    assert chain.name == "downscale 0.5 → JPEG 75"
    assert chain.spec == "downscale:0.5+jpeg:75"
    assert torch.equal(chain(x), jpeg(down(x)))
    assert not torch.equal(chain(x), down(jpeg(x)))
    assert Chain([chain, Perturbation("noise", 0.01)]).perturbations[2].kind == "noise"
    # two noise steps in one chain do not repeat the same draw; the first step matches the bare one
    n = Perturbation("noise", 0.02)
    twice = Chain([n, n])(x, seed=2, keys=[0, 1, 2, 3])
    once = n(x, seed=2, keys=[0, 1, 2, 3])
    assert torch.equal(Chain([n])(x, seed=2, keys=[0, 1, 2, 3]), once)
    assert not torch.allclose(twice - once, once - x, atol=1e-4)


# ------------------------------------------------------------------------------------ parse


def test_parse_round_trips_specs_and_names():
    for levels in SWEEPS.values():
        for p in levels:
            assert parse_perturbation(p.spec) == p
            assert parse_perturbation(p.name) == p
    assert parse_perturbation("jpeg:75") == Perturbation("jpeg", 75)
    assert parse_perturbation("blur:1.5") == Perturbation("blur", 1.5)
    c = parse_perturbation("downscale:0.5+jpeg:75")
    assert isinstance(c, Chain) and c == Chain([Perturbation("downscale", 0.5), Perturbation("jpeg", 75)])
    assert parse_perturbation("  JPG : 60 ") == Perturbation("jpeg", 60)


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("sharpen:2", "unknown perturbation kind 'sharpen'"),
        ("jpeg:101", "out of range for jpeg"),
        ("jpeg:0", "out of range for jpeg"),
        ("jpeg:75.5", "out of range for jpeg"),
        ("blur:-1", "out of range for blur"),
        ("downscale:0", "out of range for downscale"),
        ("downscale:2", "out of range for downscale"),
        ("crop:1.5", "out of range for crop"),
        ("noise:abc", "not a number"),
        ("jpeg", "needs a strength"),
        ("downscale:0.5+bogus:1", "unknown perturbation kind 'bogus'"),
        ("", "empty perturbation"),
    ],
)
def test_parse_rejects_bad_input_with_a_helpful_message(text, fragment):
    with pytest.raises(ValueError) as err:
        parse_perturbation(text)
    msg = str(err.value)
    assert fragment in msg
    if text:
        for kind in ("jpeg", "blur", "downscale", "crop", "noise", "identity"):
            assert kind in msg


def test_perturbation_validates_its_own_fields():
    with pytest.raises(ValueError, match="valid kinds"):
        Perturbation("sepia", 1)
    with pytest.raises(ValueError, match=r"\[1, 100\]"):
        Perturbation("jpeg", 150)
    with pytest.raises(ValueError, match="channels"):
        Perturbation("jpeg", 75)(torch.rand(2, 4, 8, 8))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        Perturbation("blur", 1)(torch.rand(1, 3, 8, 8) * 2)


# ------------------------------------------------------------------------------------- grey


def test_grey_images_work_for_every_kind():
    x = _images(n=2, c=1)
    levels = [p for levels in SWEEPS.values() for p in levels[1:]]
    for p in levels:
        y = p(x, seed=0)
        assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1, p.name
        assert not torch.equal(y, x), p.name
    assert Perturbation("jpeg", 50)(x[0]).shape == (1, 32, 32)
    aug = BlurJpegAugment(p_blur=1, p_jpeg=1)(x, torch.Generator().manual_seed(0))
    assert aug.shape == x.shape
    assert torch.equal(reencode(_grid(x), "png"), _grid(x))


# ------------------------------------------------------------------------------ augmentation


def test_blur_jpeg_augment_p0_is_identity_and_p1_changes_every_image():
    x = _images(n=6)
    g = torch.Generator().manual_seed(0)
    assert torch.equal(BlurJpegAugment(p_blur=0, p_jpeg=0)(x, g), x)
    y = BlurJpegAugment(p_blur=1, p_jpeg=1)(x, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1
    assert all(not torch.equal(y[i], x[i]) for i in range(len(x)))
    # JPEG alone at p=1 also touches every image
    yj = BlurJpegAugment(p_blur=0, p_jpeg=1)(x, torch.Generator().manual_seed(0))
    assert all(not torch.equal(yj[i], x[i]) for i in range(len(x)))


def test_blur_jpeg_augment_is_deterministic_per_generator_seed_and_per_image_random():
    x = _images(n=8)
    aug = BlurJpegAugment()
    a = aug(x, torch.Generator().manual_seed(5))
    b = aug(x, torch.Generator().manual_seed(5))
    c = aug(x, torch.Generator().manual_seed(6))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    changed = [not torch.equal(a[i], x[i]) for i in range(len(x))]
    assert any(changed) and not all(changed)  # with p = 0.5 each, some images are left alone (seed 5)


@pytest.mark.parametrize("pillow_only", [False, True], ids=["torchvision", "pillow"])
@pytest.mark.parametrize("channels", [1, 3])
def test_the_jpeg_round_trip_gives_pillows_bytes(channels, pillow_only, monkeypatch, recwarn):
    import io

    from PIL import Image

    from synthscope.images import from_pil, to_pil_list, to_uint8

    if pillow_only:  # a torchvision without its (deprecated) image codecs
        monkeypatch.setattr(P, "encode_jpeg", None)
    x = torch.nn.functional.avg_pool2d(torch.rand(12, channels, 17, 17, generator=torch.Generator().manual_seed(1)),
                                       3, 1, 1)  # odd size, smooth and noisy parts
    for quality in (30, 75, 100):
        expected = []
        for image in to_pil_list(x):
            buffer = io.BytesIO()
            image.save(buffer, format="JPEG", quality=quality)
            with Image.open(buffer) as back:
                expected.append(from_pil(back.convert(image.mode)))
        assert torch.equal(to_uint8(P._jpeg(x, quality)), to_uint8(torch.stack(expected))), quality
    assert not [w for w in recwarn if issubclass(w.category, DeprecationWarning)]  # no notice per call


def test_blur_jpeg_augment_perturbs_each_image_as_if_alone():
    x = _images(n=16)
    aug = BlurJpegAugment(p_blur=0.5, p_jpeg=0.5)
    batch = aug(x, torch.Generator().manual_seed(2))
    u = torch.rand(16, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    for i in range(16):  # the draws are per image: image i sees u[i] whatever the others drew
        one = x[i:i + 1]
        if u[i, 0] < 0.5:
            one = P._blur(one, 3.0 * u[i, 1].item())
        if u[i, 2] < 0.5:
            one = P._jpeg(one, min(100, 30 + int(u[i, 3].item() * 71)))
        assert torch.equal(batch[i], one[0]), i


def test_blur_jpeg_augment_validates_arguments():
    for kwargs in ({"p_blur": -0.1}, {"p_jpeg": 1.5}, {"sigma": (2, 1)}, {"quality": (0, 100)},
                   {"quality": (50, 40)}):
        with pytest.raises(ValueError):
            BlurJpegAugment(**kwargs)


# --------------------------------------------------------------------------------- reencode


def _grid(x):
    return torch.round(x * 255) / 255  # on the 8-bit grid, like a decoded image file


def test_reencode_png_is_lossless_and_jpeg_is_not():
    x = _grid(_images())
    png = reencode(x, "png")
    assert png is not x and torch.equal(png, x)
    assert torch.equal(reencode(x[0], "png"), x[0])
    j = reencode(x, "jpeg", quality=95)
    assert j.shape == x.shape and not torch.equal(j, x)
    assert _mad(j, x) < _mad(reencode(x, "jpeg", quality=30), x)
    with pytest.raises(ValueError, match="png"):
        reencode(x, "gif")
    with pytest.raises(ValueError, match="quality"):
        reencode(x, "jpeg", quality=0)


def test_module_exports():
    assert set(P.__all__) >= {"Perturbation", "Chain", "SWEEPS", "parse_perturbation", "BlurJpegAugment", "reencode"}
