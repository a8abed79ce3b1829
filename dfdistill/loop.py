"""The distillation loop: iterate, checkpoint every `checkpoint_every`, resume, stop on NaN/Inf or
when the method says it is done (early stopping).

Why one loop for every method: resume and divergence handling are written once; a method only
implements `Distiller.step(it)`.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from omegaconf import DictConfig
from tqdm.auto import tqdm

from dfdistill.checkpoint import CHECKPOINT_FILE, load_checkpoint, save_checkpoint, set_rng_state
from dfdistill.errors import DivergenceError
from dfdistill.log import log
from dfdistill.methods.base import Distiller


def distill_loop(distiller: Distiller, cfg: DictConfig, out_dir: Path, key: str, logger) -> dict:
    """Run (or resume) the distiller's iterations; returns loop facts for the result record."""
    distiller.init_state()
    start, history = 0, []
    ck = load_checkpoint(out_dir, key)
    if ck is not None:
        distiller.load_state_dict(ck["distiller"])
        if distiller.ctx.adaptive is not None and ck.get("adaptive") is not None:
            distiller.ctx.adaptive.load_state_dict(ck["adaptive"])
        set_rng_state(ck["rng"])
        start, history = int(ck["iteration"]), list(ck["history"])
        log.info(f"resumed from {out_dir / CHECKPOINT_FILE} at iteration {start}/{distiller.iterations}")
    total = distiller.iterations
    step_times: list[float] = []
    bar = tqdm(range(start, total), initial=start, total=total, desc=f"distill[{cfg.method.name}]",
               disable=not cfg.progress or total == 0)
    sel = distiller.ctx.adaptive
    stopped_at = None
    for it in bar:
        if distiller.done():  # resumed after an early stop
            stopped_at = it - 1
            break
        t0 = time.perf_counter()
        if sel is not None:
            sel.begin_iteration(it)  # the selector's lazy schedule counts iterations, not its calls
        metrics = distiller.step(it)
        loss = float(metrics["loss"])
        step_times.append(time.perf_counter() - t0)
        if not np.isfinite(loss):
            where = f"last good checkpoint kept at {out_dir / CHECKPOINT_FILE}" if (out_dir / CHECKPOINT_FILE).exists() else "no checkpoint yet"
            raise DivergenceError(f"distillation loss became {loss} at iteration {it}; {where}; "
                                  f"lower method.lr_img (now {cfg.method.get('lr_img')}) and rerun to resume")
        history.append({"it": it, "loss": loss})
        if it % cfg.log_every == 0 or it == total - 1:
            bar.set_postfix(loss=f"{loss:.4g}")
            logger.log({"distill/loss": loss, "distill/sec_per_iter": step_times[-1]}, step=it)
        if (it + 1) % cfg.checkpoint_every == 0 or it == total - 1 or distiller.done():
            save_checkpoint(out_dir, key, it + 1, distiller, history)
        if distiller.done():  # early stopping (RFAD's validation patience) at this iteration
            stopped_at = it
            break
    if total == 0 or start == total:
        save_checkpoint(out_dir, key, total, distiller, history)
    return {"iterations": total, "resumed_from": start, "stopped_at": stopped_at,
            "sec_per_iter": float(np.median(step_times)) if step_times else None,
            "ite_seconds_per_iter": sel.seconds / len(step_times) if sel is not None and step_times else None,
            "loss_history": history[-50:]}
