"""The corpus contract: lossless, atomic, resumable writing; reading corpora and plain folders."""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from synthscope.generators.corpus import (
    CorpusError,
    CorpusWriter,
    read_corpus,
)
from synthscope.generators.folder import UnreadableImageError
from synthscope.runtime import sha256_file

PROVENANCE = {"generator": "tiny-gan", "checkpoint_sha256": "ab" * 32, "config": {"nz": 8, "sizes": (1, 2)},
              "seed": 7}


def rgb_batch(n: int, seed: int, size: int = 8) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (n, 3, size, size), dtype=np.uint8))


def grey_batch(n: int, seed: int, size: int = 8) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (n, 1, size, size), dtype=np.uint8))


def png_pixels(path) -> tuple[str, np.ndarray]:
    with Image.open(path) as img:
        return img.mode, np.asarray(img)


def write_two_batches(root):
    writer = CorpusWriter(root, PROVENANCE)
    first = rgb_batch(3, seed=1)
    # Float in [0, 1], as a model produces; exact multiples of 1/255 must survive exactly.
    files1 = writer.append(first.float() / 255.0,
                           [{"key": f"k{i}", "digit": "007", "prompt": f"p{i}", "seed": i} for i in range(3)])
    second = grey_batch(2, seed=2)
    files2 = writer.append(second, [{"key": "k3", "extra": 1.5, "source": "real"}, {"key": "k4"}])
    return writer, first, second, files1 + files2


# --------------------------------------------------------------------------- writing


def test_two_batches_round_trip_lossless(tmp_path):
    writer, first, second, files = write_two_batches(tmp_path)
    assert files == [f"images/{i:06d}.png" for i in range(5)]
    assert len(writer) == 5
    for i in range(3):
        mode, arr = png_pixels(tmp_path / files[i])
        assert mode == "RGB" and np.array_equal(arr, first[i].permute(1, 2, 0).numpy())
    for i in range(2):
        mode, arr = png_pixels(tmp_path / files[3 + i])
        assert mode == "L" and np.array_equal(arr, second[i, 0].numpy())

    manifest = pd.read_csv(tmp_path / "manifest.csv", dtype=str, keep_default_na=False)
    assert list(manifest["file"]) == files
    assert list(manifest.columns[:2]) == ["file", "source"]
    assert {"key", "digit", "prompt", "seed", "extra"} <= set(manifest.columns)
    assert list(manifest["source"]) == ["tiny-gan"] * 3 + ["real", "tiny-gan"]
    assert list(manifest["extra"]) == ["", "", "", "1.5", ""]
    assert list(manifest["digit"]) == ["007"] * 3 + ["", ""]

    meta = json.loads((tmp_path / "corpus.json").read_text())
    assert meta["format"] == "synthscope-corpus" and meta["format_version"] == 1
    assert meta["rows"] == 5 and meta["generator"] == "tiny-gan"
    assert meta["config"] == {"nz": 8, "sizes": [1, 2]}
    assert meta["checkpoint_sha256"] == "ab" * 32
    versions = meta["package_versions"]
    assert {"synthscope", "torch", "diffusers", "numpy", "PIL"} <= versions.keys()
    assert versions["numpy"] == np.__version__ and versions["torch"]
    assert meta["created_at"] <= meta["updated_at"]


def test_read_back_corpus_exact(tmp_path):
    _, first, second, files = write_two_batches(tmp_path)
    corpus = read_corpus(tmp_path)
    assert len(corpus) == 5 and not corpus.inferred
    assert corpus.provenance["generator"] == "tiny-gan"
    assert corpus.paths()[0] == (tmp_path / files[0]).absolute()
    assert list(corpus.manifest["digit"][:3]) == ["007"] * 3  # text stays text, not 7
    images = corpus.load_images()  # mixed grey and colour -> all 3 channels
    assert images.shape == (5, 3, 8, 8)
    as_uint8 = (images * 255).round().to(torch.uint8)
    assert torch.equal(as_uint8[:3], first)
    assert torch.equal(as_uint8[3:], second.expand(-1, 3, -1, -1))

    data = corpus.to_imageset()
    assert data.captions == ["p0", "p1", "p2", "", ""]
    assert list(data.attributes["key"]) == [f"k{i}" for i in range(5)]


