"""Reports of TOFU evaluations: one JSON per model, a markdown summary table and PNG plots."""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

METRICS = ("probability", "rouge", "truth_ratio")


def _file_stem(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "model"


def _format(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) and not math.isnan(value) else "–"


def summary_markdown(results_list: Sequence[dict[str, Any]]) -> str:
    """A markdown table: one row per model; forget quality, model utility, then each split's three metrics."""
    splits = [
        name
        for name in ("forget", "retain", "real_authors", "world_facts")
        if any(name in r["splits"] for r in results_list)
    ]
    header = ["model", "forget quality", "model utility"] + [f"{s} {m}" for s in splits for m in METRICS]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for results in results_list:
        cells = [
            results["model_name"],
            _format(results.get("forget_quality", float("nan"))),
            _format(results.get("model_utility", float("nan"))),
        ]
        cells += [_format(results["splits"].get(s, {}).get(m, float("nan"))) for s in splits for m in METRICS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _write_results_and_summary(
    results_list: Sequence[dict[str, Any]],
    directory: Path,
    suffix: str,
    summary_name: str,
    summary: Callable[[Sequence[dict[str, Any]]], str],
) -> dict[str, Path]:
    """Write one `<model><suffix>` JSON per evaluation and the markdown summary; return their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for results in results_list:
        path = directory / f"{_file_stem(results['model_name'])}{suffix}"
        path.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        written[results["model_name"]] = path
    written["summary"] = directory / summary_name
    written["summary"].write_text(summary(results_list), encoding="utf-8")
    return written


def write_tofu_report(results_list: Sequence[dict[str, Any]], output_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Write `<model>.json` for each evaluation, `summary.md`, `forget_quality_vs_utility.png` and `splits.png`."""
    # Imported here: the headless backend must be chosen before pyplot loads, and only reports need it.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory = Path(output_dir)
    written = _write_results_and_summary(results_list, directory, ".json", "summary.md", summary_markdown)

    figure, axis = plt.subplots(figsize=(5, 4))
    # Methods often land on nearly the same point: one label per cluster ("target, GA, GD") instead of overprinting.
    clusters: list[tuple[float, float, list[str]]] = []
    for results in results_list:
        quality, utility = results.get("forget_quality"), results.get("model_utility")
        if quality is None or utility is None:
            continue
        axis.scatter(utility, quality, s=40)
        for u, q, names in clusters:
            if abs(u - utility) < 0.05 and 0.5 < q / max(quality, 1e-300) < 2:
                names.append(results["model_name"])
                break
        else:
            clusters.append((utility, quality, [results["model_name"]]))
    for utility, quality, names in clusters:
        axis.annotate(", ".join(names), (utility, quality), textcoords="offset points", xytext=(6, 4), fontsize=8)
    axis.set_xlabel("model utility")
    axis.set_ylabel("forget quality (KS p-value, log scale)")
    axis.set_yscale("log")
    axis.set_xlim(0, 1)
    axis.set_ylim(top=1.5)  # p-values are at most 1
    axis.set_title("TOFU: forget quality vs model utility")
    figure.tight_layout()
    written["forget_quality_vs_utility"] = directory / "forget_quality_vs_utility.png"
    figure.savefig(written["forget_quality_vs_utility"], dpi=120)
    plt.close(figure)

    splits = [
        s for s in ("forget", "retain", "real_authors", "world_facts") if any(s in r["splits"] for r in results_list)
    ]
    figure, axes = plt.subplots(1, len(METRICS), figsize=(4 * len(METRICS), 3.5), sharey=True)
    width = 0.8 / max(len(results_list), 1)
    for axis, metric in zip(axes, METRICS, strict=True):
        for offset, results in enumerate(results_list):
            values = [results["splits"].get(s, {}).get(metric, 0.0) for s in splits]
            axis.bar([i + offset * width for i in range(len(splits))], values, width, label=results["model_name"])
        axis.set_xticks([i + 0.4 - width / 2 for i in range(len(splits))], splits, rotation=20)
        axis.set_title(metric)
    axes[0].legend(fontsize=7)
    figure.tight_layout()
    written["splits"] = directory / "splits.png"
    figure.savefig(written["splits"], dpi=120)
    plt.close(figure)
    return written


MUSE_METRICS = ("verbmem_f", "knowmem_f", "knowmem_r", "auc", "privleak")


def muse_summary_markdown(results_list: Sequence[dict[str, Any]]) -> str:
    """A markdown table of MUSE aggregates: one row per model (VerbMem, KnowMem forget/retain, AUC, PrivLeak)."""
    header = ["model", *MUSE_METRICS]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for results in results_list:
        cells = [results["model_name"]] + [_format(results.get(m, float("nan"))) for m in MUSE_METRICS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_muse_report(results_list: Sequence[dict[str, Any]], output_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Write `<model>.muse.json` for each evaluation, `muse_summary.md` and `muse.png` (bars per metric)."""
    # Imported here: the headless backend must be chosen before pyplot loads, and only reports need it.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory = Path(output_dir)
    written = _write_results_and_summary(
        results_list, directory, ".muse.json", "muse_summary.md", muse_summary_markdown
    )
    metrics = [m for m in ("verbmem_f", "knowmem_f", "knowmem_r", "auc") if any(m in r for r in results_list)]
    figure, axis = plt.subplots(figsize=(max(4, 1.5 * len(metrics) + 2), 3.5))
    width = 0.8 / max(len(results_list), 1)
    for offset, results in enumerate(results_list):
        values = [results.get(m, 0.0) for m in metrics]
        axis.bar([i + offset * width for i in range(len(metrics))], values, width, label=results["model_name"])
    axis.set_xticks([i + 0.4 - width / 2 for i in range(len(metrics))], metrics)
    axis.set_ylim(0, 1)
    axis.set_title("MUSE (PrivLeak in the summary table)")
    axis.legend(fontsize=7)
    figure.tight_layout()
    written["plot"] = directory / "muse.png"
    figure.savefig(written["plot"], dpi=120)
    plt.close(figure)
    return written
