"""``--plot`` / ``sidetune plot``: a PNG of saliency, moments and ground truth."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sidetune.cli import main
from sidetune.grounding.grounder import GroundingResult, Moment
from sidetune.grounding.plot import draw_panel, plot_results

PNG = b"\x89PNG\r\n\x1a\n"


def test_panel_draws_saliency_moments_and_truth(tmp_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    draw_panel(ax, [0.1, 0.5, 0.9, 0.2], 2.0, 8.0, [(2.0, 6.0, 0.8), (0.0, 2.0, 0.3)], [(2.0, 6.0)])
    bars = [p for p in ax.patches if type(p).__name__ == "Rectangle"]
    widths = sorted(round(b.get_width(), 3) for b in bars)
    assert widths == [2.0, 4.0, 4.0, 4.0]  # two moments, the ground-truth bar and its shading
    labels = [t.get_text().strip() for t in ax.texts]
    assert labels == ["0.80", "0.30"]
    assert ax.get_xlim() == (0.0, 8.0)
    plt.close(fig)
    r = GroundingResult("q", [Moment(2.0, 6.0, 0.8)], [0.1, 0.5, 0.9, 0.2], 2.0, 8.0)
    out = plot_results([r, r], tmp_path / "sub" / "p.png", gt=[(2.0, 6.0)])
    assert out.read_bytes()[:8] == PNG and not list(out.parent.glob(".*tmp"))


def test_cli_plot_from_a_predictions_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    pred = tmp_path / "p.jsonl"
    pred.write_text(json.dumps({"qid": 3, "query": "a red circle", "vid": "v",
                                "pred_relevant_windows": [[2.0, 6.0, 0.9]],
                                "pred_saliency_scores": [0.1, 0.7, 0.8, 0.1]}) + "\n")  # fmt: skip
    gt = tmp_path / "g.jsonl"
    gt.write_text(json.dumps({"qid": 3, "query": "a red circle", "vid": "v", "duration": 8,
                              "relevant_windows": [[2, 6]], "relevant_clip_ids": [1, 2],
                              "saliency_scores": [[4, 4, 4], [3, 3, 3]]}) + "\n")  # fmt: skip
    out = tmp_path / "q3.png"
    assert (
        main(["plot", "--pred", str(pred), "--gt", str(gt), "--qid", "3", "--out", str(out)]) == 0
    )
    assert out.read_bytes()[:8] == PNG
    assert main(["plot", "--pred", str(pred), "--qid", "9", "--out", str(tmp_path / "x.png")]) == 1
    assert "qid 9" in capsys.readouterr().err and not (tmp_path / "x.png").exists()
