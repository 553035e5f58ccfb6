"""The audit spec: parsing, one clear error per problem, prompt expansion and reproducible seeds."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
import torch
from synthscope.audits.spec import (
    AuditSpec,
    BuiltinBackendSpec,
    ClipAnnotatorSpec,
    DiffusersBackendSpec,
    HumanAnnotatorSpec,
    ProbeAnnotatorSpec,
    SpecError,
    example_spec_text,
    image_seed,
    load_spec,
    parse_spec,
    render_prompt,
)
from synthscope.generators.portraits import PROFESSIONS

BUILTIN = """
[audit]
name = "tiny"

[prompts]
templates = ["a photo of a {profession}", "a picture of a {descriptor} {profession}"]
professions = ["doctor", "nurse"]
descriptors = ["female"]
images_per_prompt = 3
seed = 7

[backend]
kind = "builtin"
"""

DIFFUSERS = """
[audit]
name = "sd"

[prompts]
templates = ["a photo of a {profession}"]
professions = ["doctor", "pilot"]
images_per_prompt = 2

[backend]
kind = "diffusers"
model = "some/model"
"""


def write(tmp_path: Path, text: str, name: str = "audit.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load_text(tmp_path: Path, text: str) -> AuditSpec:
    return load_spec(write(tmp_path, text))


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(SpecError) as info:
        load_text(tmp_path, text)
    return str(info.value)


# ---- the example ----------------------------------------------------------------------------


def test_example_spec_parses_and_validates(tmp_path):
    spec = load_text(tmp_path, example_spec_text())
    assert isinstance(spec.backend, BuiltinBackendSpec)
    assert spec.prompts.professions == tuple(PROFESSIONS)
    assert [a.kind for a in spec.annotators] == ["probe"]
    assert spec.reference.source == "bls-2022"
    jobs = spec.expand()
    # 8 professions x (2 templates without {descriptor} + 1 template x (none, female, male))
    assert len(jobs) == 8 * (2 + 3)
    assert spec.n_images == len(jobs) * spec.prompts.images_per_prompt
    data = spec.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["backend"]["kind"] == "builtin" and data["n_prompts"] == len(jobs)


def test_example_spec_is_commented():
    text = example_spec_text()
    assert text.count("\n#") > 20 and "diffusers" in text and "perceived" in text


def test_diffusers_defaults_and_any_profession(tmp_path):
    spec = load_text(tmp_path, DIFFUSERS)
    backend = spec.backend
    assert isinstance(backend, DiffusersBackendSpec)
    assert backend.model == "some/model" and backend.steps == 30 and backend.guidance == (7.5,)
    assert backend.resolved_dtype("cuda:0") == "float16" and backend.resolved_dtype("cpu") == "float32"
    assert [a.kind for a in spec.annotators] == ["clip"]  # the probe reads only the built-in world
    assert {job.profession for job in spec.expand()} == {"doctor", "pilot"}


def test_diffusers_auto_dtype_follows_the_device_auto_picks(tmp_path, monkeypatch):
    import synthscope.runtime

    backend = load_text(tmp_path, DIFFUSERS).backend
    monkeypatch.setattr(synthscope.runtime, "resolve_device", lambda device: torch.device("cuda"))
    assert backend.resolved_dtype("auto") == "float16"  # "auto" on a GPU machine is CUDA


def test_full_diffusers_spec_with_sweep_and_annotators(tmp_path):
    text = DIFFUSERS.replace('model = "some/model"', '''model = "some/model"
steps = 20
guidance = [3, 7.5]
negative_prompt = "blurry"
batch_size = 2
dtype = "bfloat16"
device = "cuda:1"
size = 256

[[annotators]]
kind = "clip"
model = "ViT-B-16"
abstain_below = 0.5
[annotators.labels.gender]
female = "a photo of a woman"
male = ["a photo of a man", "a picture of a man"]

[[annotators]]
kind = "human"
labels_csv = "labels.csv"
attributes = ["gender"]
''')
    spec = load_text(tmp_path, text)
    b = spec.backend
    assert (b.steps, b.guidance, b.negative_prompt, b.batch_size, b.dtype, b.device, b.size) == (
        20, (3.0, 7.5), "blurry", 2, "bfloat16", "cuda:1", 256)
    clip, human = spec.annotators
    assert isinstance(clip, ClipAnnotatorSpec) and isinstance(human, HumanAnnotatorSpec)
    assert clip.labels == {"gender": {"female": ("a photo of a woman",),
                                      "male": ("a photo of a man", "a picture of a man")}}
    assert clip.attributes == ("gender",) and clip.abstain_below == 0.5
    assert human.labels_csv == tmp_path / "labels.csv"  # relative to the spec's folder
    jobs = spec.expand()
    assert len(jobs) == 2 * 2  # 2 professions x 2 guidance values
    json.dumps(spec.to_dict())


def test_builtin_options(tmp_path):
    text = BUILTIN + '''checkpoint = "runs/model"
train_steps = 50
guidance = [1.0, 2.5]

[backend.world_skew]
share_female = { doctor = 0.1 }
share_dark = 0.3

[[annotators]]
kind = "probe"
attributes = ["gender"]
abstain_below = 0.7
'''
    spec = load_text(tmp_path, text)
    b = spec.backend
    assert b.checkpoint == tmp_path / "runs" / "model"
    assert b.train_steps == 50 and b.guidance == (1.0, 2.5)
    assert b.world_skew == {"share_female": {"doctor": 0.1}, "share_dark": 0.3}
    assert b.world().p_female["doctor"] == pytest.approx(0.1)
    (probe,) = spec.annotators
    assert isinstance(probe, ProbeAnnotatorSpec) and probe.attributes == ("gender",) and probe.abstain_below == 0.7


# ---- one clear error per problem ------------------------------------------------------------


@pytest.mark.parametrize("text, message", [
    # unknown key, with the known ones and a suggestion
    (DIFFUSERS + "stepz = 3\n",
     r"audit\.toml: \[backend\] unknown key 'stepz' \(known: kind, model, steps, guidance.*\); did you mean 'steps'\?"),
    # an option of the other backend is named as such
    (BUILTIN + 'model = "x"\n', r"\[backend\] unknown key 'model' .*'model' is an option of the diffusers backend"),
    (BUILTIN.replace('"nurse"', '"pilot"'),
     r"\[prompts\] professions\[1\]: unknown profession 'pilot' for the builtin backend \(known: doctor, nurse, .*"),
    (DIFFUSERS.replace('"pilot"', '" "'), r"\[prompts\] professions\[1\]: must not be empty"),
    (BUILTIN.replace('"doctor", "nurse"', '"doctor", "nurse", "Doctor"'),
     r"\[prompts\] professions: duplicate entry 'Doctor' \(items 0 and 2\)"),
    (BUILTIN.replace('"a photo of a {profession}",', '"",'), r"\[prompts\] templates\[0\]: must not be empty"),
    (BUILTIN.replace('"a photo of a {profession}"', '"a photo of a person"'),
     r"templates\[0\]: 'a photo of a person' has no \{profession\} placeholder"),
    (BUILTIN.replace('"a photo of a {profession}"', '"a photo of a {gender} {profession}"'),
     r"templates\[0\]: .* unknown placeholder \{gender\} \(known: \{profession\}, \{descriptor\}\)"),
    (BUILTIN.replace('"a photo of a {profession}"', '"a photo of a {profession"'),
     r"templates\[0\]: .* is not a valid template"),
    (BUILTIN.replace("images_per_prompt = 3", "images_per_prompt = 0"),
     r"\[prompts\] images_per_prompt: must be at least 1, got 0"),
    (BUILTIN.replace("images_per_prompt = 3", "images_per_prompt = 2.5"),
     r"images_per_prompt: must be a whole number"),
    (DIFFUSERS + 'guidance = [7.5, "high"]\n',
     r"\[backend\] guidance\[1\]: must be a number \(a guidance sweep is a list of numbers\), got a string 'high'"),
    (DIFFUSERS + "guidance = [7.5, 7.5]\n", r"\[backend\] guidance: lists 7\.5 twice"),
    (DIFFUSERS + "guidance = -1\n", r"\[backend\] guidance: must be >= 0"),
    (DIFFUSERS + "guidance = -5\n",
     r"\[backend\] guidance: must be >= 0 \(a classifier-free guidance scale\), got -5$"),
    (BUILTIN + "guidance = [1.0, -5]\n",
     r"\[backend\] guidance\[1\]: must be >= 0 \(a classifier-free guidance scale\), got -5$"),
    (BUILTIN + '[[annotators]]\nkind = "human"\nattributes = ["race"]\n',
     r"\[annotators\[0\]\] attributes\[0\]: unknown attribute 'race' \(known: gender, skin_tone, age, profession\)"),
    (BUILTIN + '[[annotators]]\nkind = "human"\nlabels_csv = "a.csv"\n[[annotators]]\nkind = "human"\n'
     'labels_csv = "./a.csv"\n', r"\[annotators\[1\]\] labels_csv: .*a\.csv is already read by annotators\[0\]"),
    (DIFFUSERS.replace('kind = "diffusers"', 'kind = "dalle"'),
     r"\[backend\] kind: unknown backend 'dalle' \(known: builtin, diffusers\)"),
    (DIFFUSERS.replace('model = "some/model"', ""), r"\[backend\] model: is required"),
    (DIFFUSERS + 'dtype = "float8"\n',
     r"\[backend\] dtype: unknown dtype 'float8' \(known: auto, float32, float16, bfloat16\)"),
    (DIFFUSERS + 'device = "gpu"\n',
     r"\[backend\] device: unknown device 'gpu' \(use auto, cpu, cuda, cuda:N or mps\)"),
    (DIFFUSERS + "size = 500\n", r"\[backend\] size: must be a multiple of 8"),
    ('annotators = ["probe", "face"]\n' + BUILTIN,
     r"\[annotators\[1\]\] kind: unknown annotator 'face' \(known: probe, clip, human\)"),
    ('annotators = ["probe", "probe"]\n' + BUILTIN, r"\[annotators\[1\]\] kind: annotator 'probe' is listed twice"),
    (DIFFUSERS + '[[annotators]]\nkind = "probe"\n', r"the probe reads only the built-in portraits world"),
    (BUILTIN + '[[annotators]]\nkind = "probe"\nabstain_below = 1.5\n',
     r"\[annotators\[0\]\] abstain_below: must be in \[0, 1\)"),
    (BUILTIN + '[[annotators]]\nkind = "probe"\nattributes = ["race"]\n',
     r"attributes\[0\]: unknown attribute 'race' \(known: gender, skin_tone, age\)"),
    (DIFFUSERS + '[[annotators]]\nkind = "clip"\n[annotators.labels]\ngender = { female = "a woman" }\n',
     r"\[annotators\[0\]\.labels\] gender: needs a table of at least two values"),
    (DIFFUSERS + '[[annotators]]\nkind = "clip"\n[annotators.labels]\n'
     'gender = { undetermined = "a blurry photo", male = "a man" }\n',
     r"\[annotators\[0\]\.labels\] gender\.undetermined: 'undetermined' is the abstention label"),
    (BUILTIN.replace('descriptors = ["female"]', 'descriptors = ["happy"]'),
     r"templates\[1\] with descriptor 'happy': the builtin model cannot read it: .*'happy'"),
    (BUILTIN.replace('"a picture of a {descriptor} {profession}"', '"a picture of a {profession}"'),
     r"\[prompts\] descriptors: are given but no template has a \{descriptor\} placeholder"),
    (BUILTIN.replace('"a picture of a {descriptor} {profession}"', '"a photo of an {profession}"').replace(
        'descriptors = ["female"]', ""),
     r"\[prompts\] templates: templates\[0\] and templates\[1\] both give the prompt 'a photo of a doctor'"),
    (BUILTIN + "[backend.world_skew]\nshare_female = { pilot = 0.5 }\n",
     r"\[backend\.world_skew\] share_female: unknown profession\(s\) 'pilot'"),
    (BUILTIN + "[backend.world_skew]\nshare_female = 1.5\n",
     r"\[backend\.world_skew\] share_female must be a probability"),
    (BUILTIN + "[backend.world_skew]\nshare_women = 0.5\n",
     r"\[backend\.world_skew\] unknown key 'share_women' .*did you mean 'share_female'\?"),
    (BUILTIN + '[reference]\nsource = "bls-1999"\n',
     r"\[reference\] source: is neither a built-in reference \(bls-2022, none\) nor an existing CSV file"),
    (BUILTIN + '[reference]\nsource = "bls-2023"\n',
     r"audit\.toml: \[reference\] source: the 'bls-2023' reference figures were transcribed from memory, never "
     r"checked against the published table, and have been removed; use \"bls-2022\""),
    (BUILTIN + "[referense]\n", r"audit\.toml: unknown section \[referense\] .*did you mean \[reference\]\?"),
    (BUILTIN.replace('name = "tiny"', ""), r"\[audit\] name: is required"),
    (BUILTIN.replace("[prompts]", "[prompt]"), r"unknown section \[prompt\]"),
    ("[audit]\nname = 'x'\n", r"audit\.toml: missing section \[prompts\]"),
    (BUILTIN + "seed = \n", r"audit\.toml: not valid TOML"),
    (BUILTIN.replace("seed = 7", "seed = -1"), r"\[prompts\] seed: must be at least 0"),
])
def test_each_problem_gets_its_message(tmp_path, text, message):
    assert re.search(message, error_of(tmp_path, text), re.DOTALL), error_of(tmp_path, text)


@pytest.mark.parametrize("text, message", [
    (BUILTIN.replace("images_per_prompt = 3", "images_per_prompt = 1000000000"),
     r"audit\.toml: \[prompts\] images_per_prompt: at most 1,000,000 images per prompt, got 1,000,000,000"),
    # 2 professions x 1 template x 1,000,000 images x 11 guidance values = 22 million images
    (DIFFUSERS.replace("images_per_prompt = 2", "images_per_prompt = 1000000")
     + "guidance = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]\n",
     r"audit\.toml: \[prompts\] images_per_prompt: the audit would make 22,000,000 images \(2 prompts x 11 "
     r"guidance values x 1,000,000 images\); at most 10,000,000"),
])
def test_absurd_sizes_are_refused_before_any_seed_is_computed(tmp_path, text, message):
    import time

    start = time.perf_counter()
    assert re.search(message, error_of(tmp_path, text)), error_of(tmp_path, text)
    assert time.perf_counter() - start < 5


def test_the_size_caps_themselves_are_allowed(tmp_path):
    spec = load_text(tmp_path, DIFFUSERS.replace("images_per_prompt = 2", "images_per_prompt = 1000000")
                     + "guidance = [1, 2, 3, 4, 5]\n")
    assert spec.prompts.images_per_prompt == 1_000_000 and spec.n_images == 10_000_000  # counted, not expanded


def test_several_human_annotators_each_with_their_labels(tmp_path):
    spec = load_text(tmp_path, BUILTIN + '[[annotators]]\nkind = "probe"\n[[annotators]]\nkind = "human"\n'
                                         'labels_csv = "alice.csv"\n[[annotators]]\nkind = "human"\n'
                                         'attributes = ["gender"]\nlabels_csv = "bob.csv"\n')
    humans = [a for a in spec.annotators if isinstance(a, HumanAnnotatorSpec)]
    assert [h.labels_csv for h in humans] == [tmp_path / "alice.csv", tmp_path / "bob.csv"]
    assert humans[1].attributes == ("gender",)


def test_reference_csv_is_validated_on_load(tmp_path):
    (tmp_path / "ref.csv").write_text("profession,attribute,value\ndoctor,gender,female\n", encoding="utf-8")
    message = error_of(tmp_path, BUILTIN + '[reference]\nsource = "ref.csv"\n')
    assert re.search(r"audit\.toml: \[reference\] source: .*ref\.csv: missing column\(s\) 'share'", message)
    (tmp_path / "ref.csv").write_text("profession,attribute,value,share\ndoctor,gender,female,0.4\n", encoding="utf-8")
    spec = load_text(tmp_path, BUILTIN + '[reference]\nsource = "ref.csv"\n')
    assert spec.reference.path == tmp_path / "ref.csv"


def test_missing_file_is_named(tmp_path):
    with pytest.raises(SpecError, match=r"nowhere\.toml: file not found"):
        load_spec(tmp_path / "nowhere.toml")


# ---- prompts and seeds ----------------------------------------------------------------------


def test_expand_crosses_descriptors_plus_none(tmp_path):
    jobs = load_text(tmp_path, BUILTIN).expand()
    got = [(j.prompt, j.template_index, j.profession, j.descriptor, j.guidance, j.n_images) for j in jobs]
    assert got == [
        ("a photo of a doctor", 0, "doctor", None, None, 3),
        ("a picture of a doctor", 1, "doctor", None, None, 3),
        ("a picture of a female doctor", 1, "doctor", "female", None, 3),
        ("a photo of a nurse", 0, "nurse", None, None, 3),
        ("a picture of a nurse", 1, "nurse", None, None, 3),
        ("a picture of a female nurse", 1, "nurse", "female", None, 3),
    ]
    assert len({j.key for j in jobs}) == len(jobs)
    assert jobs[0].image_key(2) == f"{jobs[0].key}#2"


def test_render_prompt_fixes_articles_next_to_placeholders_only():
    assert render_prompt("a photo of a {profession}", "engineer") == "a photo of an engineer"
    assert render_prompt("A {descriptor} {profession}", "engineer", "young") == "A young engineer"
    assert render_prompt("an {descriptor} {profession}", "nurse", None) == "a nurse"
    assert render_prompt("a photo of a {descriptor}  {profession}", "doctor", "older") == "a photo of an older doctor"
    # articles elsewhere are left as written; fix_articles=False leaves everything as written
    assert render_prompt("a {profession} with a umbrella", "nurse") == "a nurse with a umbrella"
    assert render_prompt("a {profession}", "engineer", fix_articles=False) == "a engineer"


def test_image_seed_is_the_documented_pure_function():
    args = (7, "a photo of a doctor", "a photo of a {profession}", "doctor", None, 3)
    payload = json.dumps(list(args), ensure_ascii=False).encode("utf-8")
    expected = int.from_bytes(hashlib.sha256(payload).digest()[:8], "big") >> 1
    assert image_seed(*args) == expected
    # a fixed value: the same on every machine, process and Python version (unlike hash())
    assert image_seed(0, "a photo of a doctor", "a photo of a {profession}", "doctor", None, 0) == 3809767887197648643
    seeds = [image_seed(0, "p", "t {profession}", "x", None, i) for i in range(100)]
    assert len(set(seeds)) == 100 and all(0 <= s < 2**63 for s in seeds)
    assert image_seed(1, *args[1:]) != image_seed(*args)


def test_seeds_do_not_depend_on_order_or_other_prompts(tmp_path):
    base = {(j.prompt, j.guidance): j.seeds for j in load_text(tmp_path, BUILTIN).expand()}
    shuffled = BUILTIN.replace('"doctor", "nurse"', '"teacher", "nurse", "doctor"').replace(
        'templates = ["a photo of a {profession}", "a picture of a {descriptor} {profession}"]',
        'templates = ["a portrait of a {profession}", "a picture of a {descriptor} {profession}", '
        '"a photo of a {profession}"]').replace('descriptors = ["female"]', 'descriptors = ["male", "female"]')
    other = {(j.prompt, j.guidance): j.seeds for j in load_text(tmp_path, shuffled).expand()}
    for key, seeds in base.items():
        assert other[key] == seeds, key
    # more images per prompt extend the list; the first ones keep their seeds
    more = {(j.prompt, j.guidance): j.seeds
            for j in load_text(tmp_path, BUILTIN.replace("images_per_prompt = 3", "images_per_prompt = 5")).expand()}
    assert all(more[k][:3] == v for k, v in base.items())


def test_guidance_sweep_pairs_seeds(tmp_path):
    jobs = load_text(tmp_path, DIFFUSERS + "guidance = [2.0, 9.0]\n").expand()
    by_prompt: dict[str, list] = {}
    for job in jobs:
        by_prompt.setdefault(job.prompt, []).append(job)
    for pair in by_prompt.values():
        assert [j.guidance for j in pair] == [2.0, 9.0]
        assert pair[0].seeds == pair[1].seeds  # same noise, so the sweep measures guidance alone
        assert pair[0].key != pair[1].key


def test_parse_spec_from_text_and_absolute_paths(tmp_path):
    spec = parse_spec(BUILTIN + f'checkpoint = "{tmp_path / "run"}"\n')
    assert spec.path is None and spec.backend.checkpoint == tmp_path / "run"