def test_grey_corpus_stays_one_channel(tmp_path):
    batch = grey_batch(4, seed=3)
    CorpusWriter(tmp_path).append(batch, [{"digit": "007", "seed": i} for i in range(4)])
    corpus = read_corpus(tmp_path)
    assert list(corpus.manifest["digit"]) == ["007"] * 4  # labels are text: "007" is not 7
    assert list(corpus.manifest["seed"]) == ["0", "1", "2", "3"]
    images = corpus.load_images()
    assert images.shape == (4, 1, 8, 8)
    assert torch.equal((images * 255).round().to(torch.uint8), batch)
    assert read_corpus(tmp_path).load_images(size=4, channels=3).shape == (4, 3, 4, 4)


def test_reading_progress_bar_follows_the_progress_flag(tmp_path, monkeypatch, capsys):
    import synthscope.generators.corpus as corpus_module

    monkeypatch.setattr(corpus_module, "PROGRESS_MIN_FILES", 0)  # a bar even for four files
    CorpusWriter(tmp_path).append(grey_batch(4, seed=1), [{}] * 4)
    corpus = read_corpus(tmp_path)
    corpus.load_images(progress=False)
    assert "reading" not in capsys.readouterr().err
    corpus.load_images()
    assert "reading" in capsys.readouterr().err


def test_float_images_are_rounded_not_truncated(tmp_path):
    levels = torch.arange(256, dtype=torch.float32)
    below = ((levels - 0.3).clamp(min=0) / 255).reshape(1, 1, 16, 16)
    above = ((levels + 0.3).clamp(max=255) / 255).reshape(1, 1, 16, 16)
    out_of_range = torch.tensor([-0.5, 1.7]).repeat_interleave(128).reshape(1, 1, 16, 16)
    CorpusWriter(tmp_path).append(torch.cat([below, above, out_of_range]))
    expected = levels.to(torch.uint8).reshape(16, 16).numpy()
    assert np.array_equal(png_pixels(tmp_path / "images/000000.png")[1], expected)
    assert np.array_equal(png_pixels(tmp_path / "images/000001.png")[1], expected)
    assert set(np.unique(png_pixels(tmp_path / "images/000002.png")[1])) == {0, 255}


def test_pil_images_kept_in_their_mode(tmp_path):
    writer = CorpusWriter(tmp_path, {"generator": "sd"})
    rgb = Image.new("RGB", (5, 4), (1, 2, 3))
    grey = Image.new("L", (5, 4), 9)
    writer.append([rgb, grey], [{"prompt": "a"}, {"prompt": "b"}])
    assert png_pixels(tmp_path / "images/000000.png")[0] == "RGB"
    mode, arr = png_pixels(tmp_path / "images/000001.png")
    assert mode == "L" and np.all(arr == 9)


def test_bad_batches_write_nothing(tmp_path):
    writer = CorpusWriter(tmp_path)
    bad = torch.zeros(2, 3, 4, 4)
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        writer.append(bad)
    with pytest.raises(ValueError, match="'file' is set by the writer"):
        writer.append(rgb_batch(1, 0), [{"file": "x.png"}])
    with pytest.raises(ValueError, match="2 images but 1 rows"):
        writer.append(rgb_batch(2, 0), [{}])
    with pytest.raises(ValueError, match="channels-last"):
        writer.append(torch.zeros(2, 5, 5, 3))
    assert len(writer) == 0 and list((tmp_path / "images").iterdir()) == []
    assert len(read_corpus(tmp_path)) == 0


def test_resume_continues_numbering_and_existing(tmp_path):
    write_two_batches(tmp_path)
    writer = CorpusWriter(tmp_path, PROVENANCE)
    assert len(writer) == 5 and writer.next_index == 5
    assert writer.existing("key") == {f"k{i}" for i in range(5)}
    assert writer.existing("no-such-column") == set()
    files = writer.append(rgb_batch(1, seed=9), [{"key": "k5"}])
    assert files == ["images/000005.png"]
    manifest = read_corpus(tmp_path).manifest
    assert list(manifest["key"]) == [f"k{i}" for i in range(6)]
    meta = json.loads((tmp_path / "corpus.json").read_text())
    assert meta["rows"] == 6 and meta["resumed"][0]["rows_before"] == 5
    assert "changed" not in meta["resumed"][0]


def test_resume_records_changed_provenance(tmp_path):
    write_two_batches(tmp_path)
    with pytest.warns(UserWarning, match="seed"):
        writer = CorpusWriter(tmp_path, {**PROVENANCE, "seed": 8})
    writer.append(rgb_batch(1, seed=9))
    meta = json.loads((tmp_path / "corpus.json").read_text())
    assert meta["seed"] == 7 and meta["resumed"][0]["changed"] == {"seed": 8}


