"""Image-to-image translation: paired and unpaired portraits, pix2pix, and the translate command."""

import json
import shutil

import numpy as np
import pytest
import torch

from synthscope.errors import UserError
from synthscope.generators.pairs import parse_translation, portrait_pairs, to_grey, translation_set
from synthscope.generators.portraits import draw_portrait
from synthscope.generators.translation import RESIDUAL_LIMIT


def test_paired_ages_are_the_same_person_changed_only_where_ageing_is_drawn():
    a, b = portrait_pairs(12, "age:young->older", seed=3, size=64)
    assert (a.attributes["age"] == "young").all() and (b.attributes["age"] == "older").all()
    others = ["profession", "gender", "skin_tone"]
    assert a.attributes[others].equals(b.attributes[others])
    changed = (a.images - b.images).abs().amax(dim=1) > 0  # (N, H, W)
    assert changed.any(dim=(1, 2)).all()  # every person visibly aged
    # Ageing draws hair, brows and wrinkles: nothing changes below the shoulders or beside the head.
    assert not changed[:, 58:, :].any()
    assert not changed[:, :, :13].any() and not changed[:, :, 51:].any()


def test_drawing_one_person_at_an_age_is_reproducible():
    attrs = {"profession": "nurse", "gender": "male", "skin_tone": "3", "age": "older"}
    draw = lambda: np.asarray(draw_portrait(attrs, np.random.default_rng(5), 16,  # noqa: E731
                                            age_rng=np.random.default_rng(6)))
    assert np.array_equal(draw(), draw())
    a, b = portrait_pairs(4, "age:young->older", seed=1, size=16)
    again = portrait_pairs(4, "age:young->older", seed=1, size=16)
    assert torch.equal(a.images, again[0].images) and torch.equal(b.images, again[1].images)


def test_ordinary_portraits_are_unchanged_by_the_age_stream():
    # The default age stream is the picture's own, so every existing portrait is drawn as before.
    attrs = {"profession": "doctor", "gender": "male", "skin_tone": "2", "age": "older"}
    rng_a, rng_b = np.random.default_rng(9), np.random.default_rng(9)
    assert np.array_equal(np.asarray(draw_portrait(attrs, rng_a, 16)),
                          np.asarray(draw_portrait(attrs, rng_b, 16, age_rng=rng_b)))


def test_grey_to_colour_pairs_and_unpaired_sets():
    a, b = portrait_pairs(6, "colour", seed=0, size=16)
    assert torch.allclose(a.images, to_grey(b.images))
    assert torch.equal(a.images[:, 0], a.images[:, 1])
    assert (a.attributes["colour"] == "grey").all() and (b.attributes["colour"] == "colour").all()
    ua, ub = portrait_pairs(6, "age:young->older", seed=0, size=16, paired=False)
    assert len(ua) == len(ub) == 6
    _, paired_b = portrait_pairs(6, "age:young->older", seed=0, size=16)
    # Unpaired B holds other people than A: no row of B is A's person aged.
    assert not any(torch.equal(ub.images[i], paired_b.images[i]) for i in range(6))


def test_a_translation_set_keeps_its_pairs_through_subsets_and_splits():
    a, b = portrait_pairs(10, "age:older->young", seed=2, size=16)
    data = translation_set(a, b, paired=True)
    train, heldout = data.split(0.3, seed=1)
    assert len(train) == 7 and len(heldout) == 3
    for part in (train, heldout):
        for i in range(len(part)):
            j = next(k for k in range(10) if torch.equal(b.images[k], part.images[i]))
            assert torch.equal(part.inputs[i], a.images[j])


@pytest.mark.parametrize("text, message", [
    ("hair:young->older", "unknown attribute 'hair'; known: age"),
    ("age:young->ancient", "two different values of young, middle-aged, older"),
    ("age:young->young", "two different values"),
    ("age", "say which ages"),
    ("age:young-", "cut short at '>': quote the value, e.g. --translate 'age:young->older'"),  # bash: >older
])
def test_bad_translations_are_one_clear_error(text, message):
    with pytest.raises(UserError, match=message):
        parse_translation(text)


