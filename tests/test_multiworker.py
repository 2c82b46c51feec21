"""Training on several machines: two real worker processes on localhost, each with its own TF_CONFIG.

- the update of each global batch is the one a single process makes with the whole batch, for
  every balancer, with labels missing unevenly between the workers;
- ``mtl-keras train --strategy multiworker`` with a shared ``--out``: a worker killed mid-epoch ends the
  chief with one line, and both restarted with ``--resume`` finish into one complete run folder,
  written by the chief only, each worker reading its own part of the data;
- a worker that cannot reach the others ends with one line naming the address.

Run as a script (``python tests/test_multiworker.py worker OUT.npz``) it is one worker of the first test.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BALANCERS = ["static", "uncertainty", "dwa", "gradnorm", "pcgrad"]
STEPS, GLOBAL_BATCH = 2, 8


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def tf_config(ports, index):
    return json.dumps({"cluster": {"worker": [f"localhost:{p}" for p in ports]}, "task": {"type": "worker", "index": index}})


def start_workers(argv, ports, cwd=ROOT):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    return [
        subprocess.Popen(argv, cwd=cwd, env={**env, "TF_CONFIG": tf_config(ports, i)},
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for i in range(len(ports))
    ]


def finish(procs, timeout=600):
    outs = []
    for p in procs:
        try:
            outs.append(p.communicate(timeout=timeout)[0])
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
    return outs


def global_data():
    """``STEPS`` global batches; ``count`` labels only on worker 0's examples (even indices), ``box`` on a few."""
    from test_balancing_training import batch

    n = STEPS * GLOBAL_BATCH
    x, y, w = batch(n, seed=3)
    w["count"] = (np.arange(n) % 2 == 0).astype("float32")
    w["box"] = np.array([1, 0, 1, 1, 0, 0, 1, 0] * STEPS, "float32")
    return x, y, w


def train_once(name, strategy, dataset):
    from test_balancing_training import fit_state

    return fit_state(name, strategy, dataset)


