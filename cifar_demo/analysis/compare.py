"""A/B recipes over seeds: plan the runs, run them one after another, summarize them fairly.

A study trains one model with two recipes (A and B) for 1-3 seeds each on a small budget.
Every run is an ordinary run: a TrainConfig made by train.make_config and validated, queued
in the app's job manager (jobs.manager().submit) as the study's owner, written to its own run
directory. A study holds one place in the job queue from its start to its end (JobManager.hold):
it is refused as a start would be (the owner already has a run or study, or the queue is full)
and never waits outside the queue; each of its runs is queued under that place, at the back of
the queue. Nothing here trains; the runner only decides when to queue the next run.

The comparison reads validation accuracy only. Choosing between recipes on the test set would
turn the test set into a second validation set, and its figures would no longer be honest.

    study = new_study("simple_cnn", Recipe("A"), Recipe("B", mix="cutmix"), seeds=2, data=folder)
    runner = start_study(study)          # a thread; the study is saved in runs/.studies/<id>.json
    summarize(Study.load(study.path))    # mean +- std of val accuracy per epoch, and the verdict
"""

from __future__ import annotations

import json
import os
import statistics
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .. import jobs
from ..fsio import atomic_write_text
from ..train import Run, TrainConfig
from .study_plan import KEYS, MAX_SEEDS, MIX_CHOICES, MIX_OFF, MIX_PROB, Budget, Recipe, plan

__all__ = ["ENDED_OK", "GOING", "KEYS", "MAX_SEEDS", "MIX_CHOICES", "MIX_OFF", "MIX_PROB", "RULE", "Budget",
           "Recipe", "Study", "StudyError", "StudyRunner", "Summary", "active", "latest_study", "list_studies",
           "new_study", "plan", "start_study", "status_of", "stop_active", "summarize", "verdict"]

STUDIES_DIR = ".studies"   # under the runs folder; list_runs only looks at */config.json
ENDED_OK = ("finished", "early_stopped")
GOING = ("planned", "running", "waiting", "stopping")   # "waiting": studies saved before holds existed
RULE = ("the difference exceeds the seed spread when |mean B - mean A| > std A + std B "
        "(final validation accuracy; sample standard deviation over seeds)")


class StudyError(RuntimeError):
    """A request refused (e.g. a second study while one is going); the message is for the user."""


# ----------------------------------------------------------------------------- the study on disk