def test_translations_parse():
    assert str(parse_translation("age:young->older")) == "age:young->older"
    assert str(parse_translation("colour")) == "colour:grey->colour"
    assert str(parse_translation(" colour : colour -> grey ")) == "colour:colour->grey"


# -- pix2pix -------------------------------------------------------------------------------------

SMALL = {"width": 4, "levels": 3, "d_width": 4, "d_layers": 2, "batch_size": 4}


@pytest.fixture(autouse=True)
def one_thread():
    """These models are tiny: a second thread only waits on the first, and on CPUs shared with other
    jobs that waiting costs seconds per step (conftest sets two threads back after each test)."""
    from synthscope import runtime

    runtime.use_threads(1, automatic=False)
LOSSES = {"pix2pix": ["loss_d", "loss_g", "loss_l1"],
          "cyclegan": ["loss_d", "loss_g", "loss_cycle", "loss_identity"]}


@pytest.fixture(scope="module")
def ageing():
    a, b = portrait_pairs(12, "age:young->older", seed=0, size=16)
    return translation_set(a, b, paired=True)


@pytest.fixture(scope="module")
def unpaired_ageing():
    a, b = portrait_pairs(12, "age:young->older", seed=0, size=16, paired=False)
    return translation_set(a, b, paired=False)


def training_set(kind, ageing, unpaired_ageing):
    return ageing if kind == "pix2pix" else unpaired_ageing


def make(kind="pix2pix", data=None, **extra):
    from synthscope.generators.workflow import new_generator

    torch.manual_seed(0)  # initial weights, as the training command seeds them
    return new_generator(kind, data, **{**SMALL, **extra})


@pytest.mark.parametrize("kind", ["pix2pix", "cyclegan"])
def test_translators_keep_the_input_shape_and_are_seeded(kind, ageing, unpaired_ageing, tmp_path):
    from synthscope.generators.training import train_generator

    data = training_set(kind, ageing, unpaired_ageing)
    model = make(kind, data)
    run = train_generator(model, data, tmp_path / "one", steps=3, seed=4, progress=False)
    assert list(run.history.columns) == ["step", *LOSSES[kind]]
    out = model.translate(data.inputs[:5])
    assert out.shape == (5, 3, 16, 16) and out.min() >= 0 and out.max() <= 1
    assert torch.equal(out, model.translate(data.inputs[:5]))  # evaluation mode: no dropout
    again = make(kind, data)
    train_generator(again, data, tmp_path / "two", steps=3, seed=4, progress=False)
    assert torch.equal(out, again.translate(data.inputs[:5]))
    other = make(kind, data)
    train_generator(other, data, tmp_path / "three", steps=3, seed=5, progress=False)
    assert not torch.equal(out, other.translate(data.inputs[:5]))


@pytest.mark.parametrize("kind", ["pix2pix", "cyclegan"])
def test_translators_round_trip_through_their_run_folder_and_resume_exactly(kind, ageing, unpaired_ageing,
                                                                           tmp_path):
    from synthscope.generators.training import train_generator
    from synthscope.registry import load_generator

    data = training_set(kind, ageing, unpaired_ageing)
    straight = make(kind, data)
    train_generator(straight, data, tmp_path / "straight", steps=6, progress=False)
    loaded = load_generator(tmp_path / "straight")
    assert loaded.kind == kind
    assert torch.equal(straight.translate(data.inputs), loaded.translate(data.inputs))

    torch.manual_seed(999)  # the global RNG state (dropout) must come from the checkpoint
    train_generator(make(kind, data), data, tmp_path / "split", steps=3, progress=False)
    resumed = train_generator(make(kind, data), data, tmp_path / "split", steps=6, progress=False)
    assert resumed.resumed_from == 3 and list(resumed.history["step"]) == [1, 2, 3, 4, 5, 6]
    for key, value in straight.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key


def test_a_residual_translator_whose_network_adds_nothing_returns_its_input(ageing):
    model = make(data=ageing)
    assert model.options["residual"] is True
    last = model.generator_net.ups[-1]  # the U-Net's outermost layer: zero it and the network outputs 0
    torch.nn.init.zeros_(last.weight)
    torch.nn.init.zeros_(last.bias)
    out = model.translate(ageing.inputs)
    assert (out - ageing.inputs).abs().max() <= (1 - RESIDUAL_LIMIT) / 2 + 1e-6
    plain = make(data=ageing, residual=False)
    torch.nn.init.zeros_(plain.generator_net.ups[-1].weight)
    torch.nn.init.zeros_(plain.generator_net.ups[-1].bias)
    assert torch.allclose(plain.translate(ageing.inputs), torch.full_like(ageing.inputs, 0.5))


