"""One definition per metric: every library function that computes a shared score reaches
:mod:`sbd.scores` for it, and the wrappers equal the reference on random data.

The walk reads every module of ``sbd`` (the steps only log, so they are left out), builds
a call graph by name (imports ``as`` resolved) and checks each function whose name says
which score it computes:

============================  =============================================
name contains                 must reach (in ``sbd.scores``)
============================  =============================================
``ident``, ``2afc``           ``identification``
``pearson``, ``corr``         ``pearson_matrix`` / ``pearson_rows``
``wup``                       ``wup_table`` / ``ranked_wup`` / ``shuffled_mean``
                              (or :func:`sbd.wordnet.wup`, the pair itself)
``topk``, ``top1``, ``top5``  ``topk_hits``
``label_scores``              ``topk_hits`` and ``ranked_wup``
``score_predictions``         ``pearson_matrix`` / ``pearson_rows``
============================  =============================================

A function that computes its own figure instead fails here, even when it still calls a
reference for something else (a 2AFC judge counting wins itself over a Pearson matrix
from the reference).  :data:`OTHER_CONCEPTS` lists the functions whose name matches but
which compute another concept, each with the reason."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import numpy as np
import pytest

import sbd
from sbd import scores

ROOT = Path(sbd.__file__).parent

RULES = [
    (re.compile(r"ident(?!it)|2afc"), {"identification"}),
    (re.compile(r"pearson|corr"), {"pearson_matrix", "pearson_rows"}),
    (re.compile(r"wup"), {"wup_table", "ranked_wup", "shuffled_mean", "wup"}),
    (re.compile(r"topk|top1|top5"), {"topk_hits"}),
    (re.compile(r"label_scores"), {"topk_hits"}),
    (re.compile(r"label_scores"), {"ranked_wup"}),
    (re.compile(r"score_predictions"), {"pearson_matrix", "pearson_rows"}),
]
ANY_SCORE = {"identification", "pearson_matrix", "pearson_rows", "wup_table", "ranked_wup",
             "shuffled_mean", "topk_hits", "wup"}

OTHER_CONCEPTS = {
    "sbd.metrics.field:nway_top1": "MinD-Vis's n-way *classification* of a generated image "
                                   "by a classifier's class scores in sampled trials (the "
                                   "peers' own definition, kept to compare with their table)",
    "sbd.metrics.field:retrieval_top1": "MindEye's retrieval: the argmax of the reference "
                                        "Pearson matrix over the test set, not a ranked-label hit",
    "sbd.metrics.decoding:topk_chance": "a chance level (hypergeometric), not a score of answers",
    "sbd.wordnet:wup": "the Wu-Palmer pair itself (NLTK's definition), which the references call",
    "sbd.wordnet:wup_matrix": "Wu-Palmer of many pairs, the same definition, which "
                              "sbd.scores.wup_table calls",
    "sbd.wordnet:wup_uncached": "the Wu-Palmer pair itself, before caching",
}


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    return ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)


def _library_sources() -> dict[str, str]:
    return {_module_name(p): p.read_text() for p in sorted(ROOT.rglob("*.py"))
            if "steps" not in p.relative_to(ROOT).parts and p.name != "scores.py"}


def _functions(tree: ast.Module):
    """(qualified name, node) of every function and method, nested ones included."""
    def walk(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield prefix + child.name, child
                yield from walk(child, prefix + child.name + ".")
            elif isinstance(child, ast.ClassDef):
                yield from walk(child, prefix + child.name + ".")
    yield from walk(tree, "")


def _calls(node: ast.AST, aliases: dict[str, str]) -> set[str]:
    out = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Call):
            f = n.func
            name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None
            if name:
                out.add(aliases.get(name, name))
    return out


def violations(sources: dict[str, str]) -> list[str]:
    """Functions of ``sources`` (module name → code) that compute a shared score without
    reaching its definition in :mod:`sbd.scores`."""
    calls: dict[str, set[str]] = {}
    by_name: dict[str, list[str]] = {}
    for module, code in sources.items():
        tree = ast.parse(code)
        aliases = {a.asname: a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
                   for a in n.names if a.asname}
        for qual, node in _functions(tree):
            key = f"{module}:{qual}"
            calls[key] = _calls(node, aliases)
            by_name.setdefault(qual.rsplit(".", 1)[-1], []).append(key)
    reach = {k: {c for c in v if c in ANY_SCORE} for k, v in calls.items()}
    changed = True
    while changed:  # fixed point: what a function reaches through the functions it calls
        changed = False
        for key, called in calls.items():
            for c in called:
                for callee in by_name.get(c, ()):
                    if callee != key and not reach[callee] <= reach[key]:
                        reach[key] |= reach[callee]
                        changed = True
    bad = []
    for key in calls:
        module, qual = key.split(":")
        name = qual.rsplit(".", 1)[-1].lower()
        if name.startswith(("_", "plot_")) or key in OTHER_CONCEPTS:  # plots draw given figures
            continue
        needs = [refs for rx, refs in RULES if rx.search(name)]
        for refs in needs:
            if not reach[key] & refs:
                bad.append(f"{key} computes a score without {' / '.join(sorted(refs))} "
                           f"of sbd.scores")
    return bad


def test_every_score_in_the_library_reaches_its_one_definition():
    found = violations(_library_sources())
    assert not found, "\n".join(found)


def test_the_walk_sees_the_library():
    """The walk is not vacuous: it finds the wrappers it is meant to check."""
    sources = _library_sources()
    names = {k for code in [sources] for k in code}
    assert {"sbd.metrics.images", "sbd.metrics.field", "sbd.metrics.decoding",
            "sbd.decoding.tuning"} <= names
    assert all(key.split(":")[0] in sources for key in OTHER_CONCEPTS)


def test_a_reintroduced_copy_fails():
    """The 2AFC judge with its win counting written out again (as it was before the one
    definition), over the reference's Pearson matrix: the walk names it."""
    sources = _library_sources()
    code = sources["sbd.metrics.images"]
    line = "    per_image = identification(sim, 2, idx)[0]"
    assert line in code
    sources["sbd.metrics.images"] = code.replace(line, (
        "    own = sim[np.arange(m), idx][:, None]\n"
        "    score = (sim < own).astype(np.float64) + 0.5 * (sim == own)\n"
        "    score[np.arange(m), idx] = 0.0\n"
        "    per_image = score.sum(axis=1) / (n - 1)"))
    found = violations(sources)
    assert any(v.startswith("sbd.metrics.images:judge_2afc ") for v in found), found


