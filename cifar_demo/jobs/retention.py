"""Retention of visitors' folders (public mode): a mixin of JobManager (see jobs/__init__)."""

from __future__ import annotations

import shutil
from pathlib import Path

from .records import LOCAL


class Retention:
    """JobManager's cleanup: visitor folders go RETENTION_S after their last activity, and the
    least recently used first while all of them hold more than disk_cap bytes; never one with a
    run queued or going, or a study holding a place."""

    def cleanup(self, now: float | None = None) -> list[str]:
        """Delete visitor folders whose last run ended RETENTION_S ago, then, while all of them
        hold more than disk_cap bytes, the least recently used folders with no run queued or
        going; returns the owners removed."""
        now = self._clock() if now is None else now
        removed = []
        with self._lock:
            folders = self._visitor_folders()
            for owner, last in folders.items():
                if last is not None and now - last >= self.retention_s:
                    self._remove(owner)
                    removed.append(owner)
            sizes = {o: _size(self.runs_dir_for(o)) for o in folders if o not in removed}
            total = sum(sizes.values())
            for owner in sorted(sizes, key=lambda o: folders[o] if folders[o] is not None else now):
                if total <= self.disk_cap:
                    break
                if folders[owner] is None:   # a run queued or going, or a study: never evicted
                    continue
                self._remove(owner)
                removed.append(owner)
                total -= sizes[owner]
        return removed

    def _visitor_folders(self) -> dict[str, float | None]:
        """{owner: when it was last active (None: a run queued or going, or a study holding a
        place)} for every visitor with a job or a folder: its last run's end, or, with no job (a
        visitor who uploaded a dataset but never trained), the last time its folder was written to."""
        last: dict[str, float | None] = {}
        for j in self._jobs.values():
            if j.owner == LOCAL:
                continue
            if j.state != "ended" or last.get(j.owner, 0.0) is None:
                last[j.owner] = None
            else:
                last[j.owner] = max(last.get(j.owner, 0.0), j.ended or j.submitted)
        for h in self._holds.values():   # a study holding a place: as a run queued or going
            if h.owner != LOCAL:
                last[h.owner] = None
        visitors = self.runs_dir / "visitors"
        for folder in (visitors.iterdir() if self.public and visitors.is_dir() else []):
            if folder.name not in last and folder.is_dir() and folder.name.isalnum():
                last[folder.name] = max(p.stat().st_mtime for p in [folder, *folder.rglob("*")])
        return last

    def _remove(self, owner: str) -> None:
        """A visitor's folder and job records, all of them."""
        shutil.rmtree(self.runs_dir_for(owner), ignore_errors=True)
        for j in [j for j in self._jobs.values() if j.owner == owner]:
            self._jobs.pop(j.run_id, None)
            (self._records() / f"{j.run_id}.json").unlink(missing_ok=True)


def _size(folder: Path) -> int:
    """Bytes of the files under `folder` (0 when it is gone)."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0