def test_a_run_saved_before_the_residual_option_loads_as_it_was_trained(ageing, tmp_path):
    import json

    from synthscope.generators.training import train_generator
    from synthscope.registry import load_generator

    model = make(data=ageing, residual=False)
    train_generator(model, ageing, tmp_path, steps=2, progress=False)
    config_path = tmp_path / "config.json"
    config = json.loads(config_path.read_text())
    del config["model"]["options"]["residual"]  # as a run written before the option existed
    config_path.write_text(json.dumps(config))
    loaded = load_generator(tmp_path)
    assert loaded.options["residual"] is False
    assert torch.equal(model.translate(ageing.inputs), loaded.translate(ageing.inputs))


@pytest.mark.parametrize("kind", ["pix2pix", "cyclegan"])
def test_training_snapshots_show_the_first_inputs_translated(kind, ageing, unpaired_ageing, tmp_path):
    from PIL import Image

    from synthscope.generators.training import train_generator

    data = training_set(kind, ageing, unpaired_ageing)
    model = make(kind, data)
    before = torch.get_rng_state()
    images, per_row = model.snapshot(data, seed=0)
    assert torch.equal(before, torch.get_rng_state())  # a snapshot leaves training's random stream alone
    assert per_row == 4 and images.shape == (12, 3, 16, 16)
    assert torch.equal(images[:4], data.inputs[:4]) and torch.equal(images[4:8], model.translate(data.inputs[:4]))
    if kind == "pix2pix":  # paired: the third row is the truth
        assert torch.equal(images[8:], data.images[:4])
    else:  # unpaired: the third row is the round trip
        assert torch.equal(images[8:], model.translate_back(images[4:8]))
    train_generator(model, data, tmp_path, steps=4, snapshot_every=2, progress=False)
    shots = sorted((tmp_path / "snapshots").iterdir())
    assert [p.name for p in shots] == ["step_000002.png", "step_000004.png"]
    with Image.open(shots[0]) as grid:  # 4 columns, 3 rows of 16 px images, 1 px padding
        assert grid.size == (4 * 17 + 1, 3 * 17 + 1)


def test_the_image_pool_stores_then_swaps_half_of_its_queries_for_older_images():
    from synthscope.generators.translation import ImagePool

    pool = ImagePool(4)
    first = torch.arange(4.0).view(4, 1, 1, 1)
    assert torch.equal(pool.query(first), first) and torch.equal(pool.images, first)  # filling: returned as is
    torch.manual_seed(0)
    later = torch.arange(100.0, 300.0).view(200, 1, 1, 1)
    out = pool.query(later)
    swapped = ~torch.eq(out, later).view(-1)
    assert 0.35 < swapped.float().mean() < 0.65  # even odds
    stored_before = set(range(4)) | set(range(100, 300))
    assert set(out.view(-1).tolist()) <= stored_before and len(pool.images) == 4
    assert torch.equal(ImagePool(0).query(later), later)


def test_a_resumed_cyclegan_continues_with_its_image_pools(unpaired_ageing, tmp_path):
    from synthscope.generators.training import train_generator

    straight = make("cyclegan", unpaired_ageing, pool_size=2)  # full after one step: later steps swap
    train_generator(straight, unpaired_ageing, tmp_path / "straight", steps=6, progress=False)
    train_generator(make("cyclegan", unpaired_ageing, pool_size=2), unpaired_ageing, tmp_path / "split", steps=3,
                    progress=False)
    resumed = train_generator(make("cyclegan", unpaired_ageing, pool_size=2), unpaired_ageing,
                              tmp_path / "split", steps=6, progress=False)
    assert resumed.resumed_from == 3
    for key, value in straight.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    assert torch.equal(straight.pools["b"].images, resumed.model.pools["b"].images)


