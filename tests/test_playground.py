"""The playground's server, through its HTTP endpoints, on an ephemeral loopback port per module.

Every number the page is sent is checked against a direct `Backend.train` / `loss_and_grads` call:
chunk k of a run is one `train` call from chunk k−1's params with seed + k. A bad setting is a 400 whose
JSON names the field. The real-browser test (headless Chromium over the DevTools protocol) is at the end
and skips, with the reason, where no browser is installed.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from backends import available_backends, get_backend
from comparisons import playground as pg
from shared.trajectory import Trajectory

ROOT = Path(__file__).resolve().parent.parent

# A small run that exercises what chunking touches: minibatches (the seed of each chunk), Adam (state).
CONFIG = {
    "dataset": "moons",
    "n": 60,
    "noise": 0.2,
    "sizes": "2,5,3,1",
    "optimizer": "adam",
    "lr": 0.02,
    "batch_size": 16,
    "steps": 10,
    "every": 4,
    "resolution": 12,
    "backends": ",".join(available_backends()),
}


@pytest.fixture(scope="module")
def server():
    srv = pg.PlaygroundServer(port=0)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def call(server, path: str, body: dict | None = None) -> tuple[int, object]:
    """(status, JSON) of a GET (body None) or a POST; a JSON-lines answer as a list of objects."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(server.url.rstrip("/") + path, data=data, method="GET" if body is None else "POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            status, text, kind = response.status, response.read(), response.headers["Content-Type"]
    except urllib.error.HTTPError as e:
        status, text, kind = e.code, e.read(), e.headers["Content-Type"]
    if kind == "application/x-ndjson":
        return status, [json.loads(line) for line in text.splitlines()]
    return status, json.loads(text) if kind == "application/json" else text


@pytest.fixture(scope="module")
def run(server):
    """A run with two chunks trained: (run reply, [chunk 1 lines, chunk 2 lines])."""
    status, started = call(server, "/api/run", {"config": CONFIG})
    assert status == 200, started
    chunks = []
    for _ in range(2):
        status, lines = call(server, "/api/step", {"run": started["run"]})
        assert status == 200, lines
        chunks.append(lines)
    return started, chunks


def test_it_listens_on_the_loopback_address_only(server):
    assert server.server_address[0] == "127.0.0.1"
    status, options = call(server, "/api/options")
    assert status == 200 and options["installed"] == available_backends()
    assert set(options["defaults"]) == set(pg.CONFIG_FIELDS)


def test_the_page_is_served_and_fetches_nothing_from_elsewhere(server):
    status, page = call(server, "/")
    assert status == 200 and b"<canvas" in page
    assert b"http://" not in page and b"https://" not in page and b"//cdn" not in page


def test_each_chunk_equals_a_direct_train_call_from_the_last_params(run):
    started, chunks = run
    s = pg.setup(CONFIG)
    assert started["lanes"] == [f"{b}-{d}" for d in ("float64", "float32") for b in available_backends()]
    assert started["config"] == s.config
    for backend, dtype in s.lanes:
        be = get_backend(backend, dtype)
        params = s.params
        for k, lines in enumerate(chunks):
            (lane,) = [line for line in lines if line["type"] == "lane" and line["lane"] == f"{backend}-{dtype}"]
            direct = be.train(
                s.spec, params, s.X_train, s.y_train, s.optimizer, 10, batch_size=16, seed=k, record_every=4
            )
            np.testing.assert_array_equal(np.array(lane["losses"], dtype), direct.losses)
            for got, want in zip(lane["params"], direct.params):
                np.testing.assert_array_equal(np.array(got["W"], dtype), want["W"])
                np.testing.assert_array_equal(np.array(got["b"], dtype), want["b"])
            assert lane["steps"] == [10 * k + i for i in (0, 4, 8, 10)]
            final = be.loss_and_grads(s.spec, direct.params, s.X_test, s.y_test)[0]
            assert lane["test_loss"][-1] == final
            assert lane["train_loss"][0] == be.loss_and_grads(s.spec, params, s.X_train, s.y_train)[0]
            params = direct.params
    assert chunks[1][-1] == {"type": "done", "step": 20, "chunks": 2}


