"""One place in the training queue per client (public mode), whatever tokens it mints: the job
manager's per-client share, and how ui.context finds a request's client (its address)."""

from __future__ import annotations

import pytest

from cifar_demo import jobs
from cifar_demo.train import TrainConfig
from cifar_demo.ui.context import client_address, client_key, trusted_proxies

from .helpers import FakeChild


@pytest.fixture
def env(tmp_path):
    children: list[FakeChild] = []

    def spawn(cmd, log_path):
        children.append(FakeChild(cmd))
        return children[-1]

    def make(public=True, **kw):
        return jobs.JobManager(tmp_path / "runs", public=public, spawn=spawn, dispatch=False, bounds=None, **kw)

    return make, children, None


def cfg():
    return TrainConfig(model="simple_cnn", epochs=1, train_limit=1000, val_size=100, test_limit=100, batch_size=50)


def test_tokens_minted_by_one_client_hold_one_place_whatever_the_owner(env):
    make, children, clock = env
    m = make()
    m.submit(cfg(), "tok1", client="addr-1")          # trains
    for i in range(2, 9):                              # seven more tokens from the same address
        with pytest.raises(jobs.JobError, match="from your network address") as err:
            m.submit(cfg(), f"tok{i}", client="addr-1")
        assert "tok1" not in str(err.value) and m.view("tok1").snap.run_id not in str(err.value)
    with pytest.raises(jobs.JobError, match="from your network address"):
        m.hold("tok9", client="addr-1")                # nor a study
    assert m.submit(cfg(), "other", client="addr-2")   # another address queues as before
    m.stop("tok1")
    m.poll()                                           # the first run ended: the address may start again
    assert m.submit(cfg(), "tok2", client="addr-1")
    # A study holds its client's place for all of its runs, and a resume asks for a place too.
    wide = make(places_per_client=2)
    h = wide.hold("s1", client="addr-3")
    wide.submit(cfg(), "s1", hold=h)
    wide.submit(cfg(), "s2", client="addr-3")
    with pytest.raises(jobs.JobError, match="from your network address"):
        wide.submit(cfg(), "s3", client="addr-3")
    wide.release(h)                                    # the study's run goes on, and counts as a run
    with pytest.raises(jobs.JobError, match="from your network address"):
        wide.submit(cfg(), "s3", client="addr-3")


def test_local_mode_and_a_missing_client_count_by_owner(env):
    make, children, clock = env
    local = make(public=False)
    local.submit(cfg(), jobs.LOCAL, client="addr-1")
    with pytest.raises(jobs.JobError, match="already going"):
        local.hold(jobs.LOCAL)
    m = make()
    m.submit(cfg(), "tok1")                            # no client known: the owner is its own client
    assert m.submit(cfg(), "tok2")


def test_the_client_address_is_the_trusted_proxys_entry_never_one_the_client_wrote():
    # No proxy trusted: the connection's peer, whatever X-Forwarded-For says.
    assert client_address("10.0.0.5", ["1.2.3.4"], 0) == "10.0.0.5"
    # One proxy that appends (a Space's): its entry, the last; what the client wrote is further left.
    assert client_address("10.16.3.80", ["6.6.6.6, 198.51.100.7"], 1) == "198.51.100.7"
    assert client_address("10.16.3.80", ["6.6.6.6", "198.51.100.7"], 1) == "198.51.100.7"
    assert client_address("10.16.3.80", ["198.51.100.7, 203.0.113.1"], 2) == "198.51.100.7"
    # A chain shorter than the trusted proxies: the peer (all such requests are one client).
    assert client_address("10.16.3.80", [], 1) == client_address("10.16.3.80", [""], 2) == "10.16.3.80"
    assert trusted_proxies({}) == 0 and trusted_proxies({"SPACE_ID": "u/s"}) == 1
    assert trusted_proxies({"SPACE_ID": "u/s", "CIFAR_DEMO_TRUSTED_PROXIES": "0"}) == 0
    key = client_key("198.51.100.7")
    assert key == client_key("198.51.100.7") != client_key("198.51.100.8") and "198" not in key