def test_cyclegan_round_trip_returns_to_the_input_domain(unpaired_ageing, tmp_path):
    from synthscope.generators.training import train_generator

    model = make("cyclegan", unpaired_ageing)
    run = train_generator(model, unpaired_ageing, tmp_path, steps=30, progress=False)
    older = model.translate(unpaired_ageing.inputs)
    back = model.translate_back(older)
    assert back.shape == unpaired_ageing.inputs.shape
    assert run.history["loss_cycle"].iloc[-5:].mean() < run.history["loss_cycle"].iloc[:5].mean()
    with pytest.raises(UserError, match="cyclegan: a translation model is conditioned on its input image"):
        make("cyclegan", unpaired_ageing, conditional=True)


def test_resume_refuses_other_inputs(ageing, tmp_path):
    from synthscope.generators.training import train_generator

    train_generator(make(data=ageing), ageing, tmp_path, steps=1, progress=False)
    other = translation_set(to_grey_set(ageing), ageing, paired=True)
    with pytest.raises(UserError, match="trained on different data"):
        train_generator(make(data=other), other, tmp_path, steps=2, progress=False)


def to_grey_set(data):
    from synthscope.generators.imageset import ImageSet

    return ImageSet("grey", to_grey(data.inputs), data.input_attributes, data.captions)


def test_pix2pix_refuses_unpaired_data_and_plain_images(ageing, tmp_path):
    from synthscope.generators.training import train_generator

    a, b = portrait_pairs(6, "age:young->older", seed=0, size=16, paired=False)
    unpaired = translation_set(a, b, paired=False)
    with pytest.raises(UserError, match="pix2pix learns from pairs .* is unpaired"):
        train_generator(make(data=unpaired), unpaired, tmp_path / "u", steps=1, progress=False)
    with pytest.raises(UserError, match="pix2pix translates images: train it on a translation set"):
        train_generator(make(data=ageing), b, tmp_path / "p", steps=1, progress=False)
    with pytest.raises(UserError, match="use 'synthscope generate translate"):
        make(data=ageing).sample(2)
    with pytest.raises(UserError, match="levels=5 halves the image 5 times"):
        make(data=ageing, levels=5)


def test_pix2pix_learns_the_pairs(ageing, tmp_path):
    from synthscope.generators.training import train_generator

    model = make(data=ageing)
    run = train_generator(model, ageing, tmp_path, steps=40, progress=False)
    assert run.history["loss_l1"].iloc[-5:].mean() < run.history["loss_l1"].iloc[:5].mean()


# -- the commands --------------------------------------------------------------------------------

TINY = ["--size", "16", "--n", "10", "--steps", "2", "--quiet", "--device", "cpu",
        "--set", "width=4", "--set", "levels=3", "--set", "d_width=4", "--set", "batch_size=4"]


def test_train_and_translate_write_a_corpus_linking_outputs_to_inputs(tmp_path, capsys):
    import pandas as pd
    from PIL import Image

    from synthscope.cli import main
    from synthscope.generators.corpus import read_corpus

    run = tmp_path / "run"
    assert main(["generate", "train", "--model", "pix2pix", "--data", "portraits",
                 "--translate", "age:young->older", "--out", str(run), *TINY]) == 0
    assert "trained pix2pix to step 2" in capsys.readouterr().out
    config = pd.read_json(run / "config.json", typ="series")
    assert config["data"]["translate"] == "age:young->older" and config["data"]["paired"]

    inputs = tmp_path / "faces"
    inputs.mkdir()
    a, _ = portrait_pairs(3, "age:young->older", seed=7, size=16)
    for i, image in enumerate(a.images):
        Image.fromarray((image.permute(1, 2, 0).numpy() * 255).round().astype("uint8")).save(inputs / f"p{i}.png")
    out = tmp_path / "older"
    assert main(["generate", "translate", str(run), str(inputs), "--out", str(out), "--quiet"]) == 0
    corpus = read_corpus(out)
    assert list(corpus.manifest["input_file"]) == [(inputs / f"p{i}.png").as_posix() for i in range(3)]
    assert set(corpus.manifest["source"]) == {"pix2pix"}
    assert corpus.load_images(progress=False).shape == (3, 3, 16, 16)
    # Run again: nothing is translated twice.
    assert main(["generate", "translate", str(run), str(inputs), "--out", str(out), "--quiet"]) == 0
    assert len(read_corpus(out)) == 3
    # The corpus names its source relative to itself: moved together with it, it still resumes.
    assert read_corpus(out).provenance["data"] == "../faces"
    moved = tmp_path / "moved"
    moved.mkdir()
    inputs, out = inputs.rename(moved / "faces"), out.rename(moved / "older")
    assert main(["generate", "translate", str(run), str(inputs), "--out", str(out), "--quiet"]) == 0
    assert len(read_corpus(out)) == 3
    # An entry naming the source by its absolute path (as older corpora did) still matches it, and
    # the new form of the entry is recorded as a change ...
    record = out / "corpus.json"
    record.write_text(record.read_text().replace('"../faces"', json.dumps(str(inputs.resolve()))))
    with pytest.warns(UserWarning, match="with different data; recorded in corpus.json"):
        assert main(["generate", "translate", str(run), str(inputs), "--out", str(out), "--quiet"]) == 0
    # ... while other inputs never join the corpus
    other = tmp_path / "other"
    shutil.copytree(inputs, other)
    assert main(["generate", "translate", str(run), str(other), "--out", str(out), "--quiet"]) == 2
    assert "holds a corpus made with other data" in capsys.readouterr().err
    assert len(read_corpus(out)) == 3


