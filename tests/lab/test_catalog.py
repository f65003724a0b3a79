"""The catalog covers every claim-bearing bullet of the guide, and statuses are derived."""

import os
from pathlib import Path

import pytest

from dltricks.lab.catalog import TIPS, catalog_status, get_tip, normalize, parse_guide
from dltricks.lab.experiment import list_experiments

HERE = Path(__file__).parent


def guide_path() -> Path:
    # the project's shared folder sits beside the repository (as in CI); the copy in
    # tests/lab/data serves a clone without it
    repo = HERE.parents[1]
    for p in (os.environ.get("DLTRICKS_GUIDE"), repo.parent / "shared/seed/tips-and-tricks.md",
              HERE / "data" / "tips-and-tricks.md"):
        if p and Path(p).is_file():
            return Path(p)
    raise FileNotFoundError("the guide markdown")


def test_every_guide_bullet_has_exactly_one_entry():
    bullets = parse_guide(guide_path().read_text())
    assert len(bullets) > 100
    guide_keys = [(b.section, b.text) for b in bullets]
    catalog_keys = [(t.section, t.guide) for t in TIPS]
    missing = [k for k in guide_keys if k not in catalog_keys]
    stale = [k for k in catalog_keys if k not in guide_keys]
    assert not missing, f"guide bullets without a catalog entry: {missing[:5]}"
    assert not stale, f"catalog entries whose guide text is gone: {stale[:5]}"
    assert len(catalog_keys) == len(set(catalog_keys))


def test_known_bullets_parse_as_claims_and_headings_do_not():
    bullets = parse_guide(guide_path().read_text())
    texts = {b.text for b in bullets}
    assert "Apply dropout in moderation to prevent underfitting." in texts
    assert "2 consecutive 3x3 conv layers = 1 5x5 conv layer" in texts
    # continuation lines join the bullet
    assert any(t.startswith("Number of parameters and computations would be decreased") and
               t.endswith("Small kernels are highly recommended at this point.") for t in texts)
    assert "Receptive Field Comparison:" not in texts and "Transformers:" not in texts
    sections = {b.section for b in bullets}
    assert "Mamba vs. Transformers: 1. Core Architecture" in sections


def test_parse_guide_on_a_small_document():
    md = ("**A:**\n - claim one\n   continued\n - **Sub:**\n   - claim two\n"
          "| table | row |\n**B**\n- last claim\n")
    out = parse_guide(md)
    assert [(b.section, b.subsection, b.text) for b in out] == [
        ("A", None, "claim one continued"), ("A", "Sub", "claim two"), ("B", None, "last claim")]


def test_ids_unique_and_entries_complete():
    ids = [t.id for t in TIPS]
    assert len(ids) == len(set(ids))
    for t in TIPS:
        assert t.claim and t.components and t.guide == normalize(t.guide)


def test_experiments_reference_real_tips_and_status_is_derived():
    ids = {t.id for t in TIPS}
    for e in list_experiments():
        assert set(e.tips) <= ids, e.id
    status = {r["id"]: r for r in catalog_status()}
    assert status["bn-stabilizes"]["status"] == "measured"
    assert "batchnorm" in status["bn-stabilizes"]["experiments"]
    assert status["nas-automates"]["status"] == "measured"  # the nas_strategies experiment
    assert status["vs-tf-ecosystem" if "vs-tf-ecosystem" in status else
                  "choose-tf-ecosystem"]["status"] == "not measured"
    measured = {t for e in list_experiments() for t in e.tips}
    assert {k for k, r in status.items() if r["status"] == "measured"} == measured


def test_unknown_tip_lists_valid_ids():
    with pytest.raises(ValueError, match="valid ids: arch-match-problem"):
        get_tip("no-such-tip")


def test_coverage_asks_the_lab_and_the_comparison_explicitly():
    from dltricks import coverage
    from dltricks.compare import claims
    from dltricks.lab import analyses

    checks = coverage.checks()
    assert checks == {**analyses.coverage(), **claims.coverage()}
    assert "compare.quadratic" in checks and "rf_two_3x3" in checks
    assert "compare.scale" not in checks  # not measurable here: covers nothing
    lab_only = {r["id"]: r for r in catalog_status()}
    full = {r["id"]: r for r in coverage.catalog_status()}
    # a tip that only a comparison claim checks is "analysis" in the full view only
    only_compare = {t for tips in claims.coverage().values() for t in tips
                    if lab_only[t]["status"] == "not measured"}
    assert only_compare
    for t in only_compare:
        assert full[t]["status"] == "analysis"
        assert any(a.startswith("compare.") for a in full[t]["analyses"])
    counts = coverage.status_counts(list(full.values()))
    assert sum(counts.values()) == len(TIPS)
    assert counts["analysis"] == sum(r["status"] == "analysis" for r in full.values())


def test_the_lab_catalog_does_not_import_the_comparison():
    import subprocess
    import sys

    code = ("import sys; from dltricks.lab.catalog import catalog_status; catalog_status(); "
            "bad = sorted(m for m in sys.modules if m.startswith(('dltricks.compare', "
            "'dltricks.cli', 'dltricks.coverage'))); assert not bad, bad")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
