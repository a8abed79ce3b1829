"""The distillation loop: iterate, checkpoint every `checkpoint_every`, resume, stop on NaN/Inf, on
Ctrl-C, or when the method says it is done (early stopping).

Why one loop for every method: resume, divergence and interrupt handling are written once; a method
only implements `Distiller.step(it)`. Ctrl-C (or SIGTERM) lets the current iteration finish, saves a
checkpoint and stops with one line, so no finished iteration is lost; a second Ctrl-C stops at once.
"""

from __future__ import annotations

import re
import shlex
import signal
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
from tqdm.auto import tqdm

from dfdistill.run.checkpoint import (CHECKPOINT_FILE, changed_keys, check_resumable, load_checkpoint, optimizer_lrs,
                                  read_checkpoint, restore, save_checkpoint, set_optimizer_lrs)
from dfdistill.config.resolved import ResolvedRun
from dfdistill.engine.divergence import DivergenceWatch
from dfdistill.core.errors import DivergenceError, Interrupted
from dfdistill.core.log import log
from dfdistill.methods.base import Distiller


class StopRequest:
    """Set by the first Ctrl-C/SIGTERM; the loop checks it between iterations."""

    requested = False


@contextmanager
def deferred_interrupts() -> Iterator[StopRequest]:
    """SIGINT/SIGTERM -> finish the iteration, checkpoint, stop; a second one raises at once."""
    stop = StopRequest()
    if threading.current_thread() is not threading.main_thread():  # signals only reach the main thread
        yield stop
        return

    def handler(signum, frame):
        if stop.requested:
            raise KeyboardInterrupt
        stop.requested = True
        log.info("interrupt: finishing the current iteration, then saving a checkpoint (Ctrl-C again to stop now)")

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def check_resume_before_work(run: ResolvedRun, out_dir: Path) -> None:
    """`resume=<dir>` checked against this config before data, experts or scores are computed (the
    loop checks the same again when it loads the checkpoint)."""
    top, key = run.top, run.distill_key
    if not top.resume or top.force:
        return
    own = read_checkpoint(out_dir / CHECKPOINT_FILE)
    if own is not None and own.get("config_key") == key:
        return
    resume_dir = Path(top.resume).expanduser().resolve()
    ck = read_checkpoint(resume_dir / CHECKPOINT_FILE)
    if ck is not None and ck.get("config_key") != key:
        check_resumable(ck, run.identity, resume_dir)


def start_state(distiller: Distiller, run: ResolvedRun, out_dir: Path) -> tuple[int, list, Optional[dict], bool]:
    """(first iteration, loss history, continued_from, whether it was this dir's own checkpoint) after
    loading the checkpoint that applies, if any.

    Own checkpoint first (same config: bit-identical resume); else `resume=<dir>`'s, continued under
    this config with the config's learning rates; `force=true` ignores both and starts from scratch."""
    top, key, ident = run.top, run.distill_key, run.identity
    resume_dir = Path(top.resume).expanduser().resolve() if top.resume else None
    if top.force:
        if resume_dir is not None:
            log.info(f"force=true: resume={top.resume} not used, distilling from scratch")
        elif (out_dir / CHECKPOINT_FILE).exists():
            log.info("force=true: distilling from scratch (the existing checkpoint is not resumed)")
        return 0, [], None, False
    source, ck = out_dir, load_checkpoint(out_dir, key, allow_other_config=resume_dir == out_dir,
                                          identity=ident)
    if ck is not None and resume_dir is not None and resume_dir != out_dir:
        log.info(f"resume={top.resume} not used: this run dir holds its own checkpoint of this config (iteration "
                 f"{ck['iteration']}), which continues")
    if ck is None and resume_dir is not None:
        source, ck = resume_dir, read_checkpoint(resume_dir / CHECKPOINT_FILE)
    if ck is None:
        return 0, [], None, False
    if ck["config_key"] != key:
        check_resumable(ck, ident, source)
    fresh_lrs = optimizer_lrs(distiller)
    restore(distiller, ck)
    start, history, continued = int(ck["iteration"]), list(ck["history"]), ck.get("continued_from")
    if ck["config_key"] != key:
        set_optimizer_lrs(distiller, fresh_lrs)
        continued = {"dir": str(source), "config_key": ck["config_key"], "iteration": start,
                     "changed": changed_keys(ck.get("identity"), ident)}
        log.info(f"continuing {source / CHECKPOINT_FILE} from iteration {start}/{distiller.iterations} under this "
                 f"config (changed: {', '.join(continued['changed']) or 'unknown'})")
    else:
        log.info(f"resumed from {source / CHECKPOINT_FILE} at iteration {start}/{distiller.iterations}")
    return start, history, continued, source == out_dir


