"""The playground's server, through its HTTP endpoints, on an ephemeral loopback port per module.

Every number the page is sent is checked against a direct `Backend.train` / `loss_and_grads` call:
chunk k of a run is one `train` call from chunk k−1's params with seed + k. A bad setting is a 400 whose
JSON names the field. The real-browser test (headless Chromium over the DevTools protocol) is at the end
and skips, with the reason, where no browser is installed.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
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
from comparisons.playground import config as pg_config
from comparisons.playground import runs as pg_runs
from comparisons.playground import server as pg
from shared.optim import Adam
from shared.params import tree_leaves
from shared.trajectory import Trajectory
from tests.helpers import ctrl_c_reaches_children

ROOT = Path(__file__).resolve().parents[2]

# A small run that exercises what chunking touches: minibatches (the schedule goes on), Adam (its state goes on).
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
    # Every run the module's tests start stays: with the page's MAX_RUNS, tests that start runs of
    # their own could drop the shared `run` or `gpt_run` before a later test reads it, in whatever
    # order xdist happens to run them (test_the_least_recently_used_run_is_dropped tests the limit).
    srv = pg.PlaygroundServer(port=0, max_runs=1000)
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
    assert set(options["defaults"]) == set(pg_config.CONFIG_FIELDS)


def test_the_page_is_served_and_fetches_nothing_from_elsewhere(server):
    import re

    status, page = call(server, "/")
    assert status == 200 and b"<canvas" in page
    local = re.findall(rb'(?:src|href)="(/static/[^"]+)"', page)
    assert len(local) == 5, local  # its style and four scripts, all served from here
    texts = [page]
    for path in local:
        status, text = call(server, path.decode())
        assert status == 200, path
        texts.append(text.encode() if isinstance(text, str) else text)
    for text in texts:
        text = text.replace(b'"http://www.w3.org/2000/svg"', b"")  # SVG's namespace, a name, not a fetch
        for outside in (b"http:", b"https:", b"//cdn", b"@import", b"url("):
            assert outside not in text, f"the page loads something from outside: {outside!r}"
    assert re.findall(rb'(?:src|href)="([^"#]+)"', page) == local  # nothing else
    for bad in ("/static/../server.py", "/static/page.html", "/static/nope.js"):
        assert call(server, bad)[0] == 404, bad


def test_the_chunks_of_the_page_are_one_train_call(run):
    """Two chunks of 10 Adam steps on minibatches are one `train` call of 20, bit for bit: the params,
    every step's loss, and the recorded steps (every 4, counted over the whole run)."""
    started, chunks = run
    s = pg_config.setup(CONFIG)
    assert started["lanes"] == [f"{b}-{d}" for d in ("float64", "float32") for b in available_backends()]
    assert started["config"] == s.config
    for backend, dtype in s.lanes:
        be = get_backend(backend, dtype)
        one = be.train(s.spec, s.params, s.X_train, s.y_train, s.optimizer, 20, batch_size=16, seed=0, record_every=4)
        lanes = [[line for line in lines if line.get("lane") == f"{backend}-{dtype}"][0] for lines in chunks]
        np.testing.assert_array_equal(np.array(lanes[0]["losses"] + lanes[1]["losses"], dtype), one.losses)
        for got, want in zip(lanes[1]["params"], one.params):
            np.testing.assert_array_equal(np.array(got["W"], dtype), want["W"])
            np.testing.assert_array_equal(np.array(got["b"], dtype), want["b"])
        assert lanes[0]["steps"] == [0, 4, 8, 10] and lanes[1]["steps"] == [12, 16, 20]
        assert lanes[1]["test_loss"][-1] == be.loss_and_grads(s.spec, one.params, s.X_test, s.y_test)[0]
        assert lanes[1]["train_loss"][0] == be.loss_and_grads(s.spec, one.snapshot(12), s.X_train, s.y_train)[0]
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


def test_the_readme_margins_under_the_tolerance_hold_on_the_default_run(server):
    """README: on the default run float64 backends sit about seven orders of magnitude under their
    tolerance (its line is off the top of the chart), float32 two to three orders under theirs."""
    if len(available_backends()) < 2:
        pytest.skip("a parity gap needs two backends (pip install -c constraints.txt torch, or jax optax)")
    status, started = call(server, "/api/run", {"config": {}})
    assert status == 200, started
    for _ in range(8):
        status, lines = call(server, "/api/step", {"run": started["run"]})
        assert status == 200, lines
    (parity,) = [line for line in lines if line["type"] == "parity"]
    orders = {}
    for pair in parity["pairs"]:
        margin = np.log10(min(pair["tol_eps"]) / max(max(pair["gap_eps"]), np.finfo(float).tiny))
        orders[pair["dtype"]] = min(orders.get(pair["dtype"], np.inf), margin)
    if "float64" in orders:
        assert orders["float64"] >= 6.5, orders
    if "float32" in orders:
        assert 2 <= orders["float32"] < 4, orders


def test_the_readme_chaos_on_spirals_with_adam_holds():
    """README: on spirals with Adam, float64 pairs stay within ~110 ε for 90 steps, and after 200 steps
    (8 chunks of the page) every pair is past its tolerance, 270–1,100× in float64, 45–150× in float32."""
    if len(available_backends()) < 2:
        pytest.skip("a parity gap needs two backends (pip install -c constraints.txt torch, or jax optax)")
    s = pg_config.setup({"dataset": "spirals", "optimizer": "adam", "resolution": 10})
    run = pg_runs.Runs().new(s)
    chunks = [[line for line in pg_runs.step(run, s.config["steps"]) if line["type"] == "parity"] for _ in range(8)]
    gaps: dict[tuple, list] = {}  # (dtype, a, b) -> [(step, gap in ε)] over the whole run
    for (parity,) in chunks:
        for pair in parity["pairs"]:
            gaps.setdefault((pair["dtype"], pair["a"], pair["b"]), []).extend(zip(pair["steps"], pair["gap_eps"]))
    for pair in chunks[-1][0]["pairs"]:
        early = [gap for step, gap in gaps[pair["dtype"], pair["a"], pair["b"]] if step <= 90]
        ratio = pair["gap_eps"][-1] / pair["tol_eps"][-1]
        if pair["dtype"] == "float64":
            assert max(early) < 200 and 100 < ratio < 3000, pair
        else:
            assert 20 < ratio < 400, pair


