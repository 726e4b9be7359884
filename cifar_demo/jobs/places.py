"""The queue's places (see jobs/__init__): a mixin of JobManager. A queued start takes one place,
a study (a Hold) one for all of its runs; an owner holds at most one, and in public mode a client
(its address) at most client_cap, whatever tokens it mints."""

from __future__ import annotations

import secrets

from .records import LOCAL, Hold, JobError


class Places:
    """JobManager's admission: who may take a place in the queue now (under its _lock)."""

    def hold(self, owner: str = LOCAL, client: str | None = None, what: str = "a study") -> str:
        """A place in the queue for a study, held until release(): refused (JobError) as a start
        would be (the owner or client already has a place, or the queue is full). Its runs are
        then queued one at a time under it (submit(..., hold=id)), each at the back of the queue."""
        with self._lock:
            client = self._admit(owner, client)
            hold_id = secrets.token_hex(8)
            self._holds[hold_id] = Hold(hold_id, owner, client, what, self._clock())
            return hold_id

    def release(self, hold_id: str) -> None:
        """Give a study's place back (its runs already queued or going stay as they are)."""
        with self._lock:
            self._holds.pop(hold_id, None)

    def _under(self, hold_id: str, owner: str) -> str:
        """The client of `owner`'s hold, which may queue its next run now; else JobError."""
        h = self._holds.get(hold_id)
        if h is None or h.owner != owner:
            raise JobError("this study no longer holds a place in the queue")
        if any(j.hold == hold_id and j.state != "ended" for j in self._jobs.values()):
            raise JobError("the study's run is already queued or going")
        return h.client

    def _admit(self, owner: str, client: str | None) -> str:
        """Refuse (JobError) a new place for `owner`, asked by `client`: one per owner, in public
        mode client_cap per client, queue_cap in all. Returns the client to record."""
        client = client or owner
        mine = self._active(owner)
        if mine is not None:
            what = "queued" if mine.state == "queued" else "going"
            raise JobError(f"a training run is already {what} ({mine.run_id}); stop it or wait for it to finish")
        held = next((h for h in self._holds.values() if h.owner == owner), None)
        if held is not None:
            raise JobError(f"{held.what} is going; stop it or wait for it to finish")
        if self.public and self._client_places(client) >= self.client_cap:
            # Not which run or whose: another token of the same client may be another person's page.
            raise JobError("a run or study from your network address is already queued or going on this shared "
                           "app (one at a time per address); wait for it to finish")
        if self._places() >= self.queue_cap:
            raise JobError(f"the queue is full ({self.queue_cap} runs or studies waiting); try again in a few minutes")
        return client

    def _places(self) -> int:
        """Places taken in the queue: queued starts outside a study, and every study's hold."""
        return len(self._holds) + sum(1 for j in self._queue() if j.hold not in self._holds)

    def _client_places(self, client: str) -> int:
        """Places `client` holds: its runs queued or going outside a study, and its studies."""
        runs = sum(1 for j in self._jobs.values()
                   if j.state != "ended" and (j.client or j.owner) == client and j.hold not in self._holds)
        return runs + sum(1 for h in self._holds.values() if h.client == client)