def test_cyclegan_trains_on_grey_to_colour_from_the_command_line(tmp_path, capsys):
    from synthscope.cli import main

    assert main(["generate", "train", "--model", "cyclegan", "--data", "portraits", "--translate", "colour",
                 "--out", str(tmp_path / "run"), *TINY]) == 0
    config = (tmp_path / "run" / "config.json").read_text()
    assert '"paired": false' in config and '"translate": "colour:grey->colour"' in config


def make_folders(root, names_a, names_b):
    from PIL import Image

    for side, names in (("A", names_a), ("B", names_b)):
        (root / side).mkdir(parents=True)
        for k, name in enumerate(names):
            Image.new("RGB", (16, 16), (10 * k, 100, 200)).save(root / side / name)


def test_paired_folders_train_pix2pix(tmp_path, capsys):
    from synthscope.cli import main

    make_folders(tmp_path / "data", ["x.png", "y.png", "z.png", "w.png"], ["w.png", "x.png", "y.png", "z.png"])
    assert main(["generate", "train", "--model", "pix2pix", "--data", str(tmp_path / "data"),
                 "--out", str(tmp_path / "run"), *TINY]) == 0


@pytest.mark.parametrize("argv, message", [
    (["--model", "pix2pix", "--data", "portraits", "--translate", "hair:dark->grey"],
     "unknown attribute 'hair'; known: age"),
    (["--model", "pix2pix", "--data", "portraits"], "say what to translate"),
    (["--model", "gan", "--data", "portraits", "--translate", "colour"], "needs a translation model"),
    (["--model", "pix2pix", "--data", "FOLDERS"], "pix2pix learns from pairs .* is unpaired"),
    (["--model", "cyclegan", "--data", "digits"], "translates between two domains"),
])
def test_bad_translation_input_is_one_clear_error(argv, message, tmp_path, capsys):
    from synthscope.cli import main

    make_folders(tmp_path / "data", ["a.png", "b.png", "c.png"], ["d.png", "e.png", "f.png"])
    argv = [str(tmp_path / "data") if arg == "FOLDERS" else arg for arg in argv]
    assert main(["generate", "train", *argv, "--out", str(tmp_path / "run"), *TINY]) == 2
    err = capsys.readouterr().err
    assert err.count("synthscope: error:") == 1 and "Traceback" not in err
    assert pytest.importorskip("re").search(message, err)


def test_translate_refuses_a_model_that_does_not_translate(tmp_path, capsys):
    from synthscope.cli import main

    assert main(["generate", "train", "--model", "ae", "--data", "digits", "--n", "8", "--steps", "1",
                 "--no-eval", "--quiet", "--set", "width=4", "--set", "batch_size=4",
                 "--out", str(tmp_path / "ae")]) == 0
    capsys.readouterr()
    assert main(["generate", "translate", str(tmp_path / "ae"), str(tmp_path), "--out", str(tmp_path / "c")]) == 2
    assert "holds a ae, which draws new images" in capsys.readouterr().err


