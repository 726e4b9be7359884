"""The app's public API, as a script would use it: gradio_client against `python app.py`.

POST an image to /predict, get {model: {class: probability}} for every model with weights.
The server is the session's shared one (tests/app_server.py), also driven by the browser tests.
"""

from __future__ import annotations

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from cifar_demo import weights, zoo
from cifar_demo.common import CLASSES

from .conftest import REPO

pytest_plugins = ["tests.app_server"]
pytestmark = pytest.mark.slow  # starts the app server in a subprocess

SAMPLE = REPO / "cifar_demo" / "assets" / "sample" / "ship" / "0000.png"


@pytest.fixture(scope="module")
def client(app_server, tmp_path_factory) -> Client:
    return Client(app_server.url, verbose=False, analytics_enabled=False,
                  download_files=str(tmp_path_factory.mktemp("client_downloads")))


def test_predict_endpoint_is_public_with_its_two_inputs(client):
    api = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    assert "/predict" in api
    assert len(api["/predict"]["parameters"]) == 2  # the image and the Grad-CAM switch


def test_predict_returns_a_distribution_per_model_with_weights(client):
    seen, vote, table, cams, probs = client.predict(handle_file(str(SAMPLE)), False, api_name="/predict")
    have = weights.available()
    assert sorted(probs) == have
    for model, dist in probs.items():
        assert list(dist) == list(CLASSES), model
        assert all(0.0 <= p <= 1.0 for p in dist.values()), model
        assert sum(dist.values()) == pytest.approx(1.0, abs=1e-4), model
    # The page's table names every zoo model, and says which ones have no weights.
    for name in zoo.names():
        assert f"<b>{name}</b>" in table
    assert table.count("no weights yet") == len(zoo.names()) - len(have)
    # What the models saw: the 32x32 input, each pixel drawn as an 8x8 square.
    with Image.open(seen) as im:
        assert im.size == (256, 256)
    assert cams == []  # Grad-CAM was off
    if have:
        # The ensemble is the mean of the models' distributions, top class first.
        top = max(CLASSES, key=lambda c: sum(d[c] for d in probs.values()))
        assert vote["label"] == top


def test_grad_cam_through_the_api_gives_one_overlay_per_model_with_weights(client):
    *_, cams, probs = client.predict(handle_file(str(SAMPLE)), True, api_name="/predict")
    assert len(cams) == len(probs)
    for item, model in zip(cams, sorted(probs, key=zoo.names().index)):
        assert item["caption"].startswith(f"{model}: ")


def test_a_non_image_gets_the_message_not_a_traceback(client, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("these are my notes, not a picture")
    with pytest.raises(AppError) as err:
        client.predict(handle_file(str(bad)), False, api_name="/predict")
    assert "not an image PIL can read" in str(err.value)
    assert "Traceback" not in str(err.value)


def test_only_predict_and_familiarity_are_public(client):
    """The page's own wiring (ticks, start/stop, refreshes) is not part of the public API."""
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert sorted(endpoints) == ["/familiarity", "/predict"]


def test_familiarity_returns_the_verdict_as_json(client):
    result = client.predict(handle_file(str(SAMPLE)), api_name="/familiarity")
    assert isinstance(result["unfamiliar"], bool), result
    assert result["unfamiliar"] == (result["score"] < result["threshold"])
    assert sorted(result["per_model"]) == weights.available()
