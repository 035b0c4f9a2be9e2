"""A data folder's validation report (:func:`sbd.data.god.validate`,
:func:`sbd.data.god_npz.validate`) as text, metrics and tags: what the ``prepare_data`` step
logs."""

from __future__ import annotations

from typing import Any

__all__ = ["report_text", "report_figures"]


def report_text(report: dict[str, Any]) -> str:
    """The GOD validation report (:func:`sbd.data.god.validate`) as readable text."""
    lines = [f"GOD data folder: {report.get('data_dir')}",
             f"status: {'OK' if report.get('ok') else 'PROBLEMS'}", ""]
    for sset, info in (report.get("image_lists") or {}).items():
        lines.append(f"image list {sset}: " + (f"{info['n']} images ({info['path']})" if info
                                               else "absent"))
    for sset, info in (report.get("images") or {}).items():
        lines.append(f"image folder {sset}: {info['n']} files ({info['folder']})")
    for sid, sub in sorted((report.get("subjects") or {}).items(), key=lambda kv: int(kv[0])):
        lines += ["", f"subject {sid}: {sub.get('file')}"]
        if sub.get("rois"):
            lines.append("  ROIs (voxels): "
                         + ", ".join(f"{r} {n}" for r, n in sub["rois"].items()))
        if sub.get("samples"):
            lines.append("  samples: " + ", ".join(f"{k} {v}" for k, v in sub["samples"].items()))
        if sub.get("images"):
            lines.append("  distinct images/categories: "
                         + ", ".join(f"{k} {v}" for k, v in sub["images"].items()))
        for sset, ids in (sub.get("missing_images") or {}).items():
            if ids:
                lines.append(f"  missing {sset} images: {len(ids)} (e.g. {', '.join(ids[:5])})")
        if sub.get("normalisation"):
            lines.append(f"  normalisation: {sub['normalisation']['verdict']}")
        for p in sub.get("problems", []):
            lines.append(f"  PROBLEM: {p}")
    if report.get("warnings"):
        lines += ["", "warnings:"] + [f"  - {w}" for w in report["warnings"]]
    if report.get("problems"):
        lines += ["", "problems:"] + [f"  - {p}" for p in report["problems"]]
    return "\n".join(lines) + "\n"


def report_figures(report: dict[str, Any], dataset: str
                   ) -> tuple[dict[str, float], dict[str, str]]:
    """The report's metrics (``data/n_subjects``, ``data/n_problems`` and, for ``god``,
    missing/unreadable images and trials without an image per split; for ``god-npz``, images
    per stimulus set) and tags (``sbd.data.valid``; ``god-npz``: ``sbd.data.normalisation``,
    each subject's normalisation as measured)."""
    subjects = report.get("subjects") or {}
    metrics = {"data/n_subjects": len(subjects), "data/n_problems": len(report.get("problems", []))}
    tags = {"sbd.data.valid": str(bool(report.get("ok"))).lower()}
    if dataset == "god-npz":
        metrics.update({f"data/n_{sset}_images": info["n"]
                        for sset, info in (report.get("images") or {}).items()})
        norms = [s["normalisation"]["zscored"] for s in subjects.values() if "normalisation" in s]
        tags["sbd.data.normalisation"] = (
            "z-scored per voxel (used as it is)" if norms and all(norms) else
            "not z-scored per voxel: z-scored over each split when loaded"
            if norms and not any(norms) else "mixed" if norms else "unknown")
        return metrics, tags
    metrics.update({
        "data/n_missing_images": sum(len(v) for v in (report.get("missing_images") or {}).values()),
        "data/n_unreadable_images": sum(
            len(v) for v in (report.get("unreadable_images") or {}).values()),
        **{f"data/n_{split}_trials_without_image": sum(
            s.get("samples_without_image", {}).get(split, 0) for s in subjects.values())
           for split in ("train", "test")}})
    return metrics, tags
