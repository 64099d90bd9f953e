"""The comparative benchmark's chart: six panels from the summaries (matplotlib, no display needed)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.compare.report import SUBJECTS, TARGET_FLOOR_RATIO, TARGET_PEAK_MB, TARGET_PIPELINE_MB_S, Summary


def draw_chart(summaries: Sequence[Summary], path: Path, *, title: str) -> None:
    """Six panels: backup MB/s, peak RSS, restore MB/s, wall ratios with targets, the pipeline alone, temp disk."""
    import matplotlib

    matplotlib.use("Agg")  # no display here, and none needed
    import matplotlib.pyplot as plt

    sizes = sorted({s.size_mb for s in summaries})
    by = {(s.subject, s.size_mb): s for s in summaries}
    x = list(range(len(sizes)))

    def series(
        ax: Any,
        subjects: Sequence[str],
        value: Callable[[Summary], float | None],
        *,
        label: Callable[[str], str] = lambda subject: SUBJECTS[subject],
    ) -> None:
        for subject in subjects:
            points = [(i, value(by[(subject, size)])) for i, size in enumerate(sizes) if (subject, size) in by]
            points = [(i, v) for i, v in points if v is not None]
            if points:
                ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label(subject))

    fig, axes = plt.subplots(2, 3, figsize=(17, 9.5))
    panels = axes.flatten()
    series(
        panels[0],
        ("floor", "dump_alone", "mongodump", "old_pipeline", "ours_db", "floor_instance", "ours_instance", "ours_flow"),
        lambda s: s.mb_per_s,
    )
    panels[0].set_title("backup throughput (MB/s of BSON, higher is better)")
    series(
        panels[1],
        ("ours_db", "ours_instance", "ours_flow", "old_pipeline", "mongodump", "restore_ours", "mongorestore"),
        lambda s: s.peak_rss_mb,
    )
    panels[1].axhline(TARGET_PEAK_MB, color="red", linestyle="--", label=f"target {TARGET_PEAK_MB:.0f} MB")
    panels[1].set_title("peak RSS of the process tree (MB)")
    # The prep (a file copy at 100-300 MB/s) would flatten the restores' lines: its disk use is in panel 6.
    series(panels[2], ("restore_ours", "restore_ours_noverify", "mongorestore"), lambda s: s.mb_per_s)
    panels[2].set_title("restore throughput (MB/s of BSON, higher is better)")
    for subject, column, name in (
        ("ours_db", "floor", "ours / floor"),
        ("ours_db", "mongodump", "ours / mongodump"),
        ("ours_db", "old", "ours / old pipeline"),
        ("restore_ours", "mongorestore", "restore ours / mongorestore"),
    ):
        points = [(i, by[(subject, size)].ratios.get(column)) for i, size in enumerate(sizes) if (subject, size) in by]
        points = [(i, v) for i, v in points if v is not None]
        if points:
            panels[3].plot([p[0] for p in points], [p[1] for p in points], marker="o", label=name)
    panels[3].axhline(TARGET_FLOOR_RATIO, color="red", linestyle="--", label="target 1.25x floor")
    panels[3].axhline(1.0, color="gray", linestyle=":", label="target 1.0x (mongodump, mongorestore)")
    panels[3].set_title("wall-time ratios (lower is better)")
    values = [by[("pipeline_alone", size)].mb_per_s if ("pipeline_alone", size) in by else 0.0 for size in sizes]
    panels[4].bar(x, values, color="tab:green", label=SUBJECTS["pipeline_alone"])
    panels[4].axhline(TARGET_PIPELINE_MB_S, color="red", linestyle="--", label=f"target {TARGET_PIPELINE_MB_S:.0f}")
    panels[4].set_title("zstd + gpg + S3 alone (MB/s)")
    width = 0.25
    for n, subject in enumerate(("old_pipeline", "ours_db", "mongorestore_prep")):
        heights = [by[(subject, size)].temp_disk_mb or 0.0 if (subject, size) in by else 0.0 for size in sizes]
        bars = panels[5].bar([i + (n - 1) * width for i in x], heights, width=width, label=SUBJECTS[subject])
        panels[5].bar_label(bars, fmt="%.1f", fontsize=7)  # ours is 0: a bar that cannot be seen needs its number
    panels[5].set_title("peak temp disk (MB)")
    for ax in panels:
        ax.set_xticks(x, [f"{s} MB" for s in sizes])
        ax.set_xlabel("database size")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
