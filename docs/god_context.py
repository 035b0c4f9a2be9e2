"""What top-1 Wu-Palmer scores on GOD's test set with no fMRI at all.

GOD's 50 test categories (from its test stimulus ids, ``sbd/data/god_test_image_ids.csv``)
against ILSVRC-2012's 1,000 labels (``sbd/data/imagenet1k_wnids.txt``), the label set of the
paper's bank: how many categories the label set holds (exact top-1 can hit only these), the
uniform chance level (a label drawn at random), the best constant answer (one label for
every image) and the best label of the set per category (the ceiling).  With
``--phantom DIR`` the same figures for a phantom's test categories and bank labels, beside
GOD's.  Prints a Markdown table::

    python docs/god_context.py
    python docs/god_context.py --phantom data/phantom
"""

from __future__ import annotations

import argparse
import json

from sbd.data.label_sets import god_test_wnids, imagenet1k_wnids
from sbd.metrics.decoding import label_set_context
from sbd.wordnet import name


def phantom_sets(data_dir: str) -> tuple[list[str], list[str]]:
    """A phantom's test categories and the wnids of its bank, from its manifest and tree."""
    from sbd.data import layout, phantom

    manifest = phantom.read_manifest(data_dir)
    if manifest is None:
        raise SystemExit(f"{data_dir} holds no phantom (no {phantom.MANIFEST_NAME}).")
    bank = sorted(p.name for p in layout.bank_dir(data_dir).iterdir() if p.is_dir())
    return manifest["categories"]["test"], bank


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--phantom", default="", help="a phantom data folder to report beside GOD")
    args = ap.parse_args()
    rows = {"GOD test vs ILSVRC-1k": label_set_context(god_test_wnids(), imagenet1k_wnids())}
    if args.phantom:
        rows[f"phantom {args.phantom} vs its bank"] = label_set_context(*phantom_sets(args.phantom))
    print("| test set vs label set | categories in the label set | uniform chance | "
          "best constant answer | best label per category |")
    print("|---|---|---|---|---|")
    for what, c in rows.items():
        print(f"| {what} | {c['n_in_set']} of {c['n']} ({c['n_labels']} labels) | "
              f"{c['uniform']:.3f} | {c['constant']:.3f} ({name(c['constant_wnid'])}, "
              f"{c['constant_wnid']}) | {c['oracle']:.3f} |")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