# -- evaluation: distance to the truth and attribute preservation --------------------------------

class Identity:
    """A "translator" that changes nothing."""

    kind = "identity"

    def translate(self, images):
        return images.clone()


class SwapsGender(Identity):
    """Changes nothing but the red channel, which the stub judge reads as gender presentation."""

    kind = "swaps-gender"

    def translate(self, images):
        out = images.clone()
        out[:, 0] = 1 - out[:, 0]
        return out


class StubJudge:
    """Reads gender from the mean red value and skin tone from the mean blue value: known readings."""

    def __init__(self):
        from synthscope.generators.conditioning import Vocabulary

        self.vocabulary = Vocabulary({"gender": ["female", "male"], "skin_tone": ["1", "2"], "age": ["young", "older"]})
        self.heldout_accuracy = {"gender": 0.9, "skin_tone": 0.8, "age": 0.7}

    def predict(self, images):
        def read(channel, values):
            high = images[:, channel].mean(dim=(1, 2)) > 0.5
            return ([values[int(h)] for h in high], None)

        return {"gender": read(0, ["female", "male"]), "skin_tone": read(2, ["1", "2"]),
                "age": read(1, ["young", "older"])}

    def features(self, images):
        return images.flatten(1).double().numpy()


def test_an_identity_translator_preserves_every_attribute(ageing):
    from synthscope.generators.quality import train_feature_classifier
    from synthscope.generators.translation_eval import evaluate_translation, judge_set

    judge = train_feature_classifier(judge_set(ageing), epochs=2, seed=0)
    result = evaluate_translation(Identity(), ageing.inputs, ageing.images, judge, changed="age")
    table = result.preservation.by_group
    assert list(table["attribute"]) == ["profession", "gender", "skin_tone"]  # age is meant to change
    assert (table["preserved"] == 1.0).all() and (table["k"] == 12).all()
    assert (table["preserved_ci_low"] < 1).all()  # 12 images: the interval says how little that is
    assert list(table["judge_accuracy"]) == [judge.heldout_accuracy[a] for a in table["attribute"]]
    assert result.changed().empty
    assert result.l1 == result.l1_identity == pytest.approx((ageing.inputs - ageing.images).abs().mean().item())
    assert result.frechet == pytest.approx(result.frechet_identity)
    assert "attribute,n,k,preserved,preserved_ci_low" in result.to_csv()


def test_an_output_that_swaps_gender_is_counted_as_changed():
    from synthscope.generators.translation_eval import evaluate_translation

    inputs = torch.zeros(6, 3, 8, 8)
    inputs[:2, 0] = 1  # two read as male, four as female; all skin tone 1
    truth = inputs.clone()
    result = evaluate_translation(SwapsGender(), inputs, truth, StubJudge(), changed="age")
    table = result.preservation.by_group.set_index("attribute")
    assert table.loc["gender", "k"] == 0 and table.loc["skin_tone", "k"] == 6
    assert table.loc["gender", "truth_preserved"] == 1.0  # the truth keeps gender; the model does not
    changed = result.changed()
    assert changed.to_dict("records") == [
        {"attribute": "gender", "input_value": "female", "output_value": "male", "count": 4},
        {"attribute": "gender", "input_value": "male", "output_value": "female", "count": 2}]
    assert result.l1 > result.l1_identity == 0
    cells = result.changes.by_group
    assert len(cells) == 8  # complete: every input x output value of gender and skin tone
    assert result.to_dict()["attribute_preservation"]["gender"]["preserved"] == 0.0


class AgesHalf(Identity):
    """Raises the green channel (read as older by the stub judge) of every other image only."""

    kind = "ages-half"

    def translate(self, images):
        out = images.clone()
        out[::2, 1] = 1
        return out


