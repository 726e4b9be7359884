"""The one training engine: a Trainer runs a TrainConfig through named phases over a RunState.

    setup     device, precision, data, loader, model, optimizer, schedule, scaler, EMA, ...
    restore   a fresh run directory, or the checkpoint of a killed or stopped run
    epoch     the optimizer steps of one epoch (from the batch a resumed run stopped at)
    evaluate  the epoch's end: validate, keep the best weights, checkpoint, early stopping
    finish    score the best weights on the test set, write summary.json

Data flows one way: data -> engine -> events -> sinks. The engine never prints or plots
itself; the console progress bar, the metrics.jsonl file and the app are all sinks.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Callable, Iterable

import torch
from torch import nn

from ..analysis import evaluate as eval_mod
from ..hardware import hardware_info, keep_freed_memory
from ..recipe import TrainConfig
from ..runs import Run, new_run_id, runs_root, save_epoch_snapshot
from ..weights import load_checkpoint, model_from_state, read_run_state, save_checkpoint
from . import dist
from .checks import validate
from .distill import blend
from .optimizers import Lookahead
from .parts import Parts, build_parts, shrink
from .sinks import JsonlSink, Sink, TqdmSink
from .state import RunState, rng_state, set_rng_state
from .step import optimizer_step, training_loss
from .transfer import set_train_mode


class Trainer:
    """Runs one TrainConfig to completion (or to a stop request), emitting events to sinks.

    ``data`` may be given (a data.CifarData) so tests and the app can reuse a loaded set.
    ``epoch_hooks`` are called on the main rank as ``hook(epoch, model)`` after each epoch's
    validation and checkpoint (bench/ uses one to follow test accuracy when there is no
    validation split); their time counts in the run's elapsed time. ``log_every``: optimizer
    steps per step event (default: log_every_for the device); an epoch's last steps and a
    stop are always reported, so the epoch records are exact. ``Trainer.resuming`` continues
    a run from its checkpoint. ``time_budget_s``: wall-clock seconds from run() on after which the
    run stops at the next step as if asked to (checkpoint, summary "stopped", stop_reason "time
    budget"): a ZeroGPU call (jobs.gpu_runner) ends this way before its GPU is taken back.
    """

    def __init__(self, cfg: TrainConfig, *, run_dir: str | Path | None = None,
                 runs_dir: str | Path | None = None, data=None, sinks: Iterable[Sink] = (),
                 stop_event: threading.Event | None = None, console: bool = False,
                 epoch_hooks: Iterable[Callable[[int, nn.Module], None]] = (),
                 resume: bool = False, log_every: int | None = None, time_budget_s: float | None = None):
        self.cfg = validate(cfg)
        self.time_budget_s = time_budget_s
        self._deadline: float | None = None
        self.out_of_time = False   # the budget ran out (the run stopped itself)
        self.rank, self.world_size, self.local_rank = dist.dist_env()
        self.is_main = self.rank == 0
        self.stop_event = stop_event or threading.Event()
        self.sinks: list[Sink] = list(sinks) if self.is_main else []
        if console and self.is_main:
            self.sinks.append(TqdmSink())
        self.epoch_hooks = list(epoch_hooks) if self.is_main else []
        self.resume = resume
        self.log_every = log_every
        self._data = data
        self._jsonl: JsonlSink | None = None
        self.run_dir = Path(run_dir) if run_dir is not None else runs_root(runs_dir) / new_run_id(cfg.model)

    @classmethod
    def resuming(cls, run_id_or_dir: str | Path, *, runs_dir=None, **kwargs) -> "Trainer":
        """A Trainer that continues a killed or stopped run from its last checkpoint."""
        run = Run.find(run_id_or_dir, runs_dir)
        if not run.has_checkpoint():
            raise FileNotFoundError(f"run {run.id} has no checkpoint yet; start it again instead")
        return cls(run.config(), run_dir=run.dir, resume=True, **kwargs)

    @property
    def run_id(self) -> str:
        return self.run_dir.name

    def stop(self) -> None:
        """Ask the run to end at the next step boundary (thread-safe); it checkpoints first."""
        self.stop_event.set()

    def run(self) -> dict:
        """Train; returns the summary dict (also written to summary.json)."""
        if self.world_size == 1:
            return self._run()
        dist.init_process_group()
        try:
            self.run_dir = dist.broadcast_path(self.run_dir)  # every rank: rank 0's directory
            summary = self._run()
            # Rank 0 scores the test set alone; the others wait for it, so that every rank shuts
            # its process group down only once all of them are done with it.
            dist.barrier()
            return summary
        finally:
            dist.destroy_process_group()

    def _run(self) -> dict:
        if self.time_budget_s is not None:
            self._deadline = time.monotonic() + self.time_budget_s
        keep_freed_memory()   # a step's activations are reused, not mapped again (docs/benchmarks.md: 1.16-1.38x)
        parts = self.setup()
        state = self.restore(parts)
        status = "finished"
        try:
            while state.epoch < self.cfg.epochs:
                self.epoch(parts, state)
                if self.evaluate(parts, state):
                    status = "early_stopped"
                    break
        except (_Stop, KeyboardInterrupt):
            status = "stopped"
            self._log_steps(parts, state)
            self._save_checkpoint(parts, state)
        except BaseException as exc:
            # A crash still leaves a resumable checkpoint at the last epoch boundary.
            self._emit({"kind": "end", "status": "failed", "error": f"{type(exc).__name__}: {exc}",
                        "step": state.step, "elapsed_s": state.elapsed_s})
            self._close()
            raise
        return self.finish(parts, state, status)

    # -- setup ---------------------------------------------------------------------------

    def setup(self) -> Parts:
        parts = build_parts(self.cfg, self._data, rank=self.rank, world_size=self.world_size,
                            local_rank=self.local_rank, log_every=self.log_every)
        self._data = parts.data
        return parts

    # -- restore -------------------------------------------------------------------------

    def restore(self, parts: Parts) -> RunState:
        """The run's state: from its checkpoint when resuming, else fresh (and a new run
        directory). Opens metrics.jsonl and emits the "start" event."""
        run = Run(self.run_dir)
        classes = list(parts.data.classes)
        if self.resume:
            if run.classes() != tuple(classes):
                raise ValueError(f"run {run.id} was trained on the classes {', '.join(run.classes())}; the data "
                                 f"it resumes with has {', '.join(classes)}. Resume it with the same dataset.")
            ckpt = load_checkpoint(run.checkpoint_path)
            parts.raw_model.load_state_dict(ckpt["model"])
            parts.optimizer.load_state_dict(ckpt["optimizer"])
            parts.scheduler.load_state_dict(ckpt["scheduler"])
            parts.scaler.load_state_dict(ckpt["scaler"])
            if parts.ema is not None:
                parts.ema.load_state_dict(ckpt["ema"])
            if parts.lookahead is not None:
                parts.lookahead.load_state_dict(ckpt["lookahead"])
            state = RunState.from_dict(ckpt["state"])
            set_rng_state(ckpt["rng"])
        else:
            state = RunState()
            if self.is_main:
                Run.create(self.run_dir, self.cfg)
        if self.is_main:
            self._jsonl = JsonlSink(run.metrics_path)
        parts.elapsed_before, parts.started = state.elapsed_s, time.perf_counter()
        self._emit({"kind": "start", "run_id": self.run_id, "step": state.step, "total_steps": parts.total_steps,
                    "epochs": self.cfg.epochs, "steps_per_epoch": parts.steps_per_epoch, "resumed": self.resume,
                    "device": str(parts.device), "precision": str(parts.amp_dtype or "fp32"),
                    "world_size": self.world_size, "n_train": len(parts.train), "n_val": len(parts.val),
                    "n_test": len(parts.test),
                    # What the run's weights mean, on record from the first line (Run.classes):
                    "dataset": parts.data.source.label, "classes": classes,
                    "dataset_description": parts.data.description(), "time": time.time()})
        return state

    # -- epoch ---------------------------------------------------------------------------

    def epoch(self, parts: Parts, state: RunState) -> None:
        """The steps of epoch `state.epoch` from batch `state.batch`; raises _Stop on a stop request."""
        cfg = self.cfg
        set_train_mode(cfg, parts.model)
        low_res = cfg.low_res if state.epoch < cfg.low_res_epochs else 0
        for images, labels, *teacher in parts.loader.iter_from(state.epoch, state.batch):
            if self.stop_event.is_set() or self._over_budget():
                raise _Stop
            if low_res:
                images = shrink(images, low_res, cfg.low_res_mode)
            targets = None
            if teacher:  # cfg.distill: the loader gives the teacher's probabilities too
                targets = blend(labels, teacher[0], cfg.distill_weight)
            if parts.mixer is not None:
                # Seeded by (seed, step) so a resumed run draws the same mixes.
                parts.mixer.generator = torch.Generator(device=images.device).manual_seed(
                    cfg.seed * 1_000_003 + state.step)
                images, targets = parts.mixer(images, labels)
            logits, loss = self.train_step(parts, images, labels, targets)
            parts.scheduler.step()
            if parts.ema is not None:
                parts.ema.update_parameters(parts.raw_model)
            if parts.lookahead is not None:
                decay = Lookahead.decay_at(cfg, state.step + 1, parts.total_steps)
                if decay is not None:
                    parts.lookahead.update(parts.raw_model, decay)
            with torch.no_grad():
                ref = targets.argmax(1) if parts.mixer is not None else labels
                parts.meter.add(loss, (logits.argmax(1) == ref).sum(), labels.shape[0])
            state.batch += 1
            state.step += 1
            if state.step % parts.log_every == 0:
                self._log_steps(parts, state)
        self._log_steps(parts, state)  # the epoch's last steps, so the epoch record is exact

    def _over_budget(self) -> bool:
        if self._deadline is not None and time.monotonic() >= self._deadline:
            self.out_of_time = True
        return self.out_of_time

    def train_step(self, parts: Parts, images, labels, targets=None):
        """One optimizer step on a batch (two passes for SAM); returns the first pass's (logits, loss)."""
        cfg = self.cfg

        def forward():
            with torch.autocast(parts.device.type, dtype=parts.amp_dtype or torch.float32,
                                enabled=parts.amp_dtype is not None):
                logits = parts.model(images)
            logits = logits.float()
            return logits, training_loss(cfg, logits, labels, targets, parts.raw_model)

        return optimizer_step(cfg, parts.optimizer, parts.scaler, parts.raw_model.parameters(), forward)

    def _log_steps(self, parts: Parts, state: RunState) -> None:
        """Read the metrics of the steps since the last read (one sync) into the epoch's sums
        and one "step" event (its loss and accuracy are over those steps)."""
        if not parts.meter.steps:
            return
        parts.session_steps += parts.meter.steps
        loss_sum, correct, seen = parts.meter.take()
        state.add_steps(loss_sum, correct, seen)
        parts.session_images += int(seen)
        now = max(time.perf_counter() - parts.started, 1e-9)
        state.elapsed_s = parts.elapsed_before + now
        rate = parts.session_steps / now
        self._emit({"kind": "step", "step": state.step, "epoch": state.epoch + state.batch / parts.steps_per_epoch,
                    "train_loss": loss_sum / seen, "train_acc": correct / seen,
                    "lr": parts.optimizer.param_groups[0]["lr"], "images_per_s": parts.session_images / now,
                    "elapsed_s": state.elapsed_s, "eta_s": (parts.total_steps - state.step) / rate})

    # -- evaluate ------------------------------------------------------------------------

    def evaluate(self, parts: Parts, state: RunState) -> bool:
        """End of an epoch: validate, keep the best, checkpoint, emit the epoch record, call the
        hooks. True when early stopping says the run is over."""

        cfg = self.cfg
        dist.broadcast_buffers(parts.raw_model)
        record = {"kind": "epoch", "epoch": state.epoch + 1, "step": state.step,
                  "train_loss": state.epoch_loss_sum / state.epoch_seen,
                  "train_acc": state.epoch_correct / state.epoch_seen, "val_loss": None, "val_acc": None,
                  "lr": parts.optimizer.param_groups[0]["lr"], "elapsed_s": state.elapsed_s,
                  "images_per_s": parts.session_images / max(time.perf_counter() - parts.started, 1e-9)}
        improved = True
        if len(parts.val):
            res = eval_mod.evaluate(parts.eval_model, parts.val, device=parts.device,
                                    precision=_eval_precision(parts.amp_dtype),
                                    num_classes=len(parts.data.classes))
            record["val_loss"], record["val_acc"] = res.loss, res.accuracy
            improved = res.accuracy > state.best_val_acc
        if improved:
            state.best_val_acc = record["val_acc"] if record["val_acc"] is not None else -1.0
            state.best_epoch = state.epoch + 1
            state.bad_epochs = 0
            if self.is_main:
                Run(self.run_dir).save_best(parts.eval_model, {"model": cfg.model, "run_id": self.run_id,
                                                               "classes": json.dumps(list(parts.data.classes))})
        else:
            state.bad_epochs += 1
        state.end_epoch()
        if self.is_main:   # a small fp16 copy per epoch for the app's Inside-the-network view (runs.py)
            save_epoch_snapshot(Run(self.run_dir), parts.eval_model, state.epoch, cfg.epochs)
        self._save_checkpoint(parts, state)
        self._emit(record)
        for hook in self.epoch_hooks:
            hook(state.epoch, parts.eval_model)
        return bool(cfg.early_stop_patience and state.bad_epochs >= cfg.early_stop_patience)

    def _save_checkpoint(self, parts: Parts, state: RunState) -> None:
        if not self.is_main:
            return
        save_checkpoint({
            "model": parts.raw_model.state_dict(), "optimizer": parts.optimizer.state_dict(),
            "scheduler": parts.scheduler.state_dict(), "scaler": parts.scaler.state_dict(),
            "ema": parts.ema.state_dict() if parts.ema is not None else None,
            "lookahead": parts.lookahead.state_dict() if parts.lookahead is not None else None,
            "state": state.to_dict(), "rng": rng_state(),
        }, Run(self.run_dir).checkpoint_path)

    # -- finish --------------------------------------------------------------------------

    def finish(self, parts: Parts, state: RunState, status: str) -> dict:
        """Score the best weights on the test set (not after a stop), write summary.json, emit "end"."""
        cfg = self.cfg
        summary = {"run_id": self.run_id, "status": status, "model": cfg.model, "epochs_run": state.epoch,
                   "steps": state.step, "best_epoch": state.best_epoch,
                   "best_val_acc": state.best_val_acc if len(parts.val) else None,
                   "elapsed_s": state.elapsed_s, "device": str(parts.device), "world_size": self.world_size,
                   "precision": str(parts.amp_dtype or "fp32"), "test_acc": None, "n_test": len(parts.test),
                   "dataset": parts.data.source.label, "dataset_fingerprint": parts.data.source.fingerprint,
                   "classes": list(parts.data.classes), "dataset_description": parts.data.description(),
                   "hardware": hardware_info()}
        if status == "stopped" and self.out_of_time:
            summary["stop_reason"] = "time budget"
        if self.world_size > 1:
            # DDP keeps replicas identical; record each rank's weights digest so that is visible.
            summary["weights_sha256_by_rank"] = dist.gather_digests(parts.raw_model)
        if status != "stopped" and self.is_main:
            best = self.load_best(parts.device)
            # fp32 whatever the training precision: the one scoring that Evaluate and the model
            # card's export use too, so the Train tab and Evaluate report the same test accuracy
            # (under bf16 autocast a few of 10,000 predictions flip: 84.85% against 84.87%).
            kw = dict(device=parts.device, precision="fp32", num_classes=len(parts.data.classes))
            summary["test_precision"] = "fp32"
            # One pass: with TTA the plain view is the first view, scored on the way.
            res = eval_mod.evaluate(best, parts.test, tta=cfg.tta, tta_confidence=cfg.tta_confidence, **kw)
            plain = res.plain or {"accuracy": res.accuracy, "loss": res.loss}
            summary["test_acc"], summary["test_loss"] = plain["accuracy"], plain["loss"]
            if cfg.tta != "none":
                summary["test_acc_tta"] = res.accuracy
        if self.is_main:
            Run(self.run_dir).write_summary(summary)
        self._emit({"kind": "end", **summary})
        self._close()
        return summary

    def load_best(self, device="cpu") -> nn.Module:
        # Not weights.load: its models are shared and cached, and this one is the run's own.
        run = Run(self.run_dir)
        return model_from_state(read_run_state(run), self.cfg.model, run.classes(), self.cfg.model_kwargs).to(device)

    # -- events --------------------------------------------------------------------------

    def _emit(self, event: dict) -> None:
        for sink in ([self._jsonl] if self._jsonl else []) + self.sinks:
            sink(event)

    def _close(self) -> None:
        if self._jsonl:
            self._jsonl.close()
            self._jsonl = None


class _Stop(Exception):
    """Raised inside the loop when a stop was requested."""


def _eval_precision(amp_dtype) -> str:
    return "bf16" if amp_dtype == torch.bfloat16 else "fp32"
