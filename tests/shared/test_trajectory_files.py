"""Trajectory files: saved atomically, loaded only when every field is consistent.

Deliberate bugs these catch: np.savez straight onto the target (an interrupt leaves a truncated file
where the good one was), and a load that trusts the file (a W of the wrong shape, NaN losses, a
string array or a "float16" dtype would load and fail later, far from the file's name)."""

import json
import zipfile

import numpy as np
import pytest

from backends import get_backend
from shared.data import xor
from shared.optim import SGD
from shared.params import init_params
from shared.spec import MLPSpec
from shared.trajectory import Trajectory, TrajectoryFileError

SPEC = MLPSpec((2, 3, 1), "tanh", "bce")


@pytest.fixture(scope="module")
def traj():
    data = xor()
    return get_backend("numpy", "float32").train(
        SPEC, init_params(SPEC, seed=0), data.X, data.targets(SPEC), SGD(0.5), steps=12, record_every=4
    )


def _arrays(path):
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _rewrite(path, arrays, **meta_changes):
    meta = json.loads(str(arrays["meta"]))
    for k, v in meta_changes.items():
        if v is _DROP:
            meta.pop(k)
        else:
            meta[k] = v
    arrays = {**arrays, "meta": np.array(json.dumps(meta))}
    np.savez(path, **arrays)


_DROP = object()


def test_save_and_load_round_trip_with_the_suffix_added(traj, tmp_path):
    path = traj.save(tmp_path / "run")
    assert path.name == "run.npz" and path.exists()
    back = Trajectory.load(path)
    assert np.array_equal(back.losses, traj.losses) and back.meta == traj.meta
    assert [p.name for p in tmp_path.iterdir()] == ["run.npz"]  # no temporary left behind


def test_a_run_that_kept_every_kth_loss_round_trips(tmp_path):
    data = xor()
    traj = get_backend("numpy").train(
        SPEC, init_params(SPEC, seed=0), data.X, data.targets(SPEC), SGD(0.5), steps=10, record_losses=4
    )
    assert len(traj) == 10 and traj.loss_steps.tolist() == [0, 4, 8] and len(traj.losses) == 3
    back = Trajectory.load(traj.save(tmp_path / "run"))
    assert len(back) == 10 and back.loss_every == 4 and np.array_equal(back.losses, traj.losses)


@pytest.mark.parametrize("half", ["float16", "bfloat16"])
def test_a_pure_half_run_round_trips_exactly_and_continues_from_its_file(half, tmp_path):
    """A pure half-format run's arrays are stored as float32 (npz has no bfloat16; float32 holds every
    half-format value exactly) and read back in the format: params, snapshots and the momentum buffer
    bit for bit, and train(loaded, 2) after 3 steps is one run of 5."""
    if half == "bfloat16":
        pytest.importorskip("ml_dtypes")
    from shared.params import tree_leaves
    from shared.validation import numpy_dtype

    data, opt = xor(), SGD(0.1, momentum=0.9)
    be = get_backend("numpy", half)
    run = be.train(SPEC, init_params(SPEC), data.X, data.targets(SPEC), opt, steps=3, record_every=1)
    path = run.save(tmp_path / "run")
    assert {a.dtype for k, a in _arrays(path).items() if k.startswith("params.")} == {np.dtype(np.float32)}
    loaded = Trajectory.load(path)
    for a, b in zip(
        tree_leaves(run.params) + tree_leaves(run.snapshots[1]) + tree_leaves(run.optimizer_state["velocity"]),
        tree_leaves(loaded.params) + tree_leaves(loaded.snapshots[1]) + tree_leaves(loaded.optimizer_state["velocity"]),
    ):
        assert b.dtype == numpy_dtype(half) and np.array_equal(a, b)
    joined = be.train(SPEC, loaded, data.X, data.targets(SPEC), opt, steps=2)
    whole = be.train(SPEC, init_params(SPEC), data.X, data.targets(SPEC), opt, steps=5)
    assert all(np.array_equal(a, b) for a, b in zip(tree_leaves(joined.params), tree_leaves(whole.params)))
    arrays = _arrays(path)
    arrays["params.0.W"] = arrays["params.0.W"] + np.float32(1e-6)  # no longer a half-format value
    np.savez(path, **arrays)
    with pytest.raises(TrajectoryFileError, match=rf"params\[0\]\['W'\] holds a value that is not a {half} number"):
        Trajectory.load(path)


def test_a_file_from_before_record_losses_loads_with_every_step_kept(traj, tmp_path):
    path = traj.save(tmp_path / "old.npz")
    _rewrite(path, _arrays(path), loss_every=_DROP, steps_run=_DROP)
    back = Trajectory.load(path)
    assert back.loss_every == 1 and len(back) == len(back.losses) == 12


def test_an_interrupted_save_leaves_the_previous_file_intact(traj, tmp_path, monkeypatch):
    path = traj.save(tmp_path / "run.npz")
    before = path.read_bytes()

    def interrupted(file, **arrays):
        file.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", interrupted)
    with pytest.raises(KeyboardInterrupt):
        traj.save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["run.npz"]  # the partial temporary was removed
    monkeypatch.undo()
    Trajectory.load(path)