@dataclass
class Study:
    """A planned A/B study and how far it got, saved as JSON in <runs>/.studies/<id>.json.

    Each plan entry gains "run_id" when its run starts and "outcome" (the run's status, or
    "cancelled") when it has ended, so a closed page or a restarted app reads it back."""

    id: str
    model: str
    owner: str                         # the job queue's owner (jobs.LOCAL, or a public visitor)
    recipes: dict                      # {"A": Recipe as a dict, "B": ...}
    budget: dict
    plan: list[dict]
    status: str = "planned"            # planned | running | waiting | stopping | finished | stopped | failed
    message: str = ""
    created: float = field(default_factory=time.time)
    runs_dir: Path = field(default=Path("runs"), repr=False, compare=False)   # not saved

    @property
    def path(self) -> Path:
        return Path(self.runs_dir) / STUDIES_DIR / f"{self.id}.json"

    def to_json(self) -> str:
        d = asdict(self)
        d.pop("runs_dir")
        return json.dumps(d, indent=2, sort_keys=True)

    def save(self) -> Path:
        return atomic_write_text(self.path, self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> "Study":
        path = Path(path)
        return cls(**json.loads(path.read_text(encoding="utf-8")), runs_dir=path.parent.parent)

    def recipe(self, key: str) -> Recipe:
        return Recipe.from_dict(self.recipes[key])

    def current(self) -> int | None:
        """The entry whose run has started and not yet been seen to end."""
        return next((i for i, e in enumerate(self.plan) if e.get("run_id") and not e.get("outcome")), None)

    def next_index(self) -> int | None:
        return next((i for i, e in enumerate(self.plan) if not e.get("run_id") and not e.get("outcome")), None)

    def cancel_rest(self) -> None:
        for e in self.plan:
            if not e.get("run_id") and not e.get("outcome"):
                e["outcome"] = "cancelled"


def new_study(model: str, recipe_a: Recipe, recipe_b: Recipe, seeds: int, budget: Budget = Budget(),
              data: str | None = None, owner: str = jobs.LOCAL, manager: jobs.JobManager | None = None) -> Study:
    """A study of plan(...)'s runs for `owner`, kept in the owner's runs folder (not saved, not
    started: see start_study)."""
    configs = plan(model, recipe_a, recipe_b, seeds, budget, data)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    entries = [{"recipe": KEYS[i % 2], "seed": cfg.seed, "config": cfg.to_dict()} for i, cfg in enumerate(configs)]
    runs_dir = (manager or jobs.manager()).runs_dir_for(owner)
    return Study(id=f"{stamp}-{model}-{os.urandom(2).hex()}", model=model, owner=owner,
                 recipes={"A": asdict(recipe_a), "B": asdict(recipe_b)}, budget=asdict(budget),
                 plan=entries, runs_dir=Path(runs_dir))


def list_studies(runs_dir: str | Path) -> list[Study]:
    """Every saved study, newest first."""
    folder = Path(runs_dir) / STUDIES_DIR
    return [Study.load(p) for p in sorted(folder.glob("*.json"), reverse=True)]


def study_runs(runs_dir: str | Path) -> dict[str, str]:
    """{run id: study id} of every run a saved study of `runs_dir` started."""
    return {e["run_id"]: st.id for st in list_studies(runs_dir) for e in st.plan if e.get("run_id")}


def latest_study(runs_dir: str | Path) -> Study | None:
    studies = list_studies(runs_dir)
    return studies[0] if studies else None


# ----------------------------------------------------------------------------- the runner

class StudyRunner(threading.Thread):
    """Queues the study's runs one after another under its place in the job queue (`hold`,
    from JobManager.hold), as its owner.

    Each tick (advance) looks at the study's current run: while it is queued (behind someone
    else's run) or training, the runner waits; when it has ended, the next one is queued. stop()
    stops the current run (or takes its queued start back) and cancels the rest. When the study
    is over (or the runner fails) the place is given back."""

    def __init__(self, study: Study, manager: jobs.JobManager, poll: float = 1.0, hold: str | None = None):
        super().__init__(name=f"study-{study.id}", daemon=True)
        self.study, self.manager, self.poll = study, manager, poll
        self.hold = hold if hold is not None else manager.hold(study.owner, what=f"study {study.id}")
        self._stop_asked = threading.Event()
        self._stop_sent = False
        self._saved = ""

    def stop(self) -> None:
        self._stop_asked.set()

    def run(self) -> None:
        try:
            while not self.advance():
                self._stop_asked.wait(self.poll)
        except Exception as e:  # the page must see why, not a silently dead thread
            self.study.cancel_rest()
            self._set("failed", f"the study's runner failed: {type(e).__name__}: {e}")
        finally:
            self.manager.release(self.hold)

    def _set(self, status: str, message: str = "") -> None:
        self.study.status, self.study.message = status, message
        text = self.study.to_json()
        if text != self._saved:  # a tick that changes nothing writes nothing
            self.study.save()
            self._saved = text

    def advance(self) -> bool:
        """One look at the queue; True when the study is over (its place is then given back)."""
        over = self._advance()
        if over:
            self.manager.release(self.hold)
        return over

    def _advance(self) -> bool:
        st, owner = self.study, self.study.owner
        cur = st.current()
        if cur is not None:
            entry = st.plan[cur]
            snap = self.manager.snapshot(entry["run_id"], st.runs_dir)
            if snap.status in jobs.ACTIVE:
                if self._stop_asked.is_set() and not self._stop_sent:
                    self._stop_sent = self.manager.stop(owner, entry["run_id"])
                self._set("stopping" if self._stop_sent else "running",
                          "queued behind another run" if snap.status == "queued" else "")
                return False
            entry["outcome"] = snap.status
            if snap.status not in ENDED_OK:
                st.cancel_rest()
                if self._stop_asked.is_set():
                    self._set("stopped", "stopped by request")
                elif snap.status == "stopped":
                    self._set("stopped", f"run {entry['run_id']} was stopped outside the study "
                                         f"({snap.note or 'e.g. from the Train tab'}); the rest is cancelled")
                else:
                    tail = snap.log_tail.strip().splitlines()
                    self._set("failed", f"run {entry['run_id']} {snap.status}" + (f": {tail[-1]}" if tail else ""))
                return True
        if self._stop_asked.is_set():
            st.cancel_rest()
            self._set("stopped", "stopped by request")
            return True
        nxt = st.next_index()
        if nxt is None:
            self._set("finished")
            return True
        try:
            # Under the study's place: never refused for a full queue, never waiting outside it.
            run_id = self.manager.submit(TrainConfig.from_dict(st.plan[nxt]["config"]), owner, hold=self.hold)
        except (ValueError, jobs.JobError) as e:
            st.cancel_rest()
            self._set("failed", f"run {nxt + 1} of the study was refused: {e}")
            return True
        st.plan[nxt]["run_id"] = run_id
        queued = self.manager.snapshot(run_id, st.runs_dir).status == "queued"
        self._set("running", "queued behind another run" if queued else "")
        return False


_ACTIVE: dict[str, StudyRunner] = {}   # owner -> its runner in this process
_ACTIVE_LOCK = threading.Lock()


def start_study(study: Study, manager: jobs.JobManager | None = None, poll: float = 1.0,
                client: str | None = None) -> StudyRunner:
    """Check every run's config, take the study's place in the job queue (for `owner`, asked by
    `client`: see JobManager.hold), save the study and start its runner. Refused (StudyError)
    while the owner has another study, or a run, queued or going, when `client` has its share, or
    when the queue is full: the study then does not start at all (nothing waits outside the queue)."""
    manager = manager or jobs.manager()
    with _ACTIVE_LOCK:
        runner = _ACTIVE.get(study.owner)
        if runner is not None and runner.is_alive():
            raise StudyError(f"a study is already going ({runner.study.id}); stop it or wait for it to finish")
        try:
            for entry in study.plan:
                manager.check(TrainConfig.from_dict(entry["config"]))
            hold = manager.hold(study.owner, client, what=f"study {study.id}")
        except (ValueError, jobs.JobError) as e:
            raise StudyError(str(e)) from None
        try:
            study.save()
            _ACTIVE[study.owner] = runner = StudyRunner(study, manager, poll, hold)
            runner.start()
        except BaseException:
            manager.release(hold)
            raise
        return runner


def active(owner: str = jobs.LOCAL) -> StudyRunner | None:
    """The owner's study runner in this process, while it runs."""
    runner = _ACTIVE.get(owner)
    return runner if runner is not None and runner.is_alive() else None


def stop_active(owner: str = jobs.LOCAL) -> bool:
    runner = active(owner)
    if runner is None:
        return False
    runner.stop()
    return True


def status_of(study: Study) -> str:
    """The study's status as this process sees it: a study saved as going whose runner is not
    alive here was interrupted (the app restarted)."""
    runner = active(study.owner)
    if study.status in GOING and (runner is None or runner.study.id != study.id):
        return "interrupted"
    return study.status


# ----------------------------------------------------------------------------- the summary

@dataclass
class RecipeSummary:
    key: str
    recipe: Recipe
    epochs: list[int]                  # epochs that at least one seed has reached
    mean: list[float]                  # mean validation accuracy over the seeds at that epoch
    std: list[float | None]            # sample std over the seeds (None with fewer than 2)
    n: list[int]                       # how many seeds the epoch's figures are over
    curves: dict[int, list[tuple[int, float]]]   # seed -> [(epoch, val_acc)]
    final: dict[int, float]            # seed -> the last epoch's val accuracy, finished runs only
    final_mean: float | None
    final_std: float | None


@dataclass
class Summary:
    a: RecipeSummary
    b: RecipeSummary
    difference: float | None           # final_mean B - final_mean A
    spread: float | None               # final_std A + final_std B
    exceeds: bool | None               # None: no spread to compare against
    verdict: str
    rule: str = RULE


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def _recipe_summary(study: Study, key: str) -> RecipeSummary:
    curves, final = {}, {}
    for e in study.plan:
        if e["recipe"] != key or not e.get("run_id"):
            continue
        try:
            events = Run.find(e["run_id"], study.runs_dir).metrics()
        except FileNotFoundError:   # started, but the child has not created its directory yet
            continue
        points = [(int(r["epoch"]), float(r["val_acc"])) for r in events
                  if r.get("kind") == "epoch" and r.get("val_acc") is not None]
        if points:
            curves[e["seed"]] = points
            if e.get("outcome") in ENDED_OK:
                final[e["seed"]] = points[-1][1]
    by_epoch: dict[int, list[float]] = {}
    for points in curves.values():
        for epoch, acc in points:
            by_epoch.setdefault(epoch, []).append(acc)
    epochs = sorted(by_epoch)
    stats = [_mean_std(by_epoch[ep]) for ep in epochs]
    fmean, fstd = _mean_std([final[s] for s in sorted(final)])
    return RecipeSummary(key, study.recipe(key), epochs, [m for m, _ in stats], [s for _, s in stats],
                         [len(by_epoch[ep]) for ep in epochs], curves, final, fmean, fstd)


def verdict(a: RecipeSummary, b: RecipeSummary) -> tuple[float | None, float | None, bool | None, str]:
    """(difference, spread, exceeds, sentence) by RULE, on the final validation accuracies."""
    if a.final_mean is None or b.final_mean is None:
        return None, None, None, "No verdict yet: each recipe needs at least one finished run."
    diff = b.final_mean - a.final_mean
    head = (f"B - A = {100 * diff:+.2f} points of validation accuracy "
            f"(A {100 * a.final_mean:.2f}% over {len(a.final)} seed(s), "
            f"B {100 * b.final_mean:.2f}% over {len(b.final)}).")
    if a.final_std is None or b.final_std is None:
        short = [s.key for s in (a, b) if s.final_std is None]
        who = f"Recipe {short[0]} has" if len(short) == 1 else "Recipes A and B have"
        return diff, None, None, (f"{head} {who} one seed only: there is no spread to compare the "
                                  "difference against, so it may be noise. Run 2-3 seeds to tell.")
    spread = a.final_std + b.final_std
    if abs(diff) > spread:
        better = "B" if diff > 0 else "A"
        return diff, spread, True, (f"{head} That exceeds the seed spread (std A + std B = {100 * spread:.2f} "
                                    f"points): recipe {better} is better on this budget.")
    return diff, spread, False, (f"{head} That is within the seed spread (std A + std B = {100 * spread:.2f} "
                                 "points): on this budget the two recipes cannot be told apart.")


def summarize(study: Study) -> Summary:
    """Per recipe and epoch the mean and std of validation accuracy over the seeds (read from
    each run's metrics through train.Run), the final accuracy per seed, and the verdict."""
    a, b = _recipe_summary(study, "A"), _recipe_summary(study, "B")
    return Summary(a, b, *verdict(a, b))
