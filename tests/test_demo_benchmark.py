"""`python -m demo MODEL --benchmark`: every setting measured in its own process, consistent numbers, TF-free."""

import json
import math
import os
import subprocess
import sys

import pytest

from export_fixture import exported_run
from tensorflow_blocker import blocked_env

RUNS = 4


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    return exported_run(tmp_path_factory)


@pytest.fixture(scope="module")
def bench(exported, tmp_path_factory):
    """The benchmark of the small int8 model, default thread counts, where TensorFlow cannot load."""
    root = tmp_path_factory.mktemp("bench")
    out = root / "out"
    model = os.path.join(exported["export"], "model_int8.tflite")
    env = blocked_env(root)
    proc = subprocess.run([sys.executable, "-m", "demo", model, "--benchmark", "--benchmark-runs", str(RUNS),
                           "--out", str(out)], env=env, capture_output=True, text=True, cwd=str(root), timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return {"proc": proc, "doc": json.loads((out / "benchmark.json").read_text()), "out": out}


def _positive(v):
    return isinstance(v, (int, float)) and math.isfinite(v) and v > 0


def test_every_setting_has_consistent_numbers(bench):
    doc = bench["doc"]
    assert [(r["threads"], r["xnnpack"]) for r in doc["rows"]] == [(t, x) for t in (1, 2, 4) for x in (True, False)]
    assert _positive(doc["baseline_rss_mib"])
    for r in doc["rows"]:
        assert "error" not in r, r
        for key in ("load_ms", "first_ms", "median_ms", "p90_ms", "images_per_s", "peak_rss_mib"):
            assert _positive(r[key]), (key, r)
        assert r["runs"] == RUNS
        assert r["median_ms"] <= r["p90_ms"]
        assert r["images_per_s"] == pytest.approx(1000.0 / r["median_ms"], rel=0.01)
        # Each setting ran in a fresh process: its peak includes the baseline's imports, plus the model.
        assert r["peak_rss_mib"] >= doc["baseline_rss_mib"]
        assert r["model_rss_mib"] == pytest.approx(r["peak_rss_mib"] - doc["baseline_rss_mib"], abs=0.11)
        assert ("XNNPACK" in r["delegate"]) == r["xnnpack"]
    assert doc["machine"]["cpu_count"] >= 1 and doc["image_size"] > 0
    assert not [n for n in os.listdir(bench["out"]) if n.endswith(".tmp")]


def test_table_is_printed(bench):
    lines = bench["proc"].stdout.splitlines()
    header = next(i for i, ln in enumerate(lines) if ln.split()[:2] == ["threads", "XNNPACK"])
    assert "median ms" in lines[header] and "peak RSS MiB" in lines[header]
    rows = [ln.split()[:2] for ln in lines[header + 1:header + 7]]
    assert rows == [[str(t), x] for t in (1, 2, 4) for x in ("on", "off")]
    assert lines[header + 7].startswith("baseline (LiteRT imported, no model):")


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="VmHWM is read from Linux's /proc")
def test_peak_memory_is_the_worker_s_own(exported):
    # Linux carries a parent's peak RSS into a child's ru_maxrss across fork and exec: a worker started
    # from this process (TensorFlow loaded, hundreds of MiB) would report at least as much.
    from demo import benchmark

    with open("/proc/self/status") as f:
        ours = next(int(ln.split()[1]) / 1024 for ln in f if ln.startswith("VmRSS:"))
    model = os.path.join(exported["export"], "model_int8.tflite")
    baseline = benchmark._spawn(model, 32, None, None, 1, 0, "random")
    assert 0 < baseline["peak_rss_mib"] < ours, (baseline, ours)


@pytest.mark.parametrize("case", ["not_tflite", "with_pictures", "bad_threads", "bad_runs"])
def test_bad_use_is_one_line(exported, tmp_path, capsys, case):
    from demo.__main__ import main

    model = os.path.join(exported["export"], "model_int8.tflite")
    args = [model, "--benchmark", "--out", str(tmp_path / "out")]
    if case == "not_tflite":
        fake = tmp_path / "notes.tflite"
        fake.write_text("not a model")
        args[0] = str(fake)
    elif case == "with_pictures":
        args.insert(1, str(tmp_path / "cat.jpg"))
    elif case == "bad_runs":
        args += ["--benchmark-runs", "0"]
    else:
        args += ["--benchmark-threads", "1,zero"]
    try:
        code = main(args)
    except SystemExit as e:  # argparse's own one-line error
        code = e.code
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "Traceback" not in "\n".join(err)
    assert err[-1].startswith(("error:", "python -m demo: error:")), err
    assert not (tmp_path / "out" / "benchmark.json").exists()
