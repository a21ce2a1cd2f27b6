"""Messages of the libraries rrn runs that tell a user nothing, removed one message at a time (never a whole
category of warnings): Lightning's LitLogger advert and W&B's warning about a setting Lightning passes."""

from __future__ import annotations

import logging

LITLOGGER_TIP = "💡 Tip: For seamless cloud logging"
LIGHTNING_LOGS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero")


class NoLitLoggerTip(logging.Filter):
    """Drops the advert for LitLogger that every Lightning Trainer logs when it has no LitLogger."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(LITLOGGER_TIP)


def drop_lightning_tips() -> None:
    """Put NoLitLoggerTip on the logs Lightning's rank-zero messages go through (once)."""
    for name in LIGHTNING_LOGS:
        log = logging.getLogger(name)
        if not any(isinstance(existing, NoLitLoggerTip) for existing in log.filters):
            log.addFilter(NoLitLoggerTip())


def drop_wandb_anonymous(logger) -> None:
    """Lightning's WandbLogger passes anonymous=None to wandb.init, and wandb >= 0.19 then warns "The anonymous
    setting has no effect": leave the key out when it is None (wandb's own default)."""
    init = getattr(logger, "_wandb_init", None)
    if isinstance(init, dict) and "anonymous" in init and init["anonymous"] is None:
        del init["anonymous"]


def drop_known_warnings() -> None:
    """Lightning 2.6 on torch >= 2.13 warns on every batch that `isinstance(treespec, LeafSpec)` is deprecated
    (Lightning's own code, nothing a user can change)."""
    import warnings

    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")


def quiet() -> None:
    """Both of the above and the LitLogger tip: what every rrn command that runs a Trainer calls first."""
    drop_lightning_tips()
    drop_known_warnings()