# --------------------------------------------------------------- equal on random data
def test_the_wrappers_equal_the_reference_on_random_data():
    from sbd.decoding.tuning import score_predictions
    from sbd.metrics import decoding, field, images

    rng = np.random.default_rng(0)
    pred, true = rng.normal(size=(12, 20)), rng.normal(size=(12, 20))
    sim = scores.pearson_matrix(pred, true)
    ident2 = scores.identification(sim, 2)[0]
    np.testing.assert_allclose(field.two_way_identification(pred, true), ident2)
    np.testing.assert_allclose(images.judge_2afc(pred, true, np.arange(12)).per_image, ident2)
    np.testing.assert_allclose(images.generated_identification(pred, true, np.arange(12), 2)[1],
                               ident2)
    np.testing.assert_allclose(decoding.n_way_identification(pred, true, 2)[1], ident2)
    groups = np.repeat(np.arange(6), 2)
    other = scores.identification(sim, 2, distractors=scores.other_category_mask(groups))[0]
    got = score_predictions(pred, true, groups)
    assert got["ident_othercat_acc"] == pytest.approx(other.mean())
    assert got["r"] == pytest.approx(np.diag(sim).mean())
    np.testing.assert_allclose(decoding.feature_correlation(pred, true), np.diag(sim))
    truth = [f"c{i}" for i in rng.integers(0, 4, 12)]
    ranked = [[f"c{i}" for i in rng.permutation(4)] for _ in range(12)]
    np.testing.assert_array_equal(decoding.topk_hits(truth, ranked, 2),
                                  scores.topk_hits(truth, ranked, 2))