def _worker_main(out):
    import tensorflow as tf

    from mtl_keras.data.sharding import shard_indices
    from mtl_keras.train.distribute import get_strategy, per_worker_dataset

    strategy = get_strategy("multiworker", connect_timeout=120)
    x, y, w = global_data()

    def part(count, index):
        idx = np.asarray(shard_indices(len(x), (count, index)))
        pick = lambda d: {k: v[idx] for k, v in d.items()}  # noqa: E731
        return tf.data.Dataset.from_tensor_slices((x[idx], pick(y), pick(w))).batch(GLOBAL_BATCH // count)

    states = {}
    for name in BALANCERS:
        for i, v in enumerate(train_once(name, strategy, per_worker_dataset(strategy, part))):
            states[f"{name}/{i}"] = v
    np.savez(out, **states)


def test_two_workers_make_the_single_process_update_for_every_balancer(tmp_path):
    import tensorflow as tf

    ports = free_ports(2)
    outs = [str(tmp_path / f"w{i}.npz") for i in range(2)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    procs = [
        subprocess.Popen([sys.executable, __file__, "worker", outs[i]], cwd=ROOT,
                         env={**env, "TF_CONFIG": tf_config(ports, i)},
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for i in range(2)
    ]
    logs = finish(procs)
    for p, log in zip(procs, logs):
        assert p.returncode == 0, log[-3000:]
    x, y, w = global_data()
    single = tf.data.Dataset.from_tensor_slices((x, y, w)).batch(GLOBAL_BATCH)
    default = tf.distribute.get_strategy()
    for name in BALANCERS:
        expected = train_once(name, default, single)
        for out in outs:
            got = np.load(out)
            for i, e in enumerate(expected):
                np.testing.assert_allclose(got[f"{name}/{i}"], e, rtol=1e-4, atol=1e-6, err_msg=name)


def _epochs(history):
    if not history.is_file():
        return []
    return [int(line.split(",")[0]) for line in history.read_text().strip().splitlines()[1:]]


def test_cli_two_workers_survive_a_killed_worker_and_resume_into_one_run_folder(tmp_path):
    """SIGKILL worker 1 mid-epoch: the chief ends with one line (no hang, no traceback); both restarted
    with --resume finish the epochs into one complete run folder written by the chief only."""
    out = tmp_path / "run"
    history = out / "history.csv"
    argv = [sys.executable, "-m", "mtl_keras.cli", "train", "--data", "shapes", "--tasks", "shape,box",
            "--trunk", "mobilenet_v3_small", "--image-size", "32", "--epochs", "2", "--train-size", "128",
            "--val-size", "8", "--test-size", "8", "--batch-size", "4", "--strategy", "multiworker",
            "--balancer", "uncertainty", "--out", str(out)]
    procs = start_workers(argv, free_ports(2))
    deadline = time.time() + 400
    while time.time() < deadline and procs[0].poll() is None and not _epochs(history):
        time.sleep(0.2)
    assert _epochs(history) == [0] and procs[1].poll() is None, "the chief should be in its second epoch"
    time.sleep(1)
    os.kill(procs[1].pid, signal.SIGKILL)
    killed = time.time()
    chief_log = finish(procs[:1], timeout=300)[0]
    procs[1].wait()
    assert procs[0].returncode == 2, chief_log[-3000:]
    assert time.time() - killed < 200
    errors = [line for line in chief_log.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "lost contact with" in errors[0] and "--resume" in errors[0], chief_log[-3000:]
    assert "Traceback" not in chief_log
    assert not (out / "model.keras").exists() and (out / "backup").is_dir()

    # Restarted (new ports, as after a reboot): every setting comes from the saved config.json files.
    procs = start_workers([sys.executable, "-m", "mtl_keras.cli", "train", "--out", str(out), "--resume"], free_ports(2))
    logs = finish(procs)
    for p, log in zip(procs, logs):
        assert p.returncode == 0, log[-3000:]
    assert "2 replica(s)" in logs[0]
    assert _epochs(history) == [0, 1]  # epoch 0 kept, the interrupted epoch 1 done again, nothing more
    names = sorted(os.listdir(out))
    assert names == ["config.json", "history.csv", "logs", "metrics.json", "model.keras"], names
    assert json.loads((out / "config.json").read_text())["replicas"] == 2
    # 128 scenes, 64 per worker, 4 per replica and step: 16 steps of 8 an epoch.
    assert "16/16" in logs[0]


def test_shards_are_disjoint_and_equal():
    from mtl_keras.data.sharding import shard_indices, sharded_examples
    from mtl_keras.data.scenes import ScenesSource

    parts = [list(shard_indices(9, (3, i))) for i in range(3)]
    assert sorted(sum(parts, [])) == list(range(9)) and {len(p) for p in parts} == {3}
    src = ScenesSource("shapes")
    seen = []
    for i in range(2):
        images = [ex["image"].numpy().tobytes() for ex in sharded_examples(src, "train", 16, 6, (2, i))]
        assert len(images) == 3
        seen += images
    assert len(set(seen)) == 6


def test_unreachable_worker_is_one_line(tmp_path):
    ports = free_ports(2)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "", "TF_CONFIG": tf_config(ports, 0)}
    started = time.time()
    done = subprocess.run(
        [sys.executable, "-m", "mtl_keras.cli", "train", "--data", "shapes", "--tasks", "shape", "--trunk",
         "mobilenet_v3_small", "--image-size", "32", "--strategy", "multiworker", "--connect-timeout", "2",
         "--out", str(tmp_path / "run")], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode != 0
    assert f"worker localhost:{ports[1]} is unreachable after 2 s" in done.stderr, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert time.time() - started < 120


if __name__ == "__main__" and sys.argv[1:2] == ["worker"]:
    sys.path.insert(0, HERE)
    sys.path.insert(0, ROOT)
    _worker_main(sys.argv[2])
