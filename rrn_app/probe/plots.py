"""The probe's pictures, drawn from its json (`probe.json`, see cli.py): one run's, or several side by side.

- gradient_heatmap.png: log10 ||dL/dh_t|| per layer (rows, bottom layer at the bottom) and timestep;
- gradient_curves.png: the same, one curve per layer;
- state_norm.png: ||h_t|| per layer and timestep (log scale);
- jacobian.png: the largest and smallest singular value of each layer's step Jacobian at the probed steps.
`compare(results, labels, folder)` draws the heat maps (one colour scale for all), the gradient curves and the
Jacobians of several probes in one picture each.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rrn_app.figures import save_figure


def _array(values) -> np.ndarray:
    return np.array([[np.nan if v is None else v for v in row] for row in values], dtype=float)


def _steps_label(result: dict) -> str:
    if result["align"] == "end":
        return "timestep, counted back from each sequence's last step (-1)"
    return "timestep"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def heatmap_axes(axes, result: dict, limits=None, title: str = ""):
    values = _array(result["gradient"]["log10_norm"])
    steps = result["gradient"]["steps"]
    low, high = limits if limits else (np.nanmin(values), np.nanmax(values))
    image = axes.imshow(values, aspect="auto", origin="lower", cmap="viridis", vmin=low, vmax=high,
                        extent=(steps[0] - 0.5, steps[-1] + 0.5, -0.5, len(values) - 0.5), interpolation="nearest")
    axes.set_yticks(range(len(values)), result["rows"], fontsize=7)
    axes.set_xlabel(_steps_label(result), fontsize=8)
    axes.set_title(title or result["title"], fontsize=9)
    return image


def curves_axes(axes, result: dict, key: str = "gradient", title: str = ""):
    block = result[key]
    values = _array(block["log10_norm"] if key == "gradient" else block["mean"])
    colours = _pyplot().cm.viridis(np.linspace(0, 0.9, len(values)))
    for row, label, colour in zip(values, result["rows"], colours):
        axes.plot(block["steps"], row, label=label, color=colour, linewidth=1.2)
    if key == "gradient":
        axes.set_ylabel("log10 ||dL/dh_t||", fontsize=8)
    else:
        axes.set_yscale("log")
        axes.set_ylabel("||h_t||", fontsize=8)
    axes.set_xlabel(_steps_label(result), fontsize=8)
    axes.set_title(title or result["title"], fontsize=9)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=6, ncol=2)


def jacobian_axes(axes, result: dict, title: str = ""):
    block = result["jacobian"]
    colours = _pyplot().cm.viridis(np.linspace(0, 0.9, len(block["layers"])))
    for layer, (values, colour) in enumerate(zip(block["layers"], colours)):
        axes.plot(block["steps"], values["top"], "-o", color=colour, markersize=3, label=f"layer {layer + 1} top")
        axes.plot(block["steps"], values["bottom"], "--x", color=colour, markersize=3,
                  label=f"layer {layer + 1} bottom")
    axes.axhline(1.0, color="grey", linewidth=0.8)
    axes.set_yscale("log")
    axes.set_xlabel("step t of d state_t / d state_{t-1}", fontsize=8)
    axes.set_ylabel("singular value", fontsize=8)
    axes.set_title(title or result["title"], fontsize=9)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=6, ncol=2)


def one_run(result: dict, folder: Path) -> list[Path]:
    """The four pictures of one probe in `folder`; returns their paths."""
    plt = _pyplot()
    folder, written = Path(folder), []
    figure, axes = plt.subplots(figsize=(8, 4))
    figure.colorbar(heatmap_axes(axes, result), ax=axes, label="log10 ||dL/dh_t||")
    written.append(save_figure(figure, folder / "gradient_heatmap.png"))
    for name, key in (("gradient_curves.png", "gradient"), ("state_norm.png", "state_norm")):
        figure, axes = plt.subplots(figsize=(8, 4))
        curves_axes(axes, result, key)
        written.append(save_figure(figure, folder / name))
    figure, axes = plt.subplots(figsize=(8, 4))
    jacobian_axes(axes, result)
    written.append(save_figure(figure, folder / "jacobian.png"))
    return written


def compare(results: list[dict], labels: list[str], folder: Path) -> list[Path]:
    """Several probes side by side (two columns): heat maps on one colour scale, gradient curves, Jacobians,
    state norms. Returns the pictures' paths."""
    plt = _pyplot()
    folder, written = Path(folder), []
    columns = 2 if len(results) > 1 else 1
    rows = (len(results) + columns - 1) // columns
    values = np.concatenate([_array(r["gradient"]["log10_norm"]).ravel() for r in results])
    limits = (np.nanmin(values), np.nanmax(values))
    for name, draw in (("gradient_heatmaps.png", "heatmap"), ("gradient_curves.png", "gradient"),
                       ("state_norms.png", "state_norm"), ("jacobians.png", "jacobian")):
        figure, grid = plt.subplots(rows, columns, figsize=(6 * columns, 3.2 * rows), squeeze=False)
        image = None
        for axes, result, label in zip(grid.ravel(), results, labels):
            if draw == "heatmap":
                image = heatmap_axes(axes, result, limits, label)
            elif draw == "jacobian":
                jacobian_axes(axes, result, label)
            else:
                curves_axes(axes, result, draw, label)
        for axes in grid.ravel()[len(results):]:
            axes.axis("off")
        figure.tight_layout()
        if image is not None:
            figure.colorbar(image, ax=grid.ravel().tolist(), label="log10 ||dL/dh_t||")
        written.append(save_figure(figure, folder / name))
    return written