def distill_loop(distiller: Distiller, run: ResolvedRun, out_dir: Path, logger) -> dict:
    """Run (or resume) the distiller's iterations; returns loop facts for the result record."""
    distiller.init_state()
    start, history, continued, own = start_state(distiller, run, out_dir)
    top, key, ident, name = run.top, run.distill_key, run.identity, str(run.cfg.method.name)

    def save(done: int) -> None:
        save_checkpoint(out_dir, key, done, distiller, history, ident, continued)

    total = distiller.iterations
    step_times: list[float] = []
    last_saved = start if own else None
    bar = tqdm(range(start, total), initial=start, total=total, desc=f"distill[{name}]",
               disable=not top.progress or total == 0)
    sel = distiller.ctx.adaptive
    stopped_at = None
    watch = DivergenceWatch(name)
    with deferred_interrupts() as stop:
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
                raise DivergenceError(nan_message(loss, it, run, out_dir, last_saved))
            history.append({"it": it, "loss": loss})
            warning = watch.update(it, loss, metrics)
            if warning:
                log.warning(warning)
            if it % top.log_every == 0 or it == total - 1:
                bar.set_postfix(loss=f"{loss:.4g}")
                logger.log({"distill/loss": loss, "distill/sec_per_iter": step_times[-1]}, step=it)
            if (it + 1) % top.checkpoint_every == 0 or it == total - 1 or stop.requested or distiller.done():
                save(it + 1)
                last_saved = it + 1
            if distiller.done():  # early stopping (RFAD's validation patience) at this iteration
                stopped_at = it
                break
            if stop.requested and it + 1 < total:
                raise Interrupted(f"interrupted after iteration {it + 1}/{total}; checkpoint saved in {out_dir}; "
                                  "rerun the same command to continue from it")
    if total == 0 or start == total:
        save(total)
    return {"iterations": total, "resumed_from": start, "stopped_at": stopped_at, "continued_from": continued,
            "sec_per_iter": float(np.median(step_times)) if step_times else None,
            "ite_seconds_per_iter": sel.seconds / len(step_times) if sel is not None and step_times else None,
            "loss_history": history[-50:], "divergence": watch.note}


def nan_message(loss: float, it: int, run: ResolvedRun, out_dir: Path, last_saved: Optional[int]) -> str:
    """Where the last good state is and the exact overrides that continue from it with a lower lr."""
    lr, resume = getattr(run.method, "lr_img", None), run.top.resume
    ok = isinstance(lr, (int, float)) and np.isfinite(lr) and lr > 0  # the advice must be a smaller number
    lower = f"method.lr_img={float(lr) / 10:g}" if ok else "a lower method learning rate"
    head = f"distillation loss became {loss} at iteration {it}"
    if last_saved is not None:
        return (f"{head}; the last good checkpoint (iteration {last_saved}) is kept in {out_dir}; continue from it "
                f"with a lower lr: {rerun_command([f'resume={out_dir}', lower])}")
    if resume:
        return f"{head} (no checkpoint of this run yet); continue with: {rerun_command([f'resume={resume}', lower])}"
    return f"{head} (no checkpoint yet); rerun with a lower lr: {rerun_command([lower])}"


def rerun_command(extra: list[str]) -> str:
    """`python run.py <the overrides of this run, with `extra` replacing the same keys>` when run
    under Hydra; otherwise the overrides to add."""
    try:
        from hydra.core.hydra_config import HydraConfig

        task = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else None
    except Exception:  # noqa: BLE001 - outside a Hydra app
        task = None
    extra = [shell_override(e) for e in extra]
    if task is None:
        return "add " + " ".join(extra) + " to your command"
    replaced = {e.split("=", 1)[0].strip("'") for e in extra if "=" in e}
    kept = [shlex.quote(o) for o in task if o.split("=", 1)[0].lstrip("+~") not in replaced]
    return "python run.py " + " ".join([*kept, *extra])


def shell_override(o: str) -> str:
    """`key=value` typed in a shell so Hydra reads the value as one string (run dir names hold `=` and `,`)."""
    key, _, value = o.partition("=")
    if re.search(r"[,=\[\]{}()'\"\s$\\]", value):
        return shlex.quote(f'{key}="{value}"')
    return o