def test_momentum_in_chunks_is_one_long_run(server):
    """Full-batch SGD with momentum, three chunks of 7: one run of 21 (the velocity carries over)."""
    config = {"dataset": "xor", "n": 40, "sizes": "2,4,1", "optimizer": "momentum", "lr": 0.1, "steps": 7, "every": 7}
    config |= {"backends": "numpy", "dtypes": "float64", "resolution": 10}
    _, started = call(server, "/api/run", {"config": config})
    losses = []
    for _ in range(3):
        _, lines = call(server, "/api/step", {"run": started["run"]})
        losses += lines[0]["losses"]
    s = pg_config.setup(config)
    assert s.optimizer.momentum > 0
    direct = get_backend("numpy").train(s.spec, s.params, s.X_train, s.y_train, s.optimizer, 21)
    np.testing.assert_array_equal(losses, direct.losses)
    restarted = get_backend("numpy").train(s.spec, s.params, s.X_train, s.y_train, s.optimizer, 7)
    restarted = get_backend("numpy").train(s.spec, restarted.params, s.X_train, s.y_train, s.optimizer, 7)
    assert not np.array_equal(losses[7:14], restarted.losses)  # what a chunk restarting its velocity would give


def test_the_view_is_the_backends_own_forward_over_the_grid(run):
    started, chunks = run
    (view,) = [line for line in chunks[1] if line["type"] == "view"]
    s = pg_config.setup(CONFIG)
    lane = [line for line in chunks[1] if line["type"] == "lane"][0]
    params = [{k: np.array(layer[k]) for k in ("W", "b")} for layer in lane["params"]]
    logits = get_backend("numpy").forward(s.spec, params, pg_runs.grid_points(s.extent, 12))
    p1 = 1 / (1 + np.exp(-logits[:, 0]))
    np.testing.assert_allclose(view["probs"][1], p1, atol=6e-4)  # sent rounded to 3 decimals
    assert [len(units) for units in view["hidden"]] == [5, 3]
    assert all(len(unit) == pg_config.HIDDEN_RESOLUTION**2 for units in view["hidden"] for unit in units)


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
    assert traj.optimizer_state["t"] == traj.steps_run  # Adam's state: the export continues
    s = pg_config.setup(CONFIG)
    be = get_backend(lane.split("-")[0], "float32")
    more = be.train(s.spec, traj, s.X_train, s.y_train, s.optimizer, 5, batch_size=16, seed=0)
    assert more.steps_run == traj.steps_run + 5
    status, config = call(server, f"/api/config.json?run={started['run']}")
    assert status == 200 and config["config"] == started["config"] and config["step"] >= 20


# ---- the gradient panel: one unit, one sample, every backend ----


@pytest.mark.parametrize("layer, unit", [(0, 3), (1, 2), (2, 0)], ids=["hidden-1", "hidden-2", "output"])
def test_inspect_gives_a_units_forward_and_backward_on_one_sample(server, run, layer, unit):
    """The endpoint's numbers are the one sample's loss_and_grads (the unit's incoming weight and bias
    gradients) and NumPy's cached forward (z, a), on every backend of the lane's dtype."""
    from backends.numpy import mlp as nb

    started, _ = run
    s = pg_config.setup(CONFIG)
    for dtype in ("float64", "float32"):
        lane = f"numpy-{dtype}"
        status, got = call(
            server, f"/api/inspect.json?run={started['run']}&lane={lane}&layer={layer}&unit={unit}&sample=7"
        )
        assert status == 200, got
        (line,) = [x for x in run[1][-1] if x["type"] == "lane" and x["lane"] == lane]  # its params now
        params = [{k: np.array(p[k], dtype) for k in ("W", "b")} for p in line["params"]]
        X, y = s.X_train[7:8].astype(dtype), s.y_train[7:8].astype(dtype)
        _, cache = nb.mlp_forward(s.spec, params, X)
        A_in, Z, A = cache[layer]
        assert set(got["values"]) == {b for b in available_backends()}
        for backend, v in got["values"].items():
            _, grads = get_backend(backend, dtype).loss_and_grads(s.spec, params, X, y)
            tol = 1e-12 if dtype == "float64" else 1e-5
            np.testing.assert_allclose(v["dW"], grads[layer]["W"][:, unit], rtol=tol, atol=tol)
            np.testing.assert_allclose(v["db"], grads[layer]["b"][unit], rtol=tol, atol=tol)
            np.testing.assert_allclose(v["z"], Z[0, unit], rtol=tol)
            np.testing.assert_allclose(v["a_in"], A_in[0], rtol=tol)
            if layer < s.spec.n_layers - 1:
                np.testing.assert_allclose(v["a"], A[0, unit], rtol=tol)
                np.testing.assert_allclose(v["dL_dz"], v["dL_da"] * v["f_prime"], rtol=tol)
                assert v["f_prime"] == pytest.approx(1 - v["a"] ** 2, rel=1e-4)  # tanh′ = 1 − a²
            else:
                assert v["a"] == v["z"] and v["f_prime"] == 1 and v["dL_da"] == v["dL_dz"]
            np.testing.assert_allclose(v["dW"], np.array(v["a_in"]) * v["dL_dz"], rtol=tol)  # dW = a_in·dL/dz
        assert got["gap_eps"]["numpy"]["dW"] == 0 and got["dtype"] == dtype and got["sample"] == 7
        assert all(g is None or g < 64 for b in got["gap_eps"].values() for g in b.values()), got["gap_eps"]


def test_link_history_gives_a_weight_over_the_run_and_its_gradient_now(server, run):
    started, chunks = run
    s = pg_config.setup(CONFIG)
    status, got = call(server, f"/api/link.json?run={started['run']}&layer=1&i=4&j=2")
    assert status == 200, got
    assert got["name"] == "layer1.W[4, 2]" and set(got["lanes"]) == set(started["lanes"])
    for lane, h in got["lanes"].items():
        assert h["steps"] == [0, 10, 20]
        assert h["values"][0] == s.params[1]["W"][4, 2].astype(lane.split("-")[1])
        (line,) = [x for x in chunks[-1] if x["type"] == "lane" and x["lane"] == lane]
        assert h["values"][-1] == line["params"][1]["W"][4][2]
        params = [{k: np.array(p[k], lane.split("-")[1]) for k in ("W", "b")} for p in line["params"]]
        _, grads = get_backend(lane.split("-")[0], lane.split("-")[1]).loss_and_grads(
            s.spec, params, s.X_train, s.y_train
        )
        assert h["gradient"] == grads[1]["W"][4, 2]


