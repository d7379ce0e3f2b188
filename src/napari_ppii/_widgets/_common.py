"""Small pieces the dock widgets share."""

from __future__ import annotations

from pathlib import Path

#: the checkpoint of the most recent run started from a widget (the prediction widget offers it)
LAST_RUN: dict[str, Path] = {}


def cuda_devices() -> list[str]:
    try:
        import torch

        return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    except Exception:  # torch missing or broken: CPU only
        return []


def report_error(widget, msg: str, label=None) -> None:
    """Keep ``msg`` as the widget's ``last_error``, show it in ``label`` and as a napari notification."""
    from napari.utils.notifications import show_error

    widget.last_error = msg
    if label is not None:
        (label.setPlainText if hasattr(label, "setPlainText") else label.setText)(msg)
        label.setToolTip(msg)
    show_error(msg)


def last_run_checkpoint() -> Path | None:
    """The best (else last) checkpoint of the latest run started from the training widget, if written."""
    for key in ("checkpoint", "last"):
        p = LAST_RUN.get(key)
        if p is not None and Path(p).exists():
            return Path(p)
    return None
