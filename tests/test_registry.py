"""The registry of kinds: names known without torch; every name resolves to its class, which saves and
opens through its family's layout."""

import subprocess
import sys

import pytest

from synthscope.errors import UserError
from synthscope.registry import FAMILY_BASES, KINDS, _import, kind_names, resolve


@pytest.mark.parametrize("family", sorted(KINDS))
def test_every_kind_resolves_to_a_class_of_its_family(family):
    assert set(FAMILY_BASES) == set(KINDS)
    base = _import(FAMILY_BASES[family])
    for kind in kind_names(family):
        cls = resolve(family, kind)
        assert issubclass(cls, base) and cls.kind == kind
        assert (cls.config_file, cls.section) == (base.config_file, base.section)


def test_unknown_kind_names_the_place_and_the_known_kinds():
    with pytest.raises(UserError, match=r"run/config.json: unknown generator kind 'gann'; known: ae, vae, gan"):
        resolve("generator", "gann", where="run/config.json")


def test_kind_names_import_no_torch():
    code = ("import sys; from synthscope.registry import kind_names; kind_names('detector'); "
            "print('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"