def test_the_parity_gap_is_in_eps_units_with_the_tolerance_line(run):
    started, chunks = run
    (parity,) = [line for line in chunks[0] if line["type"] == "parity"]
    n = len(available_backends())
    assert len(parity["pairs"]) == 2 * n * (n - 1) // 2
    lanes = {line["lane"]: line for line in chunks[0] if line["type"] == "lane"}
    for pair in parity["pairs"]:
        a = lanes[f"{pair['a']}-{pair['dtype']}"]["params"]
        b = lanes[f"{pair['b']}-{pair['dtype']}"]["params"]
        flat_a = np.concatenate([np.ravel(layer[k]) for layer in a for k in ("W", "b")])
        flat_b = np.concatenate([np.ravel(layer[k]) for layer in b for k in ("W", "b")])
        eps = np.finfo(pair["dtype"]).eps
        want = np.abs(flat_a - flat_b).max() / (eps * max(np.abs(flat_a).max(), np.abs(flat_b).max()))
        assert pair["gap_eps"][-1] == pytest.approx(want, rel=1e-12)
        assert all(pair["within"]) and max(pair["gap_eps"]) < min(pair["tol_eps"])
        kind = "trajectory" if pair["dtype"] == "float64" else "trajectory_adam"
        assert started["tolerance_kind"][pair["dtype"]] == kind
        rtol = {"float64": 1e-8, "float32": 1e-3}[pair["dtype"]]
        assert pair["tol_eps"][-1] == pytest.approx(rtol / eps, rel=0.1)  # atol adds a little


def test_full_batch_sgd_in_chunks_is_one_long_run(server):
    config = {"dataset": "xor", "n": 40, "sizes": "2,4,1", "optimizer": "sgd", "lr": 0.5, "steps": 7, "every": 7}
    config |= {"backends": "numpy", "dtypes": "float64", "resolution": 10}
    _, started = call(server, "/api/run", {"config": config})
    losses = []
    for _ in range(3):
        _, lines = call(server, "/api/step", {"run": started["run"]})
        losses += lines[0]["losses"]
    s = pg.setup(config)
    direct = get_backend("numpy").train(s.spec, s.params, s.X_train, s.y_train, s.optimizer, 21)
    np.testing.assert_array_equal(losses, direct.losses)


def test_the_view_is_the_backends_own_forward_over_the_grid(run):
    started, chunks = run
    (view,) = [line for line in chunks[1] if line["type"] == "view"]
    s = pg.setup(CONFIG)
    lane = [line for line in chunks[1] if line["type"] == "lane"][0]
    params = [{k: np.array(layer[k]) for k in ("W", "b")} for layer in lane["params"]]
    logits = get_backend("numpy").forward(s.spec, params, pg.grid_points(s.extent, 12))
    p1 = 1 / (1 + np.exp(-logits[:, 0]))
    np.testing.assert_allclose(view["probs"][1], p1, atol=6e-4)  # sent rounded to 3 decimals
    assert [len(units) for units in view["hidden"]] == [5, 3]
    assert all(len(unit) == pg.HIDDEN_RESOLUTION**2 for units in view["hidden"] for unit in units)


def test_the_export_is_a_trajectory_file_of_the_whole_run(server, run):
    started, chunks = run
    lane = f"{available_backends()[-1]}-float32"
    status, data = call(server, f"/api/export.npz?run={started['run']}&lane={lane}")
    assert status == 200
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "run.npz"
        path.write_bytes(data)
        traj = Trajectory.load(path)
    streamed = [line for lines in chunks for line in lines if line.get("lane") == lane and line["type"] == "lane"]
    np.testing.assert_array_equal(traj.losses, np.concatenate([line["losses"] for line in streamed]).astype("float32"))
    assert traj.snapshot_steps.tolist() == [0, 10] and traj.meta["dtype"] == "float32"
    np.testing.assert_array_equal(traj.params[-1]["b"], np.array(streamed[-1]["params"][-1]["b"], "float32"))
    status, config = call(server, f"/api/config.json?run={started['run']}")
    assert status == 200 and config["config"] == started["config"] and config["step"] >= 20