@pytest.mark.parametrize(
    "query, field",
    [
        ("lane=numpy-float64&layer=3&unit=0&sample=0", "layer"),
        ("lane=numpy-float64&layer=0&unit=5&sample=0", "unit"),
        ("lane=numpy-float64&layer=0&unit=0&sample=45", "sample"),
        ("lane=numpy-float64&layer=x&unit=0&sample=0", "layer"),
        ("lane=nope&layer=0&unit=0&sample=0", "lane"),
    ],
)
def test_a_bad_unit_or_sample_is_a_400_naming_it(server, run, query, field):
    status, reply = call(server, f"/api/inspect.json?run={run[0]['run']}&{query}")
    assert status == 400 and reply["field"] == field and field in reply["error"], reply


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
    ({"dtypes": "float8"}, "dtypes"),
    ({"dtypes": "float16", "optimizer": "adam"}, "dtypes"),  # a pure half format trains SGD only
    ({"backends": "cuda"}, "backends"),
    ({"seed": -1}, "seed"),
    ({"noise": [1, 2]}, "noise"),
    ({"activation": True}, "activation"),
    ({"port": 80}, "port"),  # a command-line option, not a page setting
    ({"weight_decay": -1}, "weight_decay"),
    ({"target_loss": 0}, "target_loss"),
    ({"sizes": "2,4,4,4,1", "activation": "tanh,relu"}, "activation"),
    ({"activation": "tanh,swish"}, "activation"),
    ({"csv": "0,0,0\n0,x,1\n1,0,1\n1,1,0\n"}, "csv"),
    ({"csv": "0,0,0\n0,1,1\n1,0,2\n1,1,0\n"}, "sizes"),  # three classes, one bce output: sizes or loss
]


@pytest.mark.parametrize("config, field", BAD, ids=[json.dumps(c) for c, _ in BAD])
def test_a_bad_setting_is_a_400_naming_the_field(server, config, field):
    status, reply = call(server, "/api/run", {"config": config})
    assert status == 400, reply
    assert reply["field"] == field and field in reply["error"], reply


def test_a_bad_csv_row_is_named_in_the_400(server):
    status, reply = call(server, "/api/run", {"config": {"csv": "x1,x2,label\n0,0,0\n0,1,1\n1,zero,1\n1,1,0\n"}})
    assert status == 400 and reply["field"] == "csv" and "row 4, column 2: expected a finite number" in reply["error"]


def test_your_own_points_from_csv_train_and_stay_in_the_export(server):
    rng = np.random.default_rng(3)
    rows = [(x, y, int(x * y > 0)) for x, y in rng.uniform(-1, 1, (40, 2))]
    text = "x1,x2,label\n" + "\n".join(f"{x:.4f},{y:.4f},{c}" for x, y, c in rows)
    config = {"csv": text, "sizes": "2,4,1", "steps": 5, "backends": "numpy", "dtypes": "float64", "resolution": 10}
    status, started = call(server, "/api/run", {"config": config})
    assert status == 200, started
    assert started["config"]["dataset"] == "csv" and started["config"]["n"] == 40 and started["config"]["csv"] == text
    assert len(started["train"]["y"]) + len(started["test"]["y"]) == 40
    status, lines = call(server, "/api/step", {"run": started["run"]})
    assert status == 200 and lines[-1]["step"] == 5
    status, data = call(server, f"/api/export.npz?run={started['run']}&lane=numpy-float64")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "run.npz"
        path.write_bytes(data)
        traj = Trajectory.load(path)
    assert traj.meta["playground"]["config"]["csv"] == text  # the points travel with the run
    again = dict(started["config"])  # the page sends back the config it was given: dataset "csv" included
    assert call(server, "/api/run", {"config": again})[0] == 200


def test_weight_decay_and_one_activation_per_layer_reach_the_run():
    s = pg_config.setup({"optimizer": "adam", "weight_decay": 0.05, "sizes": "2,4,3,1", "activation": "tanh,relu"})
    assert s.optimizer == Adam(0.3, weight_decay=0.05) and s.spec.activations == ("tanh", "relu")
    assert s.config["activation"] == ["tanh", "relu"] and s.config["weight_decay"] == 0.05
    assert pg_config.setup({"optimizer": "adamw"}).config["weight_decay"] == 0.01  # AdamW's own default


def test_each_recorded_point_has_the_accuracy_of_its_params(run):
    started, chunks = run
    s = pg_config.setup(CONFIG)
    assert started["start"][0]["train_accuracy"] is not None
    for line in (x for x in chunks[-1] if x["type"] == "lane"):
        backend, dtype = line["lane"].split("-")
        params = [{k: np.array(p[k], dtype) for k in ("W", "b")} for p in line["params"]]
        logits = get_backend(backend, dtype).forward(s.spec, params, s.X_test)
        assert line["test_accuracy"][-1] == np.mean((logits[:, 0] > 0) == s.labels_test)
        assert all(0 <= a <= 1 for a in line["train_accuracy"])


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
    for _ in range(100):  # 409 while the abandoned chunk still trains
        status, lines = call(server, "/api/step", {"run": started["run"]})
        if status != 409:
            break
        time.sleep(0.1)
    assert lines[-1]["step"] in (5, 10)  # the first chunk either finished or changed nothing
    assert call(server, "/api/options")[0] == 200


def test_the_command_starts_prints_its_url_and_stops_cleanly_on_ctrl_c():
    with ctrl_c_reaches_children():
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
        with urllib.request.urlopen(url, timeout=120) as response:  # bounds, not races: a loaded 2-core
            assert response.status == 200  # machine can take seconds to answer the first request
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 0 and "Traceback" not in err and "stopped" in err


def test_the_least_recently_used_run_is_dropped():
    runs = pg_runs.Runs(max_runs=2)
    first, second = runs.new(pg_config.setup(CONFIG)), runs.new(pg_config.setup(CONFIG))
    assert runs.get(first.id) is first  # now the most recently used
    third = runs.new(pg_config.setup(CONFIG))
    assert runs.get(first.id) is first and runs.get(third.id) is third
    with pytest.raises(pg_config.ConfigError, match="keeps the last 2"):
        runs.get(second.id)