def _corrupt(kind, arrays):
    a = dict(arrays)
    if kind == "W shape":
        a["params.0.W"] = np.zeros((3, 2), np.float32)
    elif kind == "NaN loss":
        a["losses"] = a["losses"].copy()
        a["losses"][3] = np.nan
    elif kind == "string array":
        a["params.1.b"] = np.array(["x"])
    elif kind == "2-D losses":
        a["losses"] = a["losses"].reshape(3, 4)
    elif kind == "short grad_norms":
        a["grad_norms"] = a["grad_norms"][:5]
    elif kind == "missing array":
        del a["snapshot0.1.W"]
    elif kind == "wrong dtype":
        a["params.0.b"] = a["params.0.b"].astype(np.float64)
    elif kind == "steps out of order":
        a["snapshot_steps"] = a["snapshot_steps"][::-1].copy()
    return a


@pytest.mark.parametrize(
    "kind, match",
    [
        ("W shape", r"params\[0\]\['W'\] must have shape \(fan_in, fan_out\) = \(2, 3\); got \(3, 2\)"),
        ("NaN loss", r"losses must be finite; found nan at index \(3,\)"),
        ("string array", r"params\[1\]\['b'\] must hold real numbers"),
        ("2-D losses", r"losses must be 1-D; got shape \(3, 4\)"),
        ("short grad_norms", r"grad_norms must have one entry per loss \(12\); got shape \(5,\)"),
        ("missing array", r"snapshot0.1.W is missing"),
        ("wrong dtype", r"params\[0\]\['b'\] must be float32 like the run's dtype; got float64"),
        ("steps out of order", r"snapshot_steps must increase"),
    ],
)
def test_inconsistent_arrays_are_refused_naming_the_file_and_field(traj, tmp_path, kind, match):
    path = traj.save(tmp_path / "run.npz")
    np.savez(path, **_corrupt(kind, _arrays(path)))
    with pytest.raises(TrajectoryFileError, match=match) as info:
        Trajectory.load(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    "changes, match",
    [
        (dict(diverged_at="yes"), r"diverged_at must be None or the number of steps run \(12\); got 'yes'"),
        (dict(diverged_at=3), r"diverged_at must be None or the number of steps run \(12\); got 3"),
        (dict(dtype="float8"), r"dtype must be one of 'float64', 'float32', 'bfloat16', 'float16'; got 'float8'"),
        (dict(dtype="float16"), r"losses holds a value that is not a float16 number"),  # float32 values, not half
        (dict(n_layers=0), r"n_layers must be the spec's 2 layers; got 0"),
        (dict(spec={"sizes": [2, -1]}), r"spec: sizes\[1\] must be a positive integer"),
        (dict(spec=_DROP), r"spec is missing"),
        (dict(optimizer={"name": "SGD", "lr": -1}), r"optimizer: SGD.lr must be a finite number > 0"),
        (dict(loss_every=0), r"loss_every must be None or an integer ≥ 1; got 0"),
        (dict(loss_every=5), r"losses must have 3 entries \(12 steps, one loss every 5\); got 12"),
        (dict(steps_run=13), r"losses must have 13 entries \(13 steps, one loss every 1\); got 12"),
        (dict(steps_run=-1), r"steps_run must be an integer ≥ 0; got -1"),
    ],
)
def test_inconsistent_metadata_is_refused_naming_the_field(traj, tmp_path, changes, match):
    path = traj.save(tmp_path / "run.npz")
    _rewrite(path, _arrays(path), **changes)
    with pytest.raises(TrajectoryFileError, match=match):
        Trajectory.load(path)


@pytest.mark.parametrize(
    "content, match",
    [
        (b"not a zip at all", r"not a trajectory file \(an .npz archive\)"),
        (None, r"meta is not valid JSON"),
        ("no meta", r"meta is missing"),
    ],
)
def test_broken_files_raise_one_error_type(tmp_path, traj, content, match):
    path = tmp_path / "broken.npz"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is None:
        arrays = _arrays(traj.save(path))
        np.savez(path, **{**arrays, "meta": np.array("{not json")})
    else:
        arrays = _arrays(traj.save(path))
        del arrays["meta"]
        np.savez(path, **arrays)
    with pytest.raises(TrajectoryFileError, match=match):
        Trajectory.load(path)
    assert issubclass(TrajectoryFileError, ValueError)


def test_pickled_objects_are_never_loaded(tmp_path, traj):
    path = traj.save(tmp_path / "run.npz")
    arrays = _arrays(path)
    np.savez(path, **{**arrays, "losses": np.array([object()], dtype=object)})
    with pytest.raises(TrajectoryFileError, match=r"losses"):
        Trajectory.load(path)
    assert zipfile.is_zipfile(path)


def test_a_trajectory_that_load_would_refuse_is_not_saved(traj, tmp_path):
    bad = Trajectory(traj.losses[:3], traj.grad_norms, traj.params, meta=traj.meta)
    with pytest.raises(TrajectoryFileError, match=r"grad_norms must have one entry per loss \(3\)"):
        bad.save(tmp_path / "bad.npz")
    assert not list(tmp_path.iterdir())