BAD = [
    # (config, the field the 400 must name)
    ({"lr": "nan"}, "lr"),
    ({"lr": -1}, "lr"),
    ({"n": 10**6, "dataset": "moons"}, "n"),
    ({"sizes": "2,100,1"}, "sizes"),
    ({"sizes": "2,4,4,4,4,4,4,4,1"}, "sizes"),
    ({"sizes": "3,4,1"}, "sizes"),
    ({"dataset": "blobs"}, "sizes"),  # 3 classes, one bce output
    ({"dataset": "mnist"}, "dataset"),
    ({"batch_size": 1000}, "batch_size"),
    ({"batch_size": 190}, "batch_size"),  # fits the 200 samples, not the 150 of the training split
    ({"steps": 10**5}, "steps"),
    ({"steps": 1000, "every": 1}, "every"),
    ({"resolution": 10**4}, "resolution"),
    ({"test_fraction": 1.5}, "test_fraction"),
    ({"dtypes": "float16"}, "dtypes"),
    ({"backends": "cuda"}, "backends"),
    ({"seed": -1}, "seed"),
    ({"noise": [1, 2]}, "noise"),
    ({"activation": True}, "activation"),
    ({"port": 80}, "port"),  # a command-line option, not a page setting
]


@pytest.mark.parametrize("config, field", BAD, ids=[json.dumps(c) for c, _ in BAD])
def test_a_bad_setting_is_a_400_naming_the_field(server, config, field):
    status, reply = call(server, "/api/run", {"config": config})
    assert status == 400, reply
    assert reply["field"] == field and field in reply["error"], reply


def test_a_bad_step_or_body_is_a_400(server, run):
    started, _ = run
    assert call(server, "/api/step", {"run": "nope"})[1]["field"] == "run"
    for steps in (0, 10**6, "10", True):
        status, reply = call(server, "/api/step", {"run": started["run"], "steps": steps})
        assert status == 400 and reply["field"] == "steps", reply
    request = urllib.request.Request(server.url + "api/run", data=b"{not json", method="POST")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(request, timeout=10)
    assert e.value.code == 400 and json.loads(e.value.read())["field"] == "body"
    assert call(server, "/api/export.npz?run=" + started["run"] + "&lane=gpu")[1]["field"] == "lane"


def test_a_closed_tab_leaves_the_run_as_it_was_and_the_server_serving(server):
    config = {"backends": "numpy", "dtypes": "float64", "steps": 5, "resolution": 10}
    _, started = call(server, "/api/run", {"config": config})
    body = json.dumps({"run": started["run"]}).encode()
    with socket.create_connection(server.server_address) as tab:
        tab.sendall(b"POST /api/step HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n")
        tab.sendall(b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    time.sleep(0.5)
    _, lines = call(server, "/api/step", {"run": started["run"]})
    assert lines[-1]["step"] in (5, 10)  # the first chunk either finished or changed nothing
    assert call(server, "/api/options")[0] == 200


def test_the_command_starts_prints_its_url_and_stops_cleanly_on_ctrl_c():
    process = subprocess.Popen(
        [sys.executable, "-m", "comparisons", "playground", "--port", "0", "--no-open", "--dataset", "moons"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "BROWSER": "true"},
    )
    try:
        line = process.stdout.readline()
        assert line.startswith("trigrad playground at http://127.0.0.1:") and "dataset=moons" in line
        url = line.split()[3]
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.status == 200
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=10)
    finally:
        process.kill()
    assert process.returncode == 0 and "Traceback" not in err and "stopped" in err