def test_resume_refuses_other_generator_and_modes(tmp_path):
    write_two_batches(tmp_path)
    with pytest.raises(CorpusError, match="tiny-gan.*other-gan"):
        CorpusWriter(tmp_path, {"generator": "other-gan"})
    with pytest.raises(FileExistsError):
        CorpusWriter(tmp_path, PROVENANCE, mode="new")
    (tmp_path / "keep.txt").write_text("user file")
    writer = CorpusWriter(tmp_path, {"generator": "other-gan"}, mode="overwrite")
    assert len(writer) == 0 and list((tmp_path / "images").iterdir()) == []
    assert (tmp_path / "keep.txt").exists()
    assert json.loads((tmp_path / "corpus.json").read_text())["generator"] == "other-gan"
    with pytest.raises(ValueError, match="mode"):
        CorpusWriter(tmp_path, mode="append")
    with pytest.raises(ValueError, match="rows"):
        CorpusWriter(tmp_path / "x", {"rows": 3})


def test_crash_during_manifest_replace_then_resume(tmp_path, monkeypatch):
    writer = CorpusWriter(tmp_path, PROVENANCE)
    batch1 = rgb_batch(2, seed=1)
    writer.append(batch1, [{"key": "a"}, {"key": "b"}])
    manifest_before = (tmp_path / "manifest.csv").read_bytes()

    real_replace = os.replace

    def crashing_replace(src, dst):
        if os.path.basename(dst) == "manifest.csv":
            raise OSError("simulated crash")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crashing_replace)
    with pytest.raises(OSError, match="simulated crash"):
        writer.append(rgb_batch(2, seed=2), [{"key": "c"}, {"key": "d"}])
    monkeypatch.setattr(os, "replace", real_replace)

    # The manifest still holds batch 1 exactly; batch 2's PNGs are orphans, no temp files remain.
    assert (tmp_path / "manifest.csv").read_bytes() == manifest_before
    assert (tmp_path / "images" / "000002.png").exists()
    assert not [p for p in tmp_path.rglob("*.tmp")]
    assert len(read_corpus(tmp_path)) == 2

    writer.close()  # as when the crashed process ends
    resumed = CorpusWriter(tmp_path, PROVENANCE)
    assert len(resumed) == 2 and resumed.existing("key") == {"a", "b"}
    batch2 = rgb_batch(2, seed=3)  # different pixels from the crashed batch
    assert resumed.append(batch2, [{"key": "c"}, {"key": "d"}]) == ["images/000002.png", "images/000003.png"]
    corpus = read_corpus(tmp_path)
    assert list(corpus.manifest["key"]) == ["a", "b", "c", "d"]
    assert corpus.manifest["file"].is_unique
    assert sorted(p.name for p in (tmp_path / "images").iterdir()) == [f"{i:06d}.png" for i in range(4)]
    pixels = (corpus.load_images() * 255).round().to(torch.uint8)
    assert torch.equal(pixels, torch.cat([batch1, batch2]))  # orphans were overwritten


def test_failed_append_leaves_writer_usable(tmp_path, monkeypatch):
    writer = CorpusWriter(tmp_path)
    writer.append(rgb_batch(1, seed=1))
    real_replace = os.replace
    monkeypatch.setattr(os, "replace",
                        lambda s, d: (_ for _ in ()).throw(OSError("disk full"))
                        if os.path.basename(d) == "manifest.csv" else real_replace(s, d))
    with pytest.raises(OSError):
        writer.append(rgb_batch(1, seed=2))
    monkeypatch.undo()
    assert len(writer) == 1
    assert writer.append(rgb_batch(1, seed=3)) == ["images/000001.png"]
    assert list(read_corpus(tmp_path).manifest["file"]) == ["images/000000.png", "images/000001.png"]


def test_resume_after_rows_deleted_never_overwrites_listed_images(tmp_path):
    write_two_batches(tmp_path)
    manifest = pd.read_csv(tmp_path / "manifest.csv", dtype=str, keep_default_na=False)
    manifest.iloc[1:].to_csv(tmp_path / "manifest.csv", index=False)  # user dropped row 0
    writer = CorpusWriter(tmp_path, PROVENANCE)
    assert len(writer) == 4 and writer.next_index == 5


