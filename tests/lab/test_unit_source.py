"""A function unit's stored results are keyed on the code it runs in its module
(`unit_source_hash`): the unit, the helpers and constants of its module it uses — not the
declarations beside it, whose edits only re-analyse."""

import importlib.util
import sys
import textwrap

import pytest

from dltricks.lab.experiment import unit_source_hash

MODULE = '''
import math

SCALE = {scale}


def helper(x):
    return {helper_body}


def unit(recipe, run_dir):
    f = lambda v: helper(v) * SCALE  # noqa: E731  (a name read inside a nested function)
    return {{"metric": f(math.pi)}}


CLAIM = "{claim}"
NOTES = "{notes}"
'''


@pytest.fixture
def source_hash(tmp_path):
    """Hash of ``unit`` in a fresh module written from MODULE with the given fields."""
    count = iter(range(100))

    def make(scale=2, helper_body="x + 1", claim="a claim", notes="notes"):
        name = f"_unit_source_case_{next(count)}"
        path = tmp_path / f"{name}.py"
        path.write_text(textwrap.dedent(MODULE.format(
            scale=scale, helper_body=helper_body, claim=claim, notes=notes)))
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
            return unit_source_hash(module.unit)
        finally:
            del sys.modules[name]

    return make


def test_declarations_beside_the_unit_do_not_change_its_hash(source_hash):
    base = source_hash()
    assert base is not None and len(base) == 16
    assert source_hash() == base  # deterministic across imports
    assert source_hash(claim="another claim", notes="rewritten notes") == base


def test_a_changed_helper_or_constant_the_unit_uses_changes_its_hash(source_hash):
    base = source_hash()
    assert source_hash(helper_body="x + 2") != base  # a helper called from a lambda
    assert source_hash(scale=3) != base  # a module constant it reads


def test_registered_units_hash_deterministically_and_differ():
    """Every function unit of the lab has a source hash, stable across calls; two experiments
    whose units are different functions get different hashes."""
    import dltricks.lab.experiments  # noqa: F401  (registers them)
    from dltricks.lab.experiment import list_experiments

    hashes = {e.id: unit_source_hash(e.unit) for e in list_experiments() if e.unit}
    assert hashes and all(h is not None for h in hashes.values())
    assert hashes == {e.id: unit_source_hash(e.unit) for e in list_experiments() if e.unit}
    units = {e.id: e.unit for e in list_experiments() if e.unit}
    for a in units:
        for b in units:
            if units[a] is not units[b]:
                assert hashes[a] != hashes[b], (a, b)