def test_the_share_of_outputs_read_with_the_target_value_is_measured_beside_inputs_and_truth():
    from synthscope.generators.translation_eval import evaluate_translation

    inputs = torch.zeros(8, 3, 8, 8)  # all read as young
    truth = inputs.clone()
    truth[:, 1] = 1  # all read as older
    result = evaluate_translation(AgesHalf(), inputs, truth, StubJudge(), changed="age",
                                  translation="age:young->older")
    reached = result.reached.by_group.set_index("images")
    assert list(reached.index) == ["outputs", "inputs", "true targets"]
    assert reached.loc["outputs", "k"] == 4 and reached.loc["outputs", "reached"] == 0.5
    assert reached.loc["inputs", "reached"] == 0 and reached.loc["true targets", "reached"] == 1
    assert reached.loc["outputs", "reached_ci_low"] < 0.5 < reached.loc["outputs", "reached_ci_high"]
    assert "read as older by the judge: 50% [" in "\n".join(result.summary_lines())
    assert result.to_dict()["read_as_target"]["outputs"]["k"] == 4
    # A translation the judge has no head for (colour) measures no reached share.
    assert evaluate_translation(AgesHalf(), inputs, truth, StubJudge(), changed="colour",
                                translation="colour:grey->colour").reached is None


def test_training_writes_the_evaluation_and_visuals_into_the_run_folder(tmp_path, capsys):
    import json

    import pandas as pd

    from synthscope.cli import main

    run = tmp_path / "run"
    assert main(["generate", "train", "--model", "cyclegan", "--data", "portraits",
                 "--translate", "age:young->older", "--out", str(run), *TINY]) == 0
    out = capsys.readouterr().out
    assert "L1 to the true target" in out and "gender preserved" in out and "round trip" in out
    assert "the way back, true B -> A" in out and "read as older by the judge" in out
    result = json.loads((run / "translation.json").read_text())
    assert result["translation"] == "age:young->older" and result["n_heldout"] == 2
    assert result["l1_to_target"] > 0 and result["round_trip_l1"] >= 0 and result["backward_l1_to_input"] > 0
    preservation = pd.read_csv(run / "attribute_preservation.csv")
    assert list(preservation["attribute"]) == ["profession", "gender", "skin_tone"]
    assert {"input_value", "output_value", "count"} <= set(pd.read_csv(run / "attribute_changes.csv").columns)
    assert {p.name for p in (run / "visuals").glob("*.png")} == {"loss_curve.png", "translations.png",
                                                                "round_trip.png", "backward.png",
                                                                "training_progress.png"}
    assert sorted(p.name for p in (run / "snapshots").iterdir()) == ["step_000002.png"]  # at least the last


def test_no_eval_writes_no_evaluation(tmp_path, capsys):
    from synthscope.cli import main

    run = tmp_path / "run"
    assert main(["generate", "train", "--model", "pix2pix", "--data", "portraits",
                 "--translate", "age:young->older", "--out", str(run), "--no-eval", *TINY]) == 0
    assert "preserved" not in capsys.readouterr().out
    assert (run / "model.safetensors").exists()
    for name in ("translation.json", "attribute_preservation.csv", "attribute_changes.csv", "visuals", "judge"):
        assert not (run / name).exists(), name


def test_pix2pix_and_cyclegan_on_the_same_portraits_are_read_by_one_judge_trained_once(tmp_path, monkeypatch):
    import json

    import synthscope.generators.quality as quality
    from synthscope.generators.evaluation import JUDGE_RECORD
    from synthscope.generators.translate_run import load_translation_data, train_translation
    from synthscope.generators.workflow import training_split

    trained = []
    real_training = quality.train_feature_classifier
    monkeypatch.setattr(quality, "train_feature_classifier",
                        lambda data, **kw: trained.append(len(data)) or real_training(data, epochs=1, **kw))
    judges = tmp_path / "judge"
    for kind in ("pix2pix", "cyclegan"):
        run = train_translation(kind, "portraits", tmp_path / kind, translate="age:young->older", steps=2, n=20,
                                size=16, device="cpu", progress=False, judge_dir=judges, snapshots=1,
                                options={"width": 4, "levels": 3, "d_width": 4, "batch_size": 4})
        assert run.evaluation.reached is not None  # read by the judge
    # Both domains of pix2pix's training split (the paired draw), whichever model was judged.
    paired_train = training_split(load_translation_data("pix2pix", "portraits", "age:young->older", size=16, n=20),
                                  0)[0]
    assert trained == [2 * len(paired_train)]
    assert json.loads((judges / JUDGE_RECORD).read_text())["n_images"] == 2 * len(paired_train)