def test_a_second_writer_on_a_folder_is_refused_until_the_first_is_closed(tmp_path):
    first = CorpusWriter(tmp_path, PROVENANCE)
    first.append(rgb_batch(2, seed=1), [{"key": "a"}, {"key": "b"}])
    manifest = (tmp_path / "manifest.csv").read_bytes()
    with pytest.raises(CorpusError, match="already open for writing.*close it first") as info:
        CorpusWriter(tmp_path, PROVENANCE)
    assert str(tmp_path) in str(info.value)
    with pytest.raises(CorpusError, match="already open"):
        CorpusWriter(tmp_path, PROVENANCE, mode="overwrite")  # nothing removed either
    assert (tmp_path / "manifest.csv").read_bytes() == manifest
    assert len(read_corpus(tmp_path)) == 2  # reading takes no lock
    first.append(rgb_batch(1, seed=2), [{"key": "c"}])  # the first writer is unharmed
    first.close()
    with pytest.raises(CorpusError, match="closed"):
        first.append(rgb_batch(1, seed=3))
    with CorpusWriter(tmp_path, PROVENANCE) as second:
        assert second.existing("key") == {"a", "b", "c"}
        second.append(rgb_batch(1, seed=4), [{"key": "d"}])
    CorpusWriter(tmp_path, PROVENANCE).append(rgb_batch(1, seed=5), [{"key": "e"}])  # dropped: released
    unreachable = CorpusWriter(tmp_path, PROVENANCE)
    unreachable.itself = unreachable  # a reference cycle: only the garbage collector frees it
    del unreachable
    assert list(CorpusWriter(tmp_path, PROVENANCE).manifest["key"]) == ["a", "b", "c", "d", "e"]


def test_a_writer_that_fails_to_open_holds_no_lock(tmp_path):
    write_two_batches(tmp_path)
    for _ in range(2):
        with pytest.raises(CorpusError, match="other-gan"):
            CorpusWriter(tmp_path, {"generator": "other-gan"})
    CorpusWriter(tmp_path, PROVENANCE).close()


_HOLD = """
import sys
from synthscope.generators.corpus import CorpusWriter
writer = CorpusWriter(sys.argv[1], {"generator": "tiny-gan"})
print("open", flush=True)
sys.stdin.read()
"""


