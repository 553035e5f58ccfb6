import pytest
import torch

torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def fixed_threads():
    """Every test starts with two fixed threads: a command-line test lets synthscope choose (and its
    training loops adjust) the thread count, which must not carry over into the next test."""
    from synthscope import runtime

    yield
    runtime.use_threads(2, automatic=False)


@pytest.fixture(scope="session", autouse=True)
def synthscope_cache(tmp_path_factory):
    """Every cache the tests fill (CLIP features, audit probes) in a temp folder, never the user's."""
    root = tmp_path_factory.mktemp("synthscope-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SYNTHSCOPE_CACHE", str(root))
        yield root


@pytest.fixture(scope="session")
def digits16():
    from synthscope.generators.data import load_digits

    return load_digits(16)


@pytest.fixture(scope="session")
def small_digits(digits16):
    return digits16.subset(range(256))
