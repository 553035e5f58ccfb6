import pytest
import torch

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def digits16():
    from synthscope.generators.data import load_digits

    return load_digits(16)


@pytest.fixture(scope="session")
def small_digits(digits16):
    return digits16.subset(range(256))