def test_a_folder_another_process_writes_is_refused(tmp_path):
    import subprocess
    import sys

    write_two_batches(tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(tmp_path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "open\n"
        # A file the other process is writing right now, under the name atomic writes use.
        busy = tmp_path / "images" / f".000009.png.{holder.pid}.0123abcd.tmp"
        busy.write_bytes(b"half a png")
        before = sorted(p.name for p in (tmp_path / "images").iterdir())
        for mode in ("resume", "overwrite"):
            with pytest.raises(CorpusError, match="being written by another process") as info:
                CorpusWriter(tmp_path, PROVENANCE, mode=mode)
            message = str(info.value)
            assert f"{tmp_path} is being written" in message and ".lock" in message and "another folder" in message
        assert sorted(p.name for p in (tmp_path / "images").iterdir()) == before
        assert len(read_corpus(tmp_path)) == 5
    finally:
        holder.communicate("", timeout=60)
    assert holder.returncode == 0
    # The process is gone: its lock went with it, and its temp file is now stale.
    writer = CorpusWriter(tmp_path, PROVENANCE)
    assert not busy.exists() and len(writer) == 5


def test_only_stale_temp_files_are_removed(tmp_path):
    import subprocess
    import sys
    import time

    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                           text=True, check=True)
    dead, alive = int(ended.stdout), os.getpid()
    images = tmp_path / "images"
    images.mkdir()
    names = {"dead": f".000001.png.{dead}.0000beef.tmp", "alive": f".000002.png.{alive}.0000cafe.tmp",
             "old": f".000003.png.{alive}.0000f00d.tmp", "manifest": f".manifest.csv.{dead}.00000001.tmp",
             "other": ".notes.tmp"}
    for key, name in names.items():
        (tmp_path / name if key == "manifest" else images / name).write_bytes(b"x")
    hours_ago = time.time() - 2 * 3600
    os.utime(images / names["old"], (hours_ago, hours_ago))
    CorpusWriter(tmp_path).close()
    assert not (images / names["dead"]).exists() and not (tmp_path / names["manifest"]).exists()
    assert not (images / names["old"]).exists()  # a live process does not take hours to write a file
    assert (images / names["alive"]).exists()  # another writer's file in flight
    assert (images / names["other"]).exists()  # not a temp file of ours


def test_sha256_file_streams(tmp_path):
    data = os.urandom(10_000)
    (tmp_path / "ckpt.bin").write_bytes(data)
    assert sha256_file(tmp_path / "ckpt.bin", chunk_size=1000) == hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------- reading


def test_plain_folder_infers_sources(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "fake" / "sd").mkdir(parents=True)
    Image.new("RGB", (6, 6), (255, 0, 0)).save(tmp_path / "real" / "a.png")
    Image.new("RGB", (6, 6), (0, 255, 0)).save(tmp_path / "fake" / "sd" / "b.jpg")
    Image.new("RGB", (6, 6), (0, 0, 255)).save(tmp_path / "top.png")
    corpus = read_corpus(tmp_path)
    assert corpus.inferred and corpus.provenance == {}
    assert list(corpus.manifest["file"]) == ["fake/sd/b.jpg", "real/a.png", "top.png"]
    assert list(corpus.manifest["source"]) == ["fake", "real", "unknown"]
    assert corpus.load_images().shape == (3, 3, 6, 6)
    forced = read_corpus(tmp_path / "real", source="real")
    assert list(forced.manifest["source"]) == ["real"]
    forced = read_corpus(tmp_path, source="fake")
    assert set(forced.manifest["source"]) == {"fake"}
    assert list(forced.manifest["folder"]) == ["fake", "real", ""]


def test_missing_listed_file_is_named(tmp_path):
    write_two_batches(tmp_path)
    (tmp_path / "images" / "000003.png").unlink()
    with pytest.raises(CorpusError, match=r"manifest\.csv.*1 of 5.*images/000003\.png"):
        read_corpus(tmp_path)


@pytest.mark.parametrize("listed", ["absolute", "../outside.png", "images/../../outside.png", "link"])
def test_a_manifest_may_only_list_files_inside_its_corpus(tmp_path, listed):
    root = tmp_path / "corpus"
    write_two_batches(root)
    outside = tmp_path / "outside.png"
    Image.new("RGB", (8, 8), (1, 2, 3)).save(outside)
    if listed == "absolute":
        listed = str(outside)
    elif listed == "link":
        (root / "images" / "link.png").symlink_to(outside)
        listed = "images/link.png"
    manifest = pd.read_csv(root / "manifest.csv", dtype=str, keep_default_na=False)
    manifest.loc[2, "file"] = listed  # line 4 of the file: header, then rows 0 and 1
    manifest.to_csv(root / "manifest.csv", index=False)
    with pytest.raises(CorpusError) as info:
        read_corpus(root)
    message = str(info.value)
    assert str(root / "manifest.csv") in message and "line 4" in message and listed in message
    assert "outside the corpus folder" in message
    if listed == "images/link.png":
        assert "symbolic link" in message


def test_a_symbolic_link_inside_the_corpus_is_read(tmp_path):
    write_two_batches(tmp_path)
    (tmp_path / "images" / "again.png").symlink_to(tmp_path / "images" / "000000.png")
    manifest = pd.read_csv(tmp_path / "manifest.csv", dtype=str, keep_default_na=False)
    manifest.loc[1, "file"] = "images/again.png"
    manifest.to_csv(tmp_path / "manifest.csv", index=False)
    images = read_corpus(tmp_path).load_images()
    assert torch.equal(images[0], images[1])


def test_a_part_listing_a_file_outside_it_is_not_merged(tmp_path):
    from synthscope.generators.corpus import PARTS_DIR, open_part

    root = tmp_path / "c"
    main = CorpusWriter(root, {"generator": "toy"})
    open_part(root, "rank-001").append(rgb_batch(2, seed=1), [{"key": "a"}, {"key": "b"}])
    (tmp_path / "secret.png").write_bytes((root / PARTS_DIR / "rank-001" / "images" / "000000.png").read_bytes())
    part_manifest = root / PARTS_DIR / "rank-001" / "manifest.csv"
    manifest = pd.read_csv(part_manifest, dtype=str, keep_default_na=False)
    manifest.loc[1, "file"] = "../../../secret.png"
    manifest.to_csv(part_manifest, index=False)
    with pytest.raises(CorpusError, match=r"rank-001.manifest\.csv.*line 3.*\.\./\.\./\.\./secret\.png.*outside"):
        main.merge_parts()
    assert len(read_corpus(root)) == 0


def test_plain_folder_does_not_follow_links_out_of_it(tmp_path):
    root, elsewhere = tmp_path / "folder", tmp_path / "elsewhere"
    (root / "real").mkdir(parents=True)
    elsewhere.mkdir()
    Image.new("RGB", (6, 6), (255, 0, 0)).save(root / "real" / "a.png")
    Image.new("RGB", (6, 6), (0, 255, 0)).save(elsewhere / "b.png")
    (root / "real" / "out.png").symlink_to(elsewhere / "b.png")
    (root / "fake").symlink_to(elsewhere, target_is_directory=True)
    (root / "real" / "gone.png").symlink_to(tmp_path / "missing.png")
    (root / "real" / "same.png").symlink_to(root / "real" / "a.png")  # inside: read
    with pytest.warns(UserWarning) as record:
        corpus = read_corpus(root)
    assert list(corpus.manifest["file"]) == ["real/a.png", "real/same.png"]
    reasons = dict(corpus.skipped)
    assert sorted(reasons) == ["fake", "real/gone.png", "real/out.png"]
    assert "outside the folder" in reasons["fake"] and "outside the folder" in reasons["real/out.png"]
    assert "dangling symbolic link" in reasons["real/gone.png"]
    messages = " ".join(str(w.message) for w in record)
    assert all(name in messages for name in ("fake", "gone.png", "out.png"))
    assert corpus.load_images().shape == (2, 3, 6, 6)
    with pytest.raises(UnreadableImageError, match="outside the folder|dangling"), pytest.warns(UserWarning):
        read_corpus(root, strict=True)


@pytest.mark.parametrize("content, message", [
    ("name,source\na.png,real\n", r"no 'file' column"),
    ("file,source\na.png,real\nb.png,real,x,y,z\n", r"not a readable CSV"),
    ("", r"empty file"),
    ("file,source\n,real\n", r"empty 'file'"),
])
def test_bad_manifest_is_one_clear_error(tmp_path, content, message):
    (tmp_path / "manifest.csv").write_text(content)
    with pytest.raises(CorpusError, match=message) as info:
        read_corpus(tmp_path)
    assert "manifest.csv" in str(info.value)
    with pytest.raises(CorpusError, match="manifest.csv"):  # the writer refuses to clobber it too
        CorpusWriter(tmp_path)
    assert (tmp_path / "manifest.csv").read_text() == content


def test_bad_corpus_json(tmp_path):
    write_two_batches(tmp_path)
    (tmp_path / "corpus.json").write_text("{not json")
    with pytest.raises(CorpusError, match=r"corpus\.json.*not valid JSON"):
        read_corpus(tmp_path)
    (tmp_path / "corpus.json").write_text("[1, 2]")
    with pytest.raises(CorpusError, match=r"corpus\.json.*JSON object"):
        read_corpus(tmp_path)


def test_unreadable_listed_image(tmp_path):
    write_two_batches(tmp_path)
    (tmp_path / "images" / "000001.png").write_bytes(b"garbage")
    with pytest.raises(UnreadableImageError, match="000001.png"):
        read_corpus(tmp_path, strict=True).load_images()
    corpus = read_corpus(tmp_path)
    with pytest.warns(UserWarning, match="000001.png"):
        images = corpus.load_images(size=4)
    assert images.shape[0] == len(corpus) == 4  # row dropped: images and manifest stay aligned
    assert "images/000001.png" not in set(corpus.manifest["file"])
    assert [f for f, _ in corpus.skipped] == ["images/000001.png"]


def test_a_listed_png_with_a_bad_crc_is_unreadable_not_partly_decoded(tmp_path):
    write_two_batches(tmp_path)
    path = tmp_path / "images" / "000001.png"
    data = bytearray(path.read_bytes())
    idat = data.index(b"IDAT")
    data[idat + 4 + int.from_bytes(data[idat - 4:idat], "big") // 2] ^= 0xFF  # CRC now wrong
    path.write_bytes(bytes(data))
    with pytest.raises(UnreadableImageError, match="000001.png.*broken data stream"):
        read_corpus(tmp_path, strict=True).load_images()
    corpus = read_corpus(tmp_path)
    with pytest.warns(UserWarning, match="000001.png"):
        assert len(corpus.load_images()) == 4
    assert [f for f, _ in corpus.skipped] == ["images/000001.png"]


def test_read_corpus_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        read_corpus(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match="no manifest.csv and no image files"):
        read_corpus(tmp_path / "empty")