def test_a_view_of_another_lane_trains_nothing(server, run):
    started, _ = run
    lane = started["lanes"][-1]
    status, view = call(server, f"/api/view.json?run={started['run']}&lane={lane}")
    assert status == 200 and view["lane"] == lane
    assert call(server, f"/api/config.json?run={started['run']}")[1]["step"] == 20


# ---- a real browser: headless Chromium driven over the DevTools protocol ----


def find_browser() -> str | None:
    """$CHROMIUM, or Debian's chromium, or another Chromium-based browser on PATH."""
    names = [os.environ.get("CHROMIUM", ""), "chromium", "chromium-browser", "google-chrome", "google-chrome-stable"]
    return next((path for name in names if name and (path := shutil.which(name))), None)


class DevTools:
    """The DevTools protocol over a WebSocket written on `socket` (the standard library has no WebSocket
    client, and a few dozen lines beat a dependency): text frames, masked as a client must mask them."""

    def __init__(self, ws_url: str):
        host_port, path = ws_url.removeprefix("ws://").split("/", 1)
        host, port = host_port.split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=30)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            f"GET /{path} HTTP/1.1\r\nHost: {host_port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        reply = b""
        while b"\r\n\r\n" not in reply:
            reply += self.sock.recv(4096)
        assert reply.startswith(b"HTTP/1.1 101"), reply[:200]
        self.buffer = reply.split(b"\r\n\r\n", 1)[1]
        self.next_id, self.events = 0, []

    def _read(self, n: int) -> bytes:
        while len(self.buffer) < n:
            data = self.sock.recv(1 << 16)
            if not data:
                raise ConnectionError("the browser closed the DevTools connection")
            self.buffer += data
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out

    def _send(self, text: str) -> None:
        data, mask = text.encode(), os.urandom(4)
        n = len(data)
        header = bytes([0x81]) + (
            bytes([0x80 | n])
            if n < 126
            else bytes([0x80 | 126]) + n.to_bytes(2, "big")
            if n < 1 << 16
            else bytes([0x80 | 127]) + n.to_bytes(8, "big")
        )
        self.sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def _receive(self) -> dict:
        message = b""
        while True:
            first, second = self._read(2)
            n = second & 0x7F
            if n == 126:
                n = int.from_bytes(self._read(2), "big")
            elif n == 127:
                n = int.from_bytes(self._read(8), "big")
            payload = self._read(n)  # a server never masks
            message += payload
            if first & 0x80:  # FIN
                return json.loads(message)

    def __call__(self, method: str, **params) -> dict:
        self.next_id += 1
        self._send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            reply = self._receive()
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self.events.append(reply)

    def evaluate(self, expression: str):
        result = self("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if value := self.evaluate(expression):
                return value
            time.sleep(0.2)
        raise TimeoutError(f"still false after {timeout:.0f} s: {expression}")

    def errors(self) -> list[str]:
        found = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.exceptionThrown":
                found.append(str(params["exceptionDetails"]))
            elif method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
                found.append(str(params["args"]))
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                found.append(params["entry"]["text"])
        return found


def open_page(browser: str, url: str, folder: Path, width: int = 1440, height: int = 900):
    """Start headless Chromium on a loopback DevTools port, open `url`; returns (process, DevTools)."""
    process = subprocess.Popen(
        [
            browser,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-extensions",
            "--no-first-run",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
            f"--user-data-dir={folder}",
            f"--window-size={width},{height}",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if line.startswith("DevTools listening on "):
            break
        if not line and process.poll() is not None:
            raise RuntimeError(f"{browser} exited with {process.returncode} before listening")
    port = int(line.split("ws://127.0.0.1:")[1].split("/")[0])
    threading.Thread(target=process.stderr.read, daemon=True).start()  # keep its stderr pipe drained
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as response:
        page = next(t for t in json.load(response) if t["type"] == "page")
    tools = DevTools(page["webSocketDebuggerUrl"])
    for domain in ("Runtime", "Log", "Page"):
        tools(f"{domain}.enable")
    tools("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)
    tools("Page.navigate", url=url)
    origin = json.dumps(url.split("?")[0])  # the page rewrites its query: the URL holds the whole state
    tools.wait_for(f"location.href.startsWith({origin}) && document.readyState === 'complete'", timeout=30)
    return process, tools


def screenshot(tools: DevTools, path: Path) -> Path:
    path.write_bytes(base64.b64decode(tools("Page.captureScreenshot", format="png")["data"]))
    return path


@contextlib.contextmanager
def browser_page(server, query: str, folder: Path, height: int = 900):
    """The page at `query` in headless Chromium, its DevTools; the browser is stopped on the way out."""
    process, tools = open_page(find_browser(), server.url + query, folder, height=height)
    try:
        yield tools
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_mixed_precision_lanes_train_as_one_train_call_each_held_to_their_own_tolerance(server):
    """dtypes=bfloat16-mixed,float16-mixed: a lane per backend and format, each chunk the mixed-precision
    backend's own train call (float32 params), its parity gap in the half format's ε against
    trajectory_mixed, its unit panel computed in the half format; a pure half format is refused; the
    GPT trains in mixed precision too, its attention maps the mixed backend's."""
    pytest.importorskip("ml_dtypes")
    from shared.tolerances import gap_in_eps, tolerance
    from shared.validation import numpy_dtype

    config = CONFIG | {"dtypes": "bfloat16-mixed,float16-mixed", "steps": 10, "resolution": 10}
    status, started = call(server, "/api/run", {"config": config})
    assert status == 200, started
    here = available_backends()
    assert started["lanes"] == [f"{b}-{d}" for d in ("bfloat16-mixed", "float16-mixed") for b in here]
    assert set(started["tolerance_kind"].values()) == {"trajectory_mixed"}
    fresh = _exported(server, started["run"], f"{here[0]}-float16-mixed")  # exported before any chunk
    assert fresh.meta["precision"] == "mixed" and fresh.meta["compute_dtype"] == "float16" and fresh.steps_run == 0
    status, lines = call(server, "/api/step", {"run": started["run"]})
    assert status == 200, lines
    s = pg_config.setup(config)
    for lane in started["lanes"]:
        backend, name = lane.split("-", 1)
        half = name.split("-")[0]
        be = get_backend(backend, half, precision="mixed")
        one = be.train(s.spec, s.params, s.X_train, s.y_train, s.optimizer, 10, batch_size=16, seed=0)
        exported = _exported(server, started["run"], lane)
        assert exported.params[0]["W"].dtype == np.float32 and exported.meta["precision"] == "mixed"
        np.testing.assert_array_equal(exported.params[0]["W"], one.params[0]["W"])
    pairs = next(x for x in lines if x["type"] == "parity")["pairs"]
    assert {p["dtype"] for p in pairs} == {"bfloat16-mixed", "float16-mixed"}
    for p in pairs:
        half = p["dtype"].split("-")[0]
        a = _exported(server, started["run"], f"{p['a']}-{p['dtype']}").params
        b = _exported(server, started["run"], f"{p['b']}-{p['dtype']}").params
        assert p["gap_eps"][-1] == pytest.approx(gap_in_eps(a, b, half), rel=1e-9)  # in the half format's ε
        tol, eps = tolerance(half, "trajectory_mixed"), float(np.finfo(numpy_dtype(half)).eps)
        scale = max(float(np.abs(x).max()) for x in tree_leaves(a))
        assert p["tol_eps"][-1] == pytest.approx((tol.atol + tol.rtol * scale) / (eps * scale), rel=1e-9)
        assert all(p["within"]) and p["gap_eps"][-1] < p["tol_eps"][-1]
    query = f"run={started['run']}&lane={here[0]}-bfloat16-mixed&layer=0&unit=1&sample=2"
    status, unit = call(server, f"/api/inspect.json?{query}")
    assert status == 200, unit
    assert unit["dtype"] == "bfloat16" and unit["format"] == "bfloat16-mixed" and set(unit["values"]) == set(here)
    status, reply = call(server, "/api/run", {"config": config | {"dtypes": "bfloat16"}})  # CONFIG's Adam
    assert status == 400 and reply["field"] == "dtypes" and "Choose bfloat16-mixed" in reply["error"], reply
    assert "cannot train with Adam(lr=0.02): its β₂ = 0.999 rounds to 1 in bfloat16" in reply["error"]
    gpt = GPT_CONFIG | {"backends": "numpy", "dtypes": "float16-mixed"}  # the GPT in mixed precision, too
    status, started = call(server, "/api/run", {"config": gpt})
    assert status == 200 and started["lanes"] == ["numpy-float16-mixed"], started
    assert call(server, "/api/step", {"run": started["run"]})[0] == 200
    status, got = call(server, f"/api/attention.json?run={started['run']}&lane=numpy-float16-mixed&tokens=314")
    params = _exported(server, started["run"], "numpy-float16-mixed").params
    be = get_backend("numpy", "float16", precision="mixed")
    want = be.attention_maps(pg_config.setup(gpt).spec, params, np.array([[3, 1, 4, 10, 4, 1]]))
    assert status == 200 and np.array_equal(np.array(got["maps"][0]), want[0][0].astype(np.float64))


def test_pure_half_lanes_train_with_sgd_as_one_train_call_each_in_the_format(server):
    """dtypes=float16 with SGD: a lane per backend, every chunk that backend's own pure-format train
    call (params in the format, exported as such), parity held to the format's trajectory_sgd in its
    own ε, the unit panel computed in the format. (bfloat16's lanes: the browser test below.)"""
    pytest.importorskip("ml_dtypes")
    from shared.tolerances import tolerance
    from shared.validation import numpy_dtype

    config = CONFIG | {"optimizer": "sgd", "lr": 0.3, "dtypes": "float16", "steps": 5, "resolution": 10}
    status, started = call(server, "/api/run", {"config": config})
    assert status == 200, started
    here = available_backends()
    assert started["lanes"] == [f"{b}-float16" for b in here]
    assert set(started["tolerance_kind"].values()) == {"trajectory_sgd"}
    status, lines = call(server, "/api/step", {"run": started["run"]})
    assert status == 200, lines
    s = pg_config.setup(config)
    for lane in started["lanes"]:
        backend, half = lane.split("-", 1)
        one = get_backend(backend, half).train(s.spec, s.params, s.X_train, s.y_train, s.optimizer, 5, batch_size=16)
        exported = _exported(server, started["run"], lane)
        assert exported.params[0]["W"].dtype == numpy_dtype(half) and exported.meta["dtype"] == half
        np.testing.assert_array_equal(exported.params[0]["W"], one.params[0]["W"])
    pairs = next(x for x in lines if x["type"] == "parity")["pairs"]
    assert {p["dtype"] for p in pairs} == ({"float16"} if len(here) > 1 else set())
    for p in pairs:
        tol, eps = tolerance(p["dtype"], "trajectory_sgd"), float(np.finfo(numpy_dtype(p["dtype"])).eps)
        a = _exported(server, started["run"], f"{p['a']}-{p['dtype']}").params
        scale = max(float(np.abs(np.asarray(x, np.float64)).max()) for x in tree_leaves(a))
        assert p["tol_eps"][-1] == pytest.approx((tol.atol + tol.rtol * scale) / (eps * scale), rel=1e-9)
        assert all(p["within"])
    query = f"run={started['run']}&lane={here[0]}-float16&layer=0&unit=1&sample=2"
    status, unit = call(server, f"/api/inspect.json?{query}")
    assert status == 200 and unit["dtype"] == "float16" and unit["format"] == "float16", unit


@pytest.mark.skipif(find_browser() is None, reason="no Chromium here (apt-get install chromium, or set $CHROMIUM)")
def test_in_a_real_browser_half_format_lanes_draw_their_curves_and_parity(server, tmp_path):
    pytest.importorskip("ml_dtypes")
    query = "?dataset=xor&n=80&noise=0.15&sizes=2,4,1&optimizer=sgd&lr=0.5&steps=10&every=5"
    query += "&dtypes=float32,bfloat16,bfloat16-mixed"  # SGD: the pure format trains too
    with browser_page(server, query, tmp_path / "profile") as tools:
        tools.wait_for("document.getElementById('train-loss').textContent !== '–'")
        boxes = tools.evaluate("[...document.querySelectorAll('#dtypes input')].map((e) => [e.value, e.checked])")
        tools.evaluate("document.dispatchEvent(new KeyboardEvent('keydown', { key: 'ArrowRight' }))")  # one step
        tools.wait_for("document.getElementById('counter').textContent === 'step 1' && !busy", timeout=90)
        curves = tools.evaluate("window.playground.curves")
        parity_keys = tools.evaluate("window.playground.parity")
        legend = tools.evaluate("document.getElementById('parity-legend').textContent")
        errors = tools.errors() + tools.evaluate("window.playground.errors")
    want = {"float64": False, "float32": True, "bfloat16": True, "float16": False}
    assert dict(boxes) == want | {"bfloat16-mixed": True, "float16-mixed": False}, boxes
    for b in available_backends():
        assert curves[f"{b}-bfloat16-mixed"] >= 2 and curves[f"{b}-bfloat16"] >= 2, curves
    if len(available_backends()) > 1:
        assert any(k.endswith("/bfloat16-mixed") for k in parity_keys) and "bfloat16-mixed" in legend, parity_keys
        assert any(k.endswith("/bfloat16") for k in parity_keys), parity_keys
    assert not errors, errors


@pytest.mark.skipif(find_browser() is None, reason="no Chromium here (apt-get install chromium, or set $CHROMIUM)")
def test_in_a_real_browser_play_lowers_the_loss_and_draws_every_backend(server, tmp_path):
    query = "?dataset=xor&n=120&noise=0.15&sizes=2,4,4,1&optimizer=sgd&lr=0.5&steps=25&every=5"
    with browser_page(server, query, tmp_path / "profile") as tools:
        tools.wait_for("document.getElementById('train-loss').textContent !== '–'")
        controls = tools.evaluate(
            "Object.fromEntries([...document.querySelectorAll('[data-field]')].map((e) => [e.dataset.field, e.value]))"
        )
        read = {k: controls[k] for k in ("dataset", "n", "noise", "hidden", "activation", "loss", "optimizer", "lr")}
        assert read == dict(zip(read, "xor 120 0.15 4,4 tanh bce sgd 0.5".split())), controls  # from the URL
        search = tools.evaluate("decodeURIComponent(location.search)")
        assert "sizes=2,4,4,1" in search and "dtypes=float64,float32" in search, search  # the whole state
        before = float(tools.evaluate("document.getElementById('train-loss').textContent"))
        tools.evaluate("document.getElementById('play').click()")
        tools.wait_for("parseInt(document.getElementById('counter').textContent.slice(5)) >= 100", timeout=90)
        tools.evaluate("document.getElementById('play').click()")
        tools.wait_for("!busy", timeout=60)
        after = float(tools.evaluate("document.getElementById('train-loss').textContent"))
        curves = tools.evaluate("window.playground.curves")
        lanes = tools.evaluate("run.lanes")
        path = screenshot(tools, Path(os.environ.get("PLAYGROUND_SCREENSHOT", tmp_path / "playground.png")))
        errors = tools.errors() + tools.evaluate("window.playground.errors")
    assert after < before, f"the loss shown went from {before} to {after}"
    assert lanes == [f"{b}-{d}" for d in ("float64", "float32") for b in available_backends()]
    for lane in lanes:
        assert curves[lane] >= 5 and curves[f"{lane} test"] >= 5, f"{lane}'s curve: {curves}"
    assert not errors, errors
    assert path.stat().st_size > 10_000


@pytest.mark.skipif(find_browser() is None, reason="no Chromium here (apt-get install chromium, or set $CHROMIUM)")
def test_in_a_real_browser_a_clicked_unit_shows_the_endpoints_numbers_and_keys_work(server, tmp_path):
    query = "?dataset=xor&n=80&noise=0.15&sizes=2,4,3,1&optimizer=adam&lr=0.05&steps=10&every=5&dtypes=float64"
    with browser_page(server, query, tmp_path / "profile", height=1180) as tools:
        tools.wait_for("document.getElementById('train-loss').textContent !== '–'")
        # pick training point 5 by clicking the boundary where it is drawn
        tools.evaluate(
            """(() => { const c = document.getElementById('boundary'), box = c.getBoundingClientRect();
            const [x0, x1, y0, y1] = run.extent, [x, y] = run.train.X[5];
            c.dispatchEvent(new MouseEvent('click', { clientX: box.left + (x - x0) / (x1 - x0) * box.width,
                                                      clientY: box.top + (y1 - y) / (y1 - y0) * box.height })); })()"""
        )
        assert tools.evaluate("document.getElementById('sample').value") == "5"
        tools.evaluate("document.querySelector('canvas[data-unit=\"1,2\"]').click()")  # hidden 2, unit 2
        tools.wait_for("window.playground.inspected && window.playground.inspected.unit === 2")
        shown = tools.evaluate("window.playground.inspected")
        table = tools.evaluate("document.getElementById('inspect').textContent")
        cells = tools.evaluate(  # what the panel prints for NumPy's dL/dz and dL/dw0, formatted as it formats
            "[num(window.playground.inspected.values.numpy.dL_dz), num(window.playground.inspected.values.numpy.dW[0])]"
        )
        tools.evaluate("document.dispatchEvent(new KeyboardEvent('keydown', { key: 'ArrowRight' }))")  # one step
        tools.wait_for("document.getElementById('counter').textContent === 'step 1' && !busy", timeout=60)
        tools.wait_for("window.playground.inspected.step === 1", timeout=60)  # the panel follows the run
        tools.evaluate("document.dispatchEvent(new KeyboardEvent('keydown', { key: ' ' }))")  # play
        tools.wait_for("parseInt(document.getElementById('counter').textContent.slice(5)) >= 21", timeout=90)
        tools.evaluate("document.dispatchEvent(new KeyboardEvent('keydown', { key: ' ' }))")  # pause
        tools.wait_for("!playing && !busy", timeout=60)
        tools.evaluate("document.querySelector('line.hit[data-link=\"1,2,0\"]').dispatchEvent(new MouseEvent('click'))")
        tools.wait_for("window.playground.inspected.name === 'layer1.W[2, 0]'")
        link = tools.evaluate("window.playground.inspected")
        run_id = tools.evaluate("run.run")
        path = Path(os.environ.get("PLAYGROUND_INSPECT_SCREENSHOT", tmp_path / "inspect.png"))
        tools.evaluate("document.querySelector('canvas[data-unit=\"1,2\"]').click()")
        tools.wait_for("window.playground.inspected.unit === 2")
        screenshot(tools, path)
        errors = tools.errors() + tools.evaluate("window.playground.errors")
    assert shown["layer"] == 1 and shown["sample"] == 5 and shown["step"] == 0
    assert set(shown["values"]) == set(available_backends())
    config = {"dataset": "xor", "n": 80, "noise": 0.15, "sizes": "2,4,3,1", "optimizer": "adam", "lr": 0.05}
    s = pg_config.setup(config)  # at step 0 the lane's params are the run's start
    _, grads = get_backend("numpy").loss_and_grads(s.spec, s.params, s.X_train[5:6], s.y_train[5:6])
    np.testing.assert_allclose(shown["values"]["numpy"]["dW"], grads[1]["W"][:, 2], rtol=1e-12)
    assert all(cell in table for cell in cells) and "dL/dw0" in table and "f′(z)" in table, (cells, table)
    status, now = call(server, f"/api/link.json?run={run_id}&layer=1&i=2&j=0")
    assert status == 200 and now["lanes"] == link["lanes"] and len(link["lanes"]["numpy-float64"]["steps"]) >= 3
    assert not errors, errors
    assert path.stat().st_size > 10_000


@pytest.mark.skipif(find_browser() is None, reason="no Chromium here (apt-get install chromium, or set $CHROMIUM)")
def test_in_a_real_browser_your_points_accuracy_layers_and_the_target_loss(server, tmp_path):
    query = "?dataset=xor&n=120&sizes=2,4,3,1&activation=tanh,relu&optimizer=sgd&lr=0.5&steps=10&target_loss=0.5"
    with browser_page(server, query, tmp_path / "profile") as tools:
        tools.wait_for("document.getElementById('train-loss').textContent !== '–'")
        heads = tools.evaluate("[...document.querySelectorAll('.colhead')].map((e) => e.textContent)")
        start_accuracy = tools.evaluate("document.getElementById('train-accuracy').textContent")
        tools.evaluate("document.getElementById('play').click()")
        tools.wait_for(
            "!playing && !busy && run && parseInt(document.getElementById('counter').textContent.slice(5)) > 0",
            timeout=120,
        )
        stopped = tools.evaluate("document.getElementById('status').textContent")
        loss = float(tools.evaluate("document.getElementById('train-loss').textContent"))
        rows = "\\n".join(f"{x},{y},{int(x * y > 0)}" for x, y in [(-1, -1), (1, 1), (-1, 1), (1, -1)] * 10)
        tools.evaluate(f"document.getElementById('csv').value = 'x1,x2,label\\n{rows}'")
        tools.evaluate("document.getElementById('csv-use').click()")
        tools.wait_for("run && run.config.dataset === 'csv'", timeout=60)
        own = tools.evaluate("[run.train.y.length + run.test.y.length, location.search.includes('csv')]")
        disabled = tools.evaluate("document.querySelector('[data-field=\"dataset\"]').disabled")
        errors = tools.errors() + tools.evaluate("window.playground.errors")
    assert heads == ["input", "hidden 1 (tanh)", "hidden 2 (relu)", "output"], heads
    assert start_accuracy.endswith("%"), start_accuracy
    assert "reached the target train loss 0.5" in stopped and loss <= 0.5, (stopped, loss)
    assert own == [40, False] and disabled  # the 40 points, not in the URL; the dataset control off
    assert not errors, errors


# ---- GPT mode: attention, live ----

GPT_CONFIG = {"model": "gpt", "task": "reverse", "length": 3, "d_model": 8, "heads": 2, "n": 60, "steps": 6}
GPT_CONFIG |= {"batch_size": 8, "every": 3, "backends": ",".join(available_backends())}


@pytest.fixture(scope="module")
def gpt_run(server):
    status, started = call(server, "/api/run", {"config": GPT_CONFIG})
    assert status == 200, started
    chunks = [call(server, "/api/step", {"run": started["run"]})[1] for _ in range(2)]
    return started, chunks


def _exported(server, run_id: str, lane: str) -> Trajectory:
    status, data = call(server, f"/api/export.npz?run={run_id}&lane={lane}")
    assert status == 200
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "run.npz"
        path.write_bytes(data)
        return Trajectory.load(path)


def test_gpt_mode_chunks_are_one_train_call(server, gpt_run):
    started, chunks = gpt_run
    s = pg_config.setup(GPT_CONFIG)
    assert started["mode"] == "gpt" and s.spec.seq_len == 6 and s.optimizer == Adam(0.003)  # the GPT's defaults
    for lane in started["lanes"]:
        backend, dtype = lane.split("-")
        one = get_backend(backend, dtype).train(s.spec, s.params, s.X_train, s.y_train, s.optimizer, 12, batch_size=8)
        streamed = [x for lines in chunks for x in lines if x.get("lane") == lane and x["type"] == "lane"]
        np.testing.assert_array_equal(np.concatenate([x["losses"] for x in streamed]).astype(dtype), one.losses)
        exported = _exported(server, started["run"], lane)
        assert all(np.array_equal(a, b) for a, b in zip(tree_leaves(exported.params), tree_leaves(one.params)))
        assert 0 <= streamed[-1]["test_accuracy"][-1] <= 1 and streamed[-1]["params"] is None


def test_attention_json_gives_every_layer_and_heads_map_by_the_lanes_framework(server, gpt_run):
    started, _ = gpt_run
    s = pg_config.setup(GPT_CONFIG)
    for lane in started["lanes"]:
        status, got = call(server, f"/api/attention.json?run={started['run']}&lane={lane}&tokens=314")
        assert status == 200, got
        assert started["examples"] == s.examples() and len(started["examples"]) == 8
        assert (
            got["tokens"] == list("314|41") and got["target"] == list("14|413") and got["answer_positions"] == [3, 4, 5]
        )
        backend, dtype = lane.split("-")
        params = _exported(server, started["run"], lane).params
        X = np.array([[3, 1, 4, 10, 4, 1]])
        want = get_backend(backend, dtype).attention_maps(s.spec, params, X)
        assert len(got["maps"]) == s.spec.n_layers and len(got["maps"][0]) == s.spec.n_heads
        for P, W in zip(got["maps"], want):
            P = np.array(P)
            np.testing.assert_array_equal(P, W[0].astype(np.float64))  # the exported params' maps, exactly
            assert (P[:, np.triu_indices(6, k=1)[0], np.triu_indices(6, k=1)[1]] == 0).all()  # the future: 0
            np.testing.assert_allclose(P.sum(-1), 1, atol=1e-6)
        logits = get_backend(backend, dtype).forward(s.spec, params, X)[0]
        assert got["prediction"] == s.decode(logits.argmax(-1))


def test_the_attention_maps_change_as_the_gpt_trains(server):
    status, started = call(server, "/api/run", {"config": GPT_CONFIG | {"backends": "numpy", "dtypes": "float64"}})
    before = call(server, f"/api/attention.json?run={started['run']}&lane=numpy-float64&tokens=314")[1]["maps"]
    call(server, "/api/step", {"run": started["run"]})
    after = call(server, f"/api/attention.json?run={started['run']}&lane=numpy-float64&tokens=314")[1]
    assert after["step"] == 6 and not np.array_equal(np.array(before), np.array(after["maps"]))


@pytest.mark.parametrize(
    "query, field",
    [("tokens=31", "tokens"), ("tokens=3a4", "tokens"), ("tokens=3141", "tokens"), ("lane=nope&tokens=314", "lane")],
)
def test_bad_tokens_are_a_400_naming_them(server, query, field):
    status, started = call(server, "/api/run", {"config": GPT_CONFIG | {"backends": "numpy", "dtypes": "float64"}})
    assert status == 200, started  # a run of its own, one lane: the shared gpt_run trains six
    lane = "" if "lane=" in query else "lane=numpy-float64&"
    status, reply = call(server, f"/api/attention.json?run={started['run']}&{lane}{query}")
    assert status == 400 and reply["field"] == field, reply


def test_the_mlps_endpoints_and_the_gpts_refuse_the_other_model(server):
    small = {"backends": "numpy", "dtypes": "float64"}
    mlp = call(server, "/api/run", {"config": small | {"resolution": 10}})[1]["run"]  # fresh runs: the server
    gpt = call(server, "/api/run", {"config": GPT_CONFIG | small})[1]["run"]  # keeps only the last few
    status, reply = call(server, f"/api/attention.json?run={mlp}&lane=numpy-float64&tokens=314")
    assert status == 400 and reply["field"] == "run" and "GPT's" in reply["error"]
    status, reply = call(server, f"/api/inspect.json?run={gpt}&lane=numpy-float64&layer=0&unit=0&sample=0")
    assert status == 400 and reply["field"] == "run" and "MLP's" in reply["error"]


GPT_BAD = [
    ({"heads": 3}, "d_model"),  # 8 columns do not split into 3 heads
    ({"length": 20}, "length"),
    ({"layers": 5}, "layers"),
    ({"task": "translate"}, "task"),
    ({"steps": 1000, "every": 50, "batch_size": 60, "d_model": 64, "layers": 2, "heads": 4}, "steps"),  # beyond seconds
]


@pytest.mark.parametrize("change, field", GPT_BAD, ids=[json.dumps(c) for c, _ in GPT_BAD])
def test_a_bad_gpt_setting_is_a_400_naming_the_field(server, change, field):
    status, reply = call(server, "/api/run", {"config": GPT_CONFIG | change})
    assert status == 400 and reply["field"] == field, reply


def test_the_corpus_task_reads_characters():
    s = pg_config.setup(GPT_CONFIG | {"task": "corpus", "length": 8})
    X, Y = s.encode("In the b")
    assert X.shape == (1, 8) and Y is None and s.decode(X[0]) == list("In the b")
    with pytest.raises(ValueError, match="not in the vocabulary"):
        s.encode("€")


@pytest.mark.skipif(find_browser() is None, reason="no Chromium here (apt-get install chromium, or set $CHROMIUM)")
def test_in_a_real_browser_gpt_mode_trains_and_its_attention_maps_change(server, tmp_path):
    query = "?model=gpt&task=reverse&length=3&d_model=8&heads=2&n=60&steps=10&batch_size=8&dtypes=float64"
    with browser_page(server, query, tmp_path / "profile", height=1000) as tools:
        tools.wait_for("window.playground.attention && window.playground.attention.length > 0", timeout=60)
        hidden = tools.evaluate("getComputedStyle(document.getElementById('network')).display")
        before = tools.evaluate("JSON.stringify(window.playground.attention.map((r) => r.maps))")
        canvases = tools.evaluate("document.querySelectorAll('#maps canvas').length")
        tools.evaluate("document.getElementById('play').click()")
        tools.wait_for("parseInt(document.getElementById('counter').textContent.slice(5)) >= 30", timeout=120)
        tools.evaluate("document.getElementById('play').click()")
        tools.wait_for("!busy && window.playground.attention[0].step >= 30", timeout=60)
        after = tools.evaluate("JSON.stringify(window.playground.attention.map((r) => r.maps))")
        picked = tools.evaluate("document.getElementById('examples').options[2].value")
        tools.evaluate("document.getElementById('examples').selectedIndex = 2")
        tools.evaluate("document.getElementById('examples').dispatchEvent(new Event('change'))")
        tools.wait_for(f"window.playground.attention[0].text === '{picked}'", timeout=60)
        tools.evaluate("document.getElementById('tokens').value = '907'")
        tools.evaluate("document.getElementById('tokens').dispatchEvent(new Event('change'))")
        tools.wait_for("window.playground.attention[0].text === '907'", timeout=60)
        search = tools.evaluate("location.search")
        path = Path(os.environ.get("PLAYGROUND_GPT_SCREENSHOT", tmp_path / "gpt.png"))
        screenshot(tools, path)
        errors = tools.errors() + tools.evaluate("window.playground.errors")
    assert hidden == "none"  # the MLP's network is not drawn in GPT mode
    assert len(picked) == 3 and picked.isdigit()  # a held-out string's digits
    n = len(available_backends())
    assert canvases == n * 1 * 2  # every backend of the dtype × layers × heads
    assert before != after, "the attention maps did not change while training"
    assert "model=gpt" in search and "tokens=907" in search and "heads=2" in search, search  # the whole state
    assert not errors, errors
