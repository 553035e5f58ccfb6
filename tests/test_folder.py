"""Reading folders of user images: every common mode and format, bad files, limits."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from synthscope.generators.data import load_data
from synthscope.generators.folder import (
    DEFAULT_MAX_PIXELS,
    IMAGE_EXTENSIONS,
    ImageTooLargeError,
    UnreadableImageError,
    _decode,
    find_images,
    fit_square,
    load_folder,
    open_image,
    read_folder,
)

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


def px(image: Image.Image, x: int, y: int) -> tuple[int, ...]:
    return tuple(int(v) for v in np.asarray(image)[y, x])


def stored(path, attr: str = "mode"):
    with Image.open(path) as img:
        return getattr(img, attr)


def close(a, b, tol: int = 6) -> bool:
    return all(abs(int(u) - int(v)) <= tol for u, v in zip(a, b))


# --------------------------------------------------------------------------- modes


def test_rgba_composited_on_white(tmp_path):
    arr = np.zeros((10, 20, 4), np.uint8)  # left half: transparent *black* pixels
    arr[:, 10:] = (255, 0, 0, 255)  # right half: opaque red
    arr[0, 0] = (0, 0, 255, 128)  # one half-transparent blue pixel
    Image.fromarray(arr, "RGBA").save(tmp_path / "a.png")
    out = open_image(tmp_path / "a.png")
    assert out.mode == "RGB" and out.size == (20, 10)
    assert px(out, 5, 5) == WHITE
    assert px(out, 15, 5) == RED
    assert close(px(out, 0, 0), (127, 127, 255), tol=2)


def test_la_and_grey_modes(tmp_path):
    la = np.zeros((8, 8, 2), np.uint8)
    la[:, :4] = (0, 0)  # transparent
    la[:, 4:] = (60, 255)
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    out = open_image(tmp_path / "la.png")
    assert px(out, 1, 1) == WHITE and px(out, 6, 1) == (60, 60, 60)

    Image.new("L", (6, 4), 77).save(tmp_path / "l.png")
    out = open_image(tmp_path / "l.png")
    assert out.mode == "RGB" and px(out, 2, 2) == (77, 77, 77)
    assert open_image(tmp_path / "l.png", mode="L").mode == "L"

    bits = Image.new("1", (6, 4), 0)
    bits.putpixel((3, 2), 1)
    bits.save(tmp_path / "b.png")
    out = open_image(tmp_path / "b.png")
    assert px(out, 3, 2) == WHITE and px(out, 0, 0) == (0, 0, 0)


def test_palette_with_transparency(tmp_path):
    img = Image.new("P", (8, 8), 0)
    img.putpalette([0, 0, 0, 0, 200, 0] + [0] * 762)  # index 0 black, index 1 green
    for x in range(4, 8):
        for y in range(8):
            img.putpixel((x, y), 1)
    img.info["transparency"] = 0
    img.save(tmp_path / "p.png", transparency=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Pillow's "palette with transparency" warning must not fire
        out = open_image(tmp_path / "p.png")
    assert px(out, 1, 1) == WHITE
    assert px(out, 6, 1) == (0, 200, 0)


def test_16bit_gradient_scaled_not_clipped(tmp_path):
    gradient = np.tile(np.linspace(0, 65535, 256).round().astype(np.uint16), (4, 1))
    Image.fromarray(gradient).save(tmp_path / "g16.png")
    assert stored(tmp_path / "g16.png").startswith("I")
    row = np.asarray(open_image(tmp_path / "g16.png"))[0, :, 0].astype(int)
    assert row[0] == 0 and row[-1] == 255
    assert abs(row[128] - 128) <= 1  # half of 65535 is half of 255, not saturated white
    assert np.all(np.diff(row) >= 0) and (row == 255).sum() <= 2
    assert np.abs(row - np.arange(256)).max() <= 1


def test_32bit_int_and_float_tiff(tmp_path):
    ints = np.tile(np.array([0, 32768, 65535], np.int32), (2, 1))
    Image.fromarray(ints, "I").save(tmp_path / "i.tif")
    row = np.asarray(open_image(tmp_path / "i.tif"))[0, :, 0]
    assert list(row) == [0, 128, 255]

    floats = np.tile(np.array([0.0, 0.5, 1.0], np.float32), (2, 1))
    Image.fromarray(floats, "F").save(tmp_path / "f.tif")
    row = np.asarray(open_image(tmp_path / "f.tif"))[0, :, 0]
    assert list(row) == [0, 128, 255]


def test_cmyk_jpeg(tmp_path):
    Image.new("CMYK", (16, 16), (255, 0, 0, 0)).save(tmp_path / "c.jpg", quality=95)  # pure cyan
    assert stored(tmp_path / "c.jpg") == "CMYK"
    out = open_image(tmp_path / "c.jpg")
    assert out.mode == "RGB" and close(px(out, 8, 8), (0, 255, 255), tol=8)


def test_exif_orientation_applied(tmp_path):
    # Stored 40 wide x 20 high, red block in the stored top-left corner. Orientation 6 means
    # "rotate 90 degrees clockwise to display": upright it is 20 x 40, the block top-right.
    arr = np.full((20, 40, 3), 255, np.uint8)
    arr[:6, :6] = RED
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6
    img.save(tmp_path / "rot.jpg", exif=exif, quality=95)
    out = open_image(tmp_path / "rot.jpg")
    assert out.size == (20, 40)
    assert close(px(out, 17, 2), RED, tol=40)
    assert close(px(out, 2, 2), WHITE, tol=20)
    data = load_folder(tmp_path, size=8)
    assert (data.attributes.loc[0, "width"], data.attributes.loc[0, "height"]) == (20, 40)


@pytest.mark.parametrize("ext", ["webp", "bmp", "tif", "tiff", "jpeg"])
def test_other_formats(tmp_path, ext):
    Image.new("RGB", (12, 9), (10, 200, 30)).save(tmp_path / f"x.{ext}",
                                                  **({"lossless": True} if ext == "webp" else {}))
    out = open_image(tmp_path / f"x.{ext}")
    assert out.size == (12, 9) and close(px(out, 5, 5), (10, 200, 30))


def test_animated_gif_first_frame(tmp_path):
    frames = [Image.new("RGB", (10, 10), RED), Image.new("RGB", (10, 10), BLUE)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=100)
    assert stored(tmp_path / "anim.gif", "n_frames") == 2
    assert close(px(open_image(tmp_path / "anim.gif"), 5, 5), RED)


# --------------------------------------------------------------------------- bad files


def _bad_files(folder):
    rng = np.random.default_rng(0)
    (folder / "corrupt.png").write_bytes(rng.integers(0, 256, 2000, dtype=np.uint8).tobytes())
    noise = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(folder / "full.png")
    data = (folder / "full.png").read_bytes()
    (folder / "truncated.png").write_bytes(data[: len(data) // 2])
    (folder / "full.png").unlink()
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.jpg").write_text("this is a text file, not a JPEG\n")
    return ["corrupt.png", "empty.png", "notes.jpg", "truncated.png"]


@pytest.mark.parametrize("name", ["corrupt.png", "truncated.png", "empty.png", "notes.jpg"])
def test_open_image_bad_file_names_it(tmp_path, name):
    _bad_files(tmp_path)
    with pytest.raises(UnreadableImageError) as info:
        open_image(tmp_path / name)
    assert name in str(info.value) and info.value.reason
    assert isinstance(info.value, ValueError)
    if name == "empty.png":
        assert "empty" in info.value.reason


def _png_chunks(data: bytes) -> list[tuple[int, bytes, int]]:
    """(offset of the chunk's data, chunk type, data length) of every chunk of a PNG file."""
    chunks, at = [], 8
    while at < len(data):
        length = int.from_bytes(data[at:at + 4], "big")
        chunks.append((at + 8, data[at + 4:at + 8], length))
        at += 12 + length
    return chunks


def _noise_png(path, seed: int = 0) -> bytes:
    noise = np.random.default_rng(seed).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(path)
    return path.read_bytes()


def test_a_png_with_a_bad_crc_is_refused_not_partly_decoded(tmp_path):
    data = bytearray(_noise_png(tmp_path / "bad-crc.png"))
    start, _, length = next(c for c in _png_chunks(bytes(data)) if c[1] == b"IDAT")
    data[start + length // 2] ^= 0xFF  # the chunk's stored CRC no longer matches its data
    (tmp_path / "bad-crc.png").write_bytes(bytes(data))
    with pytest.raises(OSError), Image.open(tmp_path / "bad-crc.png") as img:
        img.load()  # plain Pillow refuses it
    for grey in (False, None):
        with pytest.raises(UnreadableImageError, match="bad-crc.png") as info:
            _decode(tmp_path / "bad-crc.png", DEFAULT_MAX_PIXELS, grey=grey)
        assert "broken data stream" in info.value.reason
    with pytest.raises(UnreadableImageError, match="bad-crc.png"):
        open_image(tmp_path / "bad-crc.png")
    with pytest.raises(UnreadableImageError, match="bad-crc.png"):
        load_folder(tmp_path, size=8, strict=True)


def test_a_png_cut_short_is_refused(tmp_path):
    data = _noise_png(tmp_path / "whole.png")
    start, _, length = next(c for c in _png_chunks(data) if c[1] == b"IDAT")
    (tmp_path / "cut.png").write_bytes(data[:start + length - 100])  # inside the pixel data
    with pytest.raises(UnreadableImageError, match="cut.png") as info:
        open_image(tmp_path / "cut.png")
    assert "truncated" in info.value.reason
    with pytest.raises(UnreadableImageError, match="cut.png"):
        _decode(tmp_path / "cut.png", DEFAULT_MAX_PIXELS, grey=None)


def test_load_folder_skips_bad_files_with_warnings(tmp_path):
    bad = _bad_files(tmp_path)
    Image.new("RGB", (10, 10), RED).save(tmp_path / "good.png")
    with pytest.warns(UserWarning) as record:
        data, report = read_folder(tmp_path, size=8)
    messages = [str(w.message) for w in record]
    for name in bad:
        assert sum(name in m for m in messages) == 1, (name, messages)
    assert len(data) == 1 and list(data.attributes["file"]) == ["good.png"]
    assert [f for f, _ in report.skipped] == bad and all(reason for _, reason in report.skipped)
    assert report.found == 5 and report.loaded == 1
    assert [f for f, _ in data.attributes.attrs["skipped"]] == bad


def test_load_folder_strict_raises_naming_file(tmp_path):
    _bad_files(tmp_path)
    Image.new("RGB", (10, 10), RED).save(tmp_path / "good.png")
    with pytest.raises(UnreadableImageError, match="corrupt.png"):
        load_folder(tmp_path, size=8, strict=True)


def test_all_files_bad_is_an_error(tmp_path):
    _bad_files(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match="none of the 4 image files"):
            load_folder(tmp_path)


def test_decompression_bomb_limit(tmp_path):
    Image.new("RGB", (100, 100), RED).save(tmp_path / "big.png")
    Image.new("RGB", (10, 10), BLUE).save(tmp_path / "small.png")
    with pytest.raises(ImageTooLargeError, match="big.png.*10,000 pixels"):
        open_image(tmp_path / "big.png", max_pixels=5_000)
    assert open_image(tmp_path / "big.png", max_pixels=10_000).size == (100, 100)
    with pytest.warns(UserWarning, match="big.png"):
        data = load_folder(tmp_path, size=4, max_pixels=5_000)
    assert list(data.attributes["file"]) == ["small.png"]
    with pytest.raises(ImageTooLargeError):
        load_folder(tmp_path, size=4, max_pixels=5_000, strict=True)


def test_decoded_bytes_are_limited_not_only_pixels(tmp_path, monkeypatch):
    import synthscope.generators.folder as folder

    Image.fromarray(np.full((30, 40), 1000, np.uint16)).save(tmp_path / "deep.png")  # 2 bytes a pixel
    Image.new("L", (40, 30), 9).save(tmp_path / "flat.png")  # 1 byte a pixel
    assert stored(tmp_path / "deep.png") == "I;16"
    monkeypatch.setattr(folder, "MAX_BYTES_PER_PIXEL", 1)  # a budget of 1,200 bytes for 1,200 pixels
    with pytest.raises(ImageTooLargeError, match="deep.png") as info:
        open_image(tmp_path / "deep.png", max_pixels=1_200)
    assert "I;16" in info.value.reason and "2,400 bytes" in info.value.reason
    assert "1,200" in info.value.reason  # the byte limit
    assert open_image(tmp_path / "flat.png", max_pixels=1_200).size == (40, 30)
    with pytest.warns(UserWarning, match="deep.png"):
        data = load_folder(tmp_path, size=4, max_pixels=1_200)
    assert list(data.attributes["file"]) == ["flat.png"]
    monkeypatch.undo()
    assert open_image(tmp_path / "deep.png", max_pixels=1_200).size == (40, 30)


@pytest.mark.parametrize("mode", ["I;16", "I", "F"])
def test_high_depth_images_are_scaled_without_full_size_working_copies(tmp_path, mode):
    import tracemalloc

    dtype = {"I;16": np.uint16, "I": np.int32, "F": np.float32}[mode]
    values = np.random.default_rng(0).integers(0, 60_000, (1000, 2000)).astype(dtype)
    if mode == "F":
        values /= 60_000
    Image.fromarray(values).save(tmp_path / "deep.tif")
    expected = np.rint(values.astype(np.float64) * (255.0 / (65535.0 if mode != "F" else 1.0)))
    tracemalloc.start()
    try:
        out = open_image(tmp_path / "deep.tif", mode="L")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert np.array_equal(np.asarray(out), expected.astype(np.uint8))
    # Scaling works in strips: the working arrays stay far below the 8-byte-a-pixel copies of
    # the whole image that took a 16-bit photo at the pixel limit from 1 to 3 GB.
    assert peak < 3 * values.size, f"{peak:,} bytes of arrays for {values.size:,} pixels"


# --------------------------------------------------------------------------- folders


def _tree(root):
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "other").mkdir()
    (root / ".hidden").mkdir()
    Image.new("RGB", (10, 10), RED).save(root / "top.PNG")
    Image.new("RGB", (10, 10), GREEN).save(root / "sub" / "a.JpG")
    Image.new("RGB", (10, 10), BLUE).save(root / "sub" / "deeper" / "b.png")
    Image.new("RGB", (10, 10), BLUE).save(root / "other" / "c.webp")
    Image.new("RGB", (10, 10), BLUE).save(root / ".hidden" / "x.png")
    Image.new("RGB", (10, 10), BLUE).save(root / "sub" / ".y.png")
    (root / "sub" / "readme.txt").write_text("not an image")


def test_find_images_recursive_sorted_skips_hidden(tmp_path):
    _tree(tmp_path)
    found = [p.relative_to(tmp_path).as_posix() for p in find_images(tmp_path)]
    assert found == ["other/c.webp", "sub/a.JpG", "sub/deeper/b.png", "top.PNG"]
    assert found == [p.relative_to(tmp_path).as_posix() for p in find_images(tmp_path)]
    assert {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"} <= IMAGE_EXTENSIONS


def _linked_tree(tmp_path):
    root, elsewhere = tmp_path / "folder", tmp_path / "elsewhere"
    (root / "sub").mkdir(parents=True)
    elsewhere.mkdir()
    Image.new("RGB", (10, 10), RED).save(root / "sub" / "a.png")
    Image.new("RGB", (10, 10), BLUE).save(elsewhere / "secret.png")
    (root / "out.png").symlink_to(elsewhere / "secret.png")  # a file link leading out
    (root / "away").symlink_to(elsewhere, target_is_directory=True)  # a folder link leading out
    (root / "sub" / "gone.jpg").symlink_to(tmp_path / "deleted.jpg")  # dangling
    (root / "via").symlink_to(root / "sub", target_is_directory=True)  # inside, seen already: not again
    (root / "same.png").symlink_to(root / "sub" / "a.png")  # inside: read
    return root


def test_find_images_does_not_follow_links_out_of_the_folder(tmp_path):
    root = _linked_tree(tmp_path)
    skipped: list[tuple[str, str]] = []
    with pytest.warns(UserWarning) as record:
        found = find_images(root, skipped=skipped)
    assert [p.relative_to(root).as_posix() for p in found] == ["same.png", "sub/a.png"]
    reasons = dict(skipped)
    assert sorted(reasons) == ["away", "out.png", "sub/gone.jpg"]
    assert reasons["away"].startswith("symbolic link leads outside the folder")
    assert reasons["out.png"].startswith("symbolic link leads outside the folder")
    assert reasons["sub/gone.jpg"].startswith("dangling symbolic link")
    assert sorted(str(w.message).split(":")[0] for w in record) == sorted(
        f"skipping {root / name}" for name in ("away", "out.png", "sub/gone.jpg"))


def test_read_folder_reports_links_it_does_not_follow(tmp_path):
    root = _linked_tree(tmp_path)
    with pytest.warns(UserWarning):
        data, report = read_folder(root, size=4)
    assert list(data.attributes["file"]) == ["same.png", "sub/a.png"]
    assert sorted(f for f, _ in report.skipped) == ["away", "out.png", "sub/gone.jpg"]
    assert report.found == 5 and report.loaded == 2
    with pytest.raises(UnreadableImageError, match="outside the folder|dangling"), pytest.warns(UserWarning):
        read_folder(root, size=4, strict=True)


def test_open_image_names_link_problems(tmp_path):
    root = _linked_tree(tmp_path)
    with pytest.raises(UnreadableImageError, match="gone.jpg") as info:
        open_image(root / "sub" / "gone.jpg")
    assert info.value.reason.startswith("dangling symbolic link")
    assert open_image(root / "out.png").size == (10, 10)  # no folder given: a link is a file
    with pytest.raises(UnreadableImageError, match="out.png") as info:
        open_image(root / "out.png", within=root)
    assert info.value.reason.startswith("symbolic link leads outside the folder")
    assert open_image(root / "same.png", within=root).size == (10, 10)


def test_load_folder_sources_and_attributes(tmp_path):
    _tree(tmp_path)
    data = load_folder(tmp_path, size=8)
    assert data.images.shape == (4, 3, 8, 8) and data.images.dtype == torch.float32
    assert 0.0 <= data.images.min() and data.images.max() <= 1.0
    assert list(data.attributes["file"]) == ["other/c.webp", "sub/a.JpG", "sub/deeper/b.png", "top.PNG"]
    assert list(data.attributes["source"]) == ["other", "sub", "sub", "real"]
    assert list(data.attributes["width"]) == [10] * 4 and data.captions == [""] * 4
    assert data.name == tmp_path.name
    assert torch.allclose(data.images[3, :, 4, 4], torch.tensor([1.0, 0.0, 0.0]))
    forced = load_folder(tmp_path, size=8, source="fake")
    assert set(forced.attributes["source"]) == {"fake"}
    assert list(forced.attributes["folder"]) == ["other", "sub", "sub", ""]


def test_fit_square_resizes_shorter_side_and_centre_crops(tmp_path):
    arr = np.zeros((10, 30, 3), np.uint8)
    arr[:, :10] = BLUE
    arr[:, 10:20] = RED
    arr[:, 20:] = BLUE
    out = fit_square(Image.fromarray(arr), 5)
    assert out.size == (5, 5)
    assert np.all(np.asarray(out) == np.array(RED, np.uint8))
    big = fit_square(Image.new("RGB", (3, 2), GREEN), 6)  # small images are upscaled
    assert big.size == (6, 6)


def test_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_folder(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="no images found in .*empty"):
        load_folder(tmp_path / "empty")


def test_load_data_dispatches_to_folder(tmp_path):
    _tree(tmp_path)
    data = load_data(str(tmp_path), size=16)
    assert data.images.shape == (4, 3, 16, 16)
