"""Audit annotators: the portraits probe (accuracy, abstention, validity, resizing), CLIP zero-shot with a tiny
open_clip model built from a config, and annotate()'s tidy table and per-annotator cache."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from synthscope.audits.annotators import (
    ANNOTATIONS_FILE,
    ANNOTATORS_FILE,
    PROMPTS_FILE,
    SKIN_TONE_LABELS,
    TABLE_COLUMNS,
    ClipZeroShotAnnotator,
    ProbeAnnotator,
    annotate,
    annotator_from_spec,
    corpus_metadata,
    read_annotations,
)
from synthscope.audits.labels import truth_from_corpus
from synthscope.audits.metrics import confusion
from synthscope.audits.metrics import ABSTAIN, attribute_shares, prepare_annotations
from synthscope.audits.spec import DEFAULT_CLIP_LABELS, ClipAnnotatorSpec, ProbeAnnotatorSpec
from synthscope.generators.corpus import CorpusWriter, read_corpus
from synthscope.generators.portraits import PortraitDistribution, generate_portraits
from synthscope.generators.workflow import export_builtin
from tiny_clip import TINY_TEXT, TINY_TEXT_CONFIG, make_tiny_clip

N_TRAIN = 500  # enough for a 16 px probe to read gender and profession reliably, trains in seconds




@pytest.fixture(scope="module")
def probe():
    return ProbeAnnotator(size=16, n_train=N_TRAIN, seed=0)


@pytest.fixture(scope="module")
def portraits(tmp_path_factory):
    """48 real portraits at 16 px with their ground truth in the manifest."""
    return export_builtin("portraits", tmp_path_factory.mktemp("portraits") / "corpus", n=48, size=16, progress=False)


def test_probe_reads_real_portraits_accurately_into_the_tidy_table(probe, portraits, tmp_path):
    table = annotate(portraits, [probe], out_dir=tmp_path, progress=False)
    assert list(table.columns) == list(TABLE_COLUMNS)
    assert len(table) == 48 * 3 and set(table["attribute"]) == {"gender", "skin_tone", "age"}
    assert (table["annotator"] == "probe").all() and table["confidence"].between(0, 1).all()
    assert table["image_id"].str.startswith("portraits#").all()
    prepare_annotations(table)  # the metrics accept it as it is
    truth = truth_from_corpus(portraits)
    gender = confusion(table, truth, "gender")
    assert gender.n == 48 and gender.accuracy >= 0.9 and gender.ci_low < gender.accuracy <= gender.ci_high
    assert list(gender.matrix.columns) == ["female", "male", ABSTAIN]
    # everything is written beside: the table (read back with its types), the annotator's description
    again = read_annotations(tmp_path / ANNOTATIONS_FILE)
    assert len(again) == len(table) and set(again["value"]) <= {*table["value"]}
    assert again.loc[again["attribute"] == "skin_tone", "value"].isin([*"123456", ABSTAIN]).all()
    described = json.loads((tmp_path / ANNOTATORS_FILE).read_text())["annotators"][0]
    assert described["kind"] == "probe" and described["size"] == 16 and "perceived" in described["caveat"]


def test_a_strict_threshold_abstains_and_the_cache_makes_it_free(probe, portraits, tmp_path, monkeypatch):
    annotate(portraits, [probe], out_dir=tmp_path, progress=False)
    strict = ProbeAnnotator(size=16, n_train=N_TRAIN, seed=0, abstain_below=0.999)
    monkeypatch.setattr(ProbeAnnotator, "scores", lambda *a: pytest.fail("annotated again despite the cache"))
    table = annotate(portraits, [strict], out_dir=tmp_path, progress=False)
    abstained = table["value"] == ABSTAIN
    assert abstained.any() and (table.loc[abstained, "confidence"] < 0.999).all()
    assert (table.loc[~abstained, "value"] == table.loc[~abstained, "predicted"]).all()
    age = confusion(table, truth_from_corpus(portraits), "age")
    assert age.n_abstained == int(abstained[table["attribute"] == "age"].sum()) > 0
    shares = attribute_shares(table)  # abstentions are counted by the metrics, not dropped
    assert shares.loc[shares["is_abstention"], "count"].sum() == abstained.sum()


def test_a_kept_probe_is_read_without_drawing_its_training_portraits_unless_the_drawing_changed(tmp_path,
                                                                                                  monkeypatch):
    import synthscope.generators.portraits as portraits_module
    import synthscope.generators.quality as quality
    from synthscope.audits.annotators import PROBE_SAMPLE_DRAWN

    drawn, trained = [], []
    draw, train = portraits_module.generate_portraits, quality.train_feature_classifier
    monkeypatch.setattr(portraits_module, "generate_portraits", lambda n, **kw: drawn.append(n) or draw(n, **kw))
    monkeypatch.setattr(quality, "train_feature_classifier",
                        lambda data, **kw: trained.append(len(data)) or train(data, epochs=1, **kw))
    first = ProbeAnnotator(size=16, n_train=64, seed=0, cache_dir=tmp_path).classifier
    assert drawn == [PROBE_SAMPLE_DRAWN, 64] and trained == [64]
    drawn.clear()
    again = ProbeAnnotator(size=16, n_train=64, seed=0, cache_dir=tmp_path).classifier
    assert drawn == [PROBE_SAMPLE_DRAWN] and trained == [64]  # kept: read, not drawn nor trained again
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), again.state_dict().values()))
    # portraits drawn differently now (a changed drawing): the kept probe no longer fits them
    monkeypatch.setattr(portraits_module, "generate_portraits",
                        lambda n, **kw: drawn.append(n) or draw(n, **kw).subset(range(n - 1, -1, -1)))
    ProbeAnnotator(size=16, n_train=64, seed=0, cache_dir=tmp_path).classifier
    assert trained == [64, 64]


def test_validity_on_fresh_portraits_reports_accuracy_confusion_and_abstentions(probe):
    validity = probe.validity(n=120).set_index("attribute")
    assert list(validity.index) == ["gender", "skin_tone", "age"]
    assert validity.loc["gender", "accuracy"] >= 0.9 and validity.loc["gender", "n"] == 120
    for attribute, row in validity.iterrows():
        matrix = pd.DataFrame(row["confusion"]).T
        assert matrix.to_numpy().sum() == 120 and ABSTAIN in matrix.columns
        assert row["n_correct"] == sum(matrix.loc[v, v] for v in matrix.index if v in matrix.columns)
        assert row["abstention_rate"] == row["n_abstained"] / 120
        assert row["accuracy_ci_low"] <= row["accuracy"] <= row["accuracy_ci_high"]
    strict = ProbeAnnotator(classifier=probe.classifier, abstain_below=0.999).validity(n=120)
    assert (strict["abstention_rate"] > 0).any()


def test_images_of_another_size_are_resized_to_the_probe(probe):
    data = generate_portraits(n=60, seed=5, size=32, distribution=PortraitDistribution.uniform())
    rows = probe.predict(data.images, [str(i) for i in range(60)])
    gender = rows[rows["attribute"] == "gender"]
    assert (gender["predicted"].to_numpy() == data.attributes["gender"].to_numpy()).mean() >= 0.8


def test_annotate_resumes_and_annotates_only_new_or_changed_images(probe, tmp_path, monkeypatch):
    data = generate_portraits(n=30, seed=2, size=16)
    corpus = tmp_path / "corpus"
    CorpusWriter(corpus, {"generator": "g"}).append(data.images[:20], [{"key": f"k{i}", "prompt": "a doctor",
                                                                        "profession": "doctor"} for i in range(20)])
    seen = []
    scores = ProbeAnnotator.scores

    def counting(self, images):
        seen.append(len(images))
        return scores(self, images)

    monkeypatch.setattr(ProbeAnnotator, "scores", counting)
    first = annotate(corpus, [probe], out_dir=tmp_path / "audit", batch_size=8, progress=False)
    assert sum(seen) == 20 and len(first) == 60
    CorpusWriter(corpus, {"generator": "g"}).append(data.images[20:], [{"key": f"k{i}", "prompt": "a doctor",
                                                                        "profession": "doctor"}
                                                                       for i in range(20, 30)])
    seen.clear()
    second = annotate(corpus, [probe], out_dir=tmp_path / "audit", batch_size=8, progress=False)
    assert sum(seen) == 10 and len(second) == 90
    pd.testing.assert_frame_equal(second.iloc[:60], first)
    # an image replaced under the same id (a corpus rebuilt) is annotated again, not read from the cache
    (corpus / "images" / "000003.png").write_bytes((corpus / "images" / "000004.png").read_bytes())
    seen.clear()
    annotate(corpus, [probe], out_dir=tmp_path / "audit", progress=False)
    assert sum(seen) == 1
    # another annotator under the same name (other attributes, so another cache key) never reuses the cache
    seen.clear()
    other = ProbeAnnotator(size=16, n_train=N_TRAIN, seed=0, attributes=("gender", "profession"))
    with pytest.warns(UserWarning, match="other settings"):
        table = annotate(corpus, [other], out_dir=tmp_path / "audit", progress=False)
    assert sum(seen) == 30 and set(table["attribute"]) == {"gender", "profession"}


def test_metadata_is_taken_from_the_manifest_and_missing_columns_are_empty(tmp_path):
    images = torch.rand(3, 3, 16, 16)
    rows = [{"key": f"a#{i}", "prompt": "a photo of a nurse", "profession": "nurse", "template_index": "1",
             "descriptor": "", "guidance": "3.0"} for i in range(3)]
    CorpusWriter(tmp_path / "audit", {"generator": "g"}).append(images, rows)
    meta = corpus_metadata(read_corpus(tmp_path / "audit"))
    assert list(meta["image_id"]) == ["a#0", "a#1", "a#2"] and (meta["template"] == 1).all()
    assert (meta["guidance"] == 3.0).all() and (meta["profession"] == "nurse").all()
    plain = tmp_path / "plain" / "sub"
    plain.mkdir(parents=True)
    (plain / "x.png").write_bytes((tmp_path / "audit" / "images" / "000000.png").read_bytes())
    meta = corpus_metadata(read_corpus(tmp_path / "plain"))
    assert list(meta["image_id"]) == ["sub/x.png"] and meta.loc[0, "prompt"] == "" and np.isnan(meta.loc[0, "template"])


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    return make_tiny_clip(tmp_path_factory.mktemp("tiny-clip-text"), TINY_TEXT, TINY_TEXT_CONFIG)


def test_clip_zero_shot_runs_with_a_local_checkpoint_and_records_its_prompts(tiny_clip, portraits, tmp_path):
    labels = {**DEFAULT_CLIP_LABELS, "skin_tone": SKIN_TONE_LABELS}
    clip = ClipZeroShotAnnotator(TINY_TEXT, pretrained=None, checkpoint=tiny_clip, labels=labels, abstain_below=0.4)
    table = annotate(portraits, [clip], out_dir=tmp_path, progress=False)
    assert len(table) == 48 * 3 and (table["annotator"] == "clip").all()
    for attribute, values in labels.items():
        part = table[table["attribute"] == attribute]
        assert part["value"].isin([*values, ABSTAIN]).all() and part["predicted"].isin(list(values)).all()
        assert part["confidence"].between(1 / len(values) - 1e-9, 1).all()
    probabilities = clip.probabilities(torch.rand(4, 3, 32, 32))
    for values, p in probabilities.values():
        assert np.allclose(p.sum(axis=1), 1.0)
    prompts = pd.read_csv(tmp_path / PROMPTS_FILE, dtype=str)
    assert {"a photo of a woman", "a photo of a man", "a photo of a person with dark skin"} <= set(prompts["prompt"])
    assert set(prompts.columns) == {"annotator", "attribute", "value", "prompt"}
    described = json.loads((tmp_path / ANNOTATORS_FILE).read_text())["annotators"][0]
    assert described["labels"]["gender"]["female"] == ["a photo of a woman"] and described["checkpoint_sha256"]
    # features are cached like the detector's: a second annotator on the same images encodes nothing
    again = ClipZeroShotAnnotator(TINY_TEXT, pretrained=None, checkpoint=tiny_clip, labels=labels)
    annotate(portraits, [again], progress=False)
    assert again.encoder.images_encoded == 0


def test_annotators_from_spec(tiny_clip, probe):
    clip = annotator_from_spec(ClipAnnotatorSpec(model=TINY_TEXT, pretrained=str(tiny_clip), abstain_below=0.5))
    assert isinstance(clip, ClipZeroShotAnnotator) and clip.encoder.checkpoint and clip.attributes == ("gender", "age")
    assert clip.abstain_below == 0.5 and len(clip.prompts()) == 5
    spec_probe = annotator_from_spec(ProbeAnnotatorSpec(attributes=("gender",), abstain_below=0.7), size=16,
                                     n_train=N_TRAIN)
    assert isinstance(spec_probe, ProbeAnnotator) and spec_probe.folder == probe.folder
    with pytest.raises(ValueError, match="probe reads"):
        ProbeAnnotator(attributes=("hair",))
