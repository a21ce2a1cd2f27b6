"""Pictures a run makes (a confusion matrix, a music sample's piano roll): a PNG in the run folder whatever the
logger, also sent to the logger when it takes pictures (W&B through log_image, TensorBoard through add_image)."""

from __future__ import annotations

from pathlib import Path


def save_figure(figure, path: Path) -> Path:
    """A matplotlib figure as a PNG at `path` (its folder made), then closed."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(figure)
    return path


def log_png(logger, key: str, path: Path, step: int | None = None) -> bool:
    """Send a PNG to the logger under `key`; False when the logger takes no pictures (CSV, none)."""
    from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger

    path = Path(path)
    if isinstance(logger, WandbLogger):
        logger.log_image(key=key, images=[str(path)], step=step, caption=[path.stem])
        return True
    if isinstance(logger, TensorBoardLogger):
        from matplotlib.image import imread

        logger.experiment.add_image(key, imread(path)[..., :3], global_step=step or 0, dataformats="HWC")
        return True
    return False


def confusion_matrix_picture(metric, labels: list[str], path: Path, logger=None, key: str | None = None,
                             step: int | None = None) -> Path:
    """A torchmetrics confusion matrix drawn with the class names (counts written in the cells up to 10 classes),
    saved at `path` and sent to the logger under `key`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    side = min(4 + 0.35 * len(labels), 18)
    figure, axes = plt.subplots(figsize=(side, side))
    metric.plot(ax=axes, labels=labels, add_text=len(labels) <= 10)
    axes.tick_params(axis="x", labelrotation=90 if len(labels) > 5 else 0)
    path = save_figure(figure, path)
    if key:
        log_png(logger, key, path, step)
    return path
