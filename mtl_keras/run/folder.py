"""A training run's folder as one object: its paths, its ``config.json``, its data and its model.

``train`` writes a run folder (model.keras, config.json, metrics.json, history.csv, logs/, and a
backup/ while it is resumable); ``evaluate``, ``explain`` and ``export`` read it back. ``RunDir``
is the one place that knows the folder's layout and what its ``config.json`` means: which dataset
the run was trained on and with which source options, the settings ``--resume`` continues with,
and what the export's model card records about the run.

Example:
    >>> import os, tempfile
    >>> run = RunDir(tempfile.mkdtemp())
    >>> run.write_config({"data": "shapes", "args": {"epochs": 3, "out": "elsewhere"}})
    >>> run.read_config()["data"], os.path.basename(run.model)
    ('shapes', 'model.keras')
    >>> run.choose_data(None, None)
    ('shapes', {})
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from typing import Any

from mtl_keras.errors import MtlError
from mtl_keras.run import files

MODEL_FILE = "model.keras"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
HISTORY_FILE = "history.csv"
# What a finished run holds; --force removes these (and backup/, logs/) before writing a new run.
RUN_FILES = (MODEL_FILE, HISTORY_FILE, CONFIG_FILE, METRICS_FILE)
# What runs saved before the recipe flags trained with (Adam, no warm-up, no smoothing, no decay).
PRE_RECIPE_SETTINGS = {"optimizer": "adam", "warmup": 0.0, "label_smoothing": 0.0, "weight_decay": None,
                       "depends_on": "", "zero_init_residual": False}
# Saved flags that describe the invocation, not the run: --resume takes them from the new command line.
NOT_RESUMED = ("resume", "force", "out")
# Keys of config.json the model card keeps, so an exported file can be traced to its training run.
CARD_RUN_KEYS = ("data", "trunk", "image_size", "build")
NO_DATA = "no --data given and no config.json beside the model says which dataset it was trained on"


def run_config(model_path: str) -> dict:
    """The training run's config.json beside a model, or ``{}`` when there is none.

    Args:
        model_path: a ``.keras`` file; it need not exist.

    Returns:
        The parsed config.json of the model's folder, or ``{}``.

    Example:
        >>> run_config("/nonexistent/model.keras")
        {}
    """
    return RunDir.of_model(model_path).read_config()


# Source options a flag sets: the flag's name, and what the option is for (for a dataset that takes none).
OPTION_FLAGS = {
    "data_dir": ("--data-dir", "that is for tfds: datasets; coco:, csv: and folder: name their files themselves"),
    "images": ("--images", "that is for csv: data whose pictures lie apart from the CSV"),
    "labels": ("--label", "that is for csv: and tfds: data, whose tasks come from their columns or features"),
}


# Datasets named by a path (``csv:labels.csv``): a run saves them absolute, like --data-dir and --images.
PATH_PREFIXES = ("coco:", "csv:", "folder:")


def _absolute(path) -> str:
    return os.path.abspath(os.path.expanduser(os.fspath(path)))


def absolute_data(data: str) -> str:
    """``data`` with the path of a path-named dataset made absolute, so a run finds it from any working directory.

    Args:
        data: a dataset name (``shapes``, ``tfds:NAME``, ``coco:DIR``, ``csv:FILE``, ``folder:DIR``).

    Returns:
        The same name, its path absolute for ``coco:``, ``csv:`` and ``folder:``; other names unchanged.

    Example:
        >>> absolute_data("csv:/data/../data/labels.csv"), absolute_data("tfds:voc/2007")
        ('csv:/data/labels.csv', 'tfds:voc/2007')
    """
    prefix = next((p for p in PATH_PREFIXES if data.startswith(p) and len(data) > len(p)), None)
    return f"{prefix}{_absolute(data[len(prefix):])}" if prefix else data


def data_options(data: str, data_dir=None, config: dict | None = None, images=None, labels=None) -> dict:
    """The source options for dataset ``data``: the flags given (paths made absolute) over the run's saved ones.

    The run's ``data_options`` apply only to the dataset it was trained on; a dataset that takes no
    such option (``--data-dir`` for ``shapes``, ``--images`` for ``tfds:``) is an ``MtlError`` naming both.

    Args:
        data: the dataset name (``shapes``, ``tfds:NAME``, ``coco:DIR``, ``csv:FILE``, ``folder:DIR``).
        data_dir: ``--data-dir``, or None to keep the saved one.
        config: the run's config.json (``{}`` or None for a new run).
        images: ``--images``, or None to keep the saved one.
        labels: ``--label`` values (``TASK=FEATURE[:KIND]``), or None/empty to keep the saved ones.

    Returns:
        The keyword options for ``mtl_keras.data.load`` and ``tasks_for``.

    Raises:
        MtlError: the dataset takes no such option.

    Example:
        >>> data_options("tfds:voc/2007", "/data/tfds")
        {'data_dir': '/data/tfds'}
        >>> data_options("shapes", config={"data": "tfds:voc/2007", "data_options": {"data_dir": "/data/tfds"}})
        {}
        >>> data_options("csv:/data/labels.csv", images="/data/pictures", labels=["age=Age:regression"])
        {'images': '/data/pictures', 'labels': ['age=Age:regression']}
    """
    config = config or {}
    options = dict(config.get("data_options") or {}) if data == config.get("data") else {}
    if data_dir is not None:
        options["data_dir"] = _absolute(data_dir)
    if images is not None:
        options["images"] = _absolute(images)
    if labels:
        options["labels"] = [str(spec) for spec in labels]
    flagged = [k for k in OPTION_FLAGS if k in options]
    if not flagged:
        return options  # nothing to check, and train's early checks stay free of the TensorFlow import
    # lazy: the data package imports TensorFlow; only a flagged option needs the source's option list.
    from mtl_keras import data as data_lib

    accepted = data_lib.source_options(data)
    for key in flagged:
        if accepted is not None and key not in accepted:
            flag, what_for = OPTION_FLAGS[key]
            raise MtlError(f"dataset {data!r} takes no {flag} ({what_for})")
    return options


class RunDir:
    """One training run's folder: where its files are, what its config.json says, how to reopen it.

    A non-chief multiworker worker (``worker_rank > 0``) keeps its own backup, config.json and
    model copy in ``.worker-<rank>`` under the folder (``home``), so workers sharing a disk do not
    collide; the chief's home is the folder itself.

    Args:
        path: the run folder (``--out`` of ``mtl-keras train``); kept as given, for messages.
        model: the model file when it is not ``<path>/model.keras`` (``RunDir.of_model``).
        worker_rank: this process's multiworker rank; 0 for the chief and for single-machine runs.

    Example:
        >>> run = RunDir("runs/x")
        >>> run.model, run.metrics, run.export
        ('runs/x/model.keras', 'runs/x/metrics.json', 'runs/x/export')
        >>> RunDir("runs/x", worker_rank=2).home
        'runs/x/.worker-2'
    """

    def __init__(self, path, model=None, worker_rank: int = 0):
        self.path = os.fspath(path)
        self.worker_rank = int(worker_rank)
        self._model = None if model is None else os.fspath(model)

    @classmethod
    def of_model(cls, model_path) -> RunDir:
        """The run folder a model file lies in (the file may have any name).

        Args:
            model_path: a ``.keras`` file written by ``mtl-keras train``.

        Returns:
            The ``RunDir`` of the model's folder, whose ``model`` is ``model_path``.

        Example:
            >>> run = RunDir.of_model("/runs/x/best.keras")
            >>> run.path, run.model, run.config_path
            ('/runs/x', '/runs/x/best.keras', '/runs/x/config.json')
        """
        return cls(os.path.dirname(os.path.abspath(os.fspath(model_path))), model=model_path)

    def __repr__(self) -> str:
        return f"RunDir({self.path!r}" + (f", worker_rank={self.worker_rank})" if self.worker_rank else ")")

    # ----- paths -------------------------------------------------------------------------------
    @property
    def worker_dir(self) -> str | None:
        """A non-chief worker's own folder, ``<path>/.worker-<rank>``; None on the chief.

        Example:
            >>> RunDir("r").worker_dir is None, RunDir("r", worker_rank=1).worker_dir
            (True, 'r/.worker-1')
        """
        return os.path.join(self.path, f".worker-{self.worker_rank}") if self.worker_rank > 0 else None

    @property
    def home(self) -> str:
        """Where this process writes its config.json, backup and model: the worker's folder or the run's.

        Example:
            >>> RunDir("r").home
            'r'
        """
        return self.worker_dir or self.path

    @property
    def is_chief(self) -> bool:
        """True unless this is a non-chief multiworker worker (only the chief writes the run's results).

        Example:
            >>> RunDir("r").is_chief, RunDir("r", worker_rank=1).is_chief
            (True, False)
        """
        return self.worker_rank == 0

    @property
    def model(self) -> str:
        """The model file: the one given to ``of_model``, else ``<home>/model.keras``.

        Example:
            >>> RunDir("r", worker_rank=1).model
            'r/.worker-1/model.keras'
        """
        return self._model or os.path.join(self.home, MODEL_FILE)

    @property
    def config_path(self) -> str:
        """``<home>/config.json``.

        Example:
            >>> RunDir("r").config_path
            'r/config.json'
        """
        return os.path.join(self.home, CONFIG_FILE)

    @property
    def backup(self) -> str:
        """``<home>/backup``: the last completed epoch of an interrupted run.

        Example:
            >>> RunDir("r").backup
            'r/backup'
        """
        return os.path.join(self.home, "backup")

    @property
    def metrics(self) -> str:
        """``<path>/metrics.json``: the test metrics ``train`` writes.

        Example:
            >>> RunDir("r").metrics
            'r/metrics.json'
        """
        return os.path.join(self.path, METRICS_FILE)

    @property
    def history(self) -> str:
        """``<path>/history.csv``: one row per epoch.

        Example:
            >>> RunDir("r").history
            'r/history.csv'
        """
        return os.path.join(self.path, HISTORY_FILE)

    @property
    def logs(self) -> str:
        """``<path>/logs``: TensorBoard's folder.

        Example:
            >>> RunDir("r").logs
            'r/logs'
        """
        return os.path.join(self.path, "logs")

    @property
    def export(self) -> str:
        """``<path>/export``: where ``mtl-keras export`` writes by default.

        Example:
            >>> RunDir("r").export
            'r/export'
        """
        return os.path.join(self.path, "export")

    @property
    def gradcam(self) -> str:
        """``<path>/gradcam``: where ``mtl-keras explain`` writes by default.

        Example:
            >>> RunDir("r").gradcam
            'r/gradcam'
        """
        return os.path.join(self.path, "gradcam")

    def split_metrics(self, split: str) -> str:
        """``<path>/metrics_<split>.json``: where ``mtl-keras evaluate`` writes by default.

        Args:
            split: ``train``, ``val`` or ``test``.

        Returns:
            The path of the metrics file for ``split``.

        Example:
            >>> RunDir("r").split_metrics("val")
            'r/metrics_val.json'
        """
        return os.path.join(self.path, f"metrics_{split}.json")

    @property
    def finished(self) -> bool:
        """Whether the run (this process's part of it) has saved its model.

        Example:
            >>> RunDir("/nonexistent").finished
            False
        """
        return os.path.exists(self.model)

    @property
    def interrupted(self) -> bool:
        """Whether a backup of an interrupted run is there to resume from.

        Example:
            >>> RunDir("/nonexistent").interrupted
            False
        """
        return os.path.isdir(self.backup)

    # ----- config.json -------------------------------------------------------------------------
    def read_config(self) -> dict:
        """This process's config.json (a worker's own copy, else the run's), or ``{}`` when there is none.

        Returns:
            The parsed config.json, or ``{}``.

        Example:
            >>> RunDir("/nonexistent").read_config()
            {}
        """
        for path in (self.config_path, os.path.join(self.path, CONFIG_FILE)):
            if os.path.isfile(path):
                with open(path) as f:
                    return json.load(f)
        return {}

    def write_config(self, config: dict) -> None:
        """Write ``<home>/config.json`` atomically (never half-written, even if the run is killed).

        Args:
            config: JSON-able settings of the run (numpy values are converted).

        Example:
            >>> import tempfile
            >>> run = RunDir(tempfile.mkdtemp()); run.write_config({"data": "digits"})
            >>> run.read_config()
            {'data': 'digits'}
        """
        files.write_json(self.config_path, config)

    def resume_settings(self) -> dict:
        """The settings ``--resume`` continues the run with: its saved flags, less the invocation's own.

        A run saved before a recipe flag existed trained without it, so the flag's pre-recipe value
        comes back rather than today's default (a different optimizer half-way through a run).

        Returns:
            Flag name (argparse's ``dest``) -> saved value, without ``resume``, ``force`` and ``out``.

        Raises:
            MtlError: the folder holds no config.json of an earlier run.

        Example:
            >>> import tempfile
            >>> run = RunDir(tempfile.mkdtemp())
            >>> run.write_config({"args": {"epochs": 4, "optimizer": "sgd", "out": "old", "resume": False}})
            >>> s = run.resume_settings(); s["epochs"], s["optimizer"], s["warmup"], "out" in s
            (4, 'sgd', 0.0, False)
        """
        config = self.read_config()
        if not config:
            raise MtlError(f"nothing to resume in {self.path}: it holds no config.json of an earlier run")
        saved = {**PRE_RECIPE_SETTINGS, **config.get("args", {})}
        return {k: v for k, v in saved.items() if k not in NOT_RESUMED}

    # ----- data and model ----------------------------------------------------------------------
    def choose_data(self, data: str | None = None, data_dir=None, images=None, labels=None) -> tuple[str | None, dict]:
        """The dataset (``--data`` over the run's) and its source options (the flags over the run's saved ones).

        Args:
            data: ``--data``, or None for the dataset the run was trained on.
            data_dir: ``--data-dir``, or None for the run's saved one.
            images: ``--images``, or None for the run's saved one.
            labels: ``--label`` values, or None for the run's saved ones.

        Returns:
            ``(data, options)``; ``(None, {})`` when neither the flag nor config.json names a dataset.

        Raises:
            MtlError: the dataset takes no data dir, no picture folder or no label mapping.

        Example:
            >>> RunDir("/nonexistent").choose_data("tfds:voc/2007", "/data")
            ('tfds:voc/2007', {'data_dir': '/data'})
            >>> RunDir("/nonexistent").choose_data()
            (None, {})
        """
        config = self.read_config()
        data = data or config.get("data")
        return data, (data_options(data, data_dir, config, images, labels) if data else {})

    def load_model(self, safe_mode: bool = True, compile: bool = True):
        """The run's Keras model (``mtl_keras.model.saving.load_model``: clear errors, safe mode).

        Args:
            safe_mode: refuse Lambda layers and other arbitrary code (``--unsafe`` turns it off).
            compile: restore the losses and metrics too (evaluation needs them, export does not).

        Returns:
            The ``MultiTaskModel``.

        Example:
            >>> RunDir("/nonexistent").load_model()
            Traceback (most recent call last):
            ...
            mtl_keras.errors.MtlError: model file not found: /nonexistent/model.keras
        """
        # lazy: Keras loads TensorFlow; the folder's paths and config.json are read without it.
        from mtl_keras.model import saving

        return saving.load_model(self.model, safe_mode=safe_mode, compile=compile)

    def open(self, data: str | None = None, data_dir=None, safe_mode: bool = True, compile: bool = True,
             images=None, labels=None) -> OpenRun:
        """Load the model with its config and the data it was trained on (or ``data``): what evaluate,
        explain and export start from.

        The data options are resolved before the model loads, so a ``--data-dir`` (``--images``,
        ``--label``) the dataset cannot take fails at once; a missing dataset is reported after the model, so a wrong model path is
        named first.

        Args:
            data: ``--data``, or None for the run's dataset.
            data_dir: ``--data-dir``, or None for the run's saved one.
            safe_mode: see ``load_model``.
            compile: see ``load_model``.
            images: ``--images``, or None for the run's saved one.
            labels: ``--label`` values, or None for the run's saved ones.

        Returns:
            An ``OpenRun``: the model, config.json, the dataset and its options.

        Raises:
            MtlError: an unusable model file, a data dir the dataset cannot take, or no dataset at all.

        Example:
            >>> run = RunDir.of_model("runs/x/model.keras").open(compile=False)  # doctest: +SKIP
            >>> run.data, run.image_size                                         # doctest: +SKIP
            ('shapes', 96)
        """
        data, options = self.choose_data(data, data_dir, images, labels)
        model = self.load_model(safe_mode=safe_mode, compile=compile)
        if not data:
            raise MtlError(NO_DATA)
        return OpenRun(run=self, model=model, config=self.read_config(), data=data, data_options=options)

    # ----- writing a run -----------------------------------------------------------------------
    def prepare(self, resume: bool = False, force: bool = False) -> None:
        """Check the folder may take a new run (or be resumed) and create it; nothing is removed here.

        Args:
            resume: continue an interrupted run (``--resume``); needs its backup.
            force: allow overwriting a finished or interrupted run (``--force``).

        Raises:
            MtlError: the flags contradict each other, there is nothing to resume, or a run is there.

        Example:
            >>> import tempfile; RunDir(tempfile.mkdtemp()).prepare(resume=True)  # doctest: +ELLIPSIS
            Traceback (most recent call last):
            ...
            mtl_keras.errors.MtlError: nothing to resume in ...: no backup of an interrupted run there
        """
        out = self.home
        if resume and force:
            raise MtlError("--resume and --force contradict each other; use one")
        if resume:
            if not self.interrupted:
                raise MtlError(f"nothing to resume in {out}: no backup of an interrupted run there")
            return
        if self.interrupted and not force:
            raise MtlError(f"{out} holds an interrupted run; pass --resume to continue it or --force to start over")
        if self.finished and not force:
            raise MtlError(f"{out} already holds a finished run; pass --force to overwrite it or choose another --out")
        files.ensure_dir(out)

    def clear(self) -> None:
        """Remove an earlier run's files from this process's home, before a forced run writes its own.

        The chief removes the run's files, backup and logs; a worker only its backup and config copy.

        Example:
            >>> import os, tempfile
            >>> run = RunDir(tempfile.mkdtemp()); run.write_config({}); run.clear(); os.listdir(run.path)
            []
        """
        names = (*RUN_FILES, "backup", "logs") if self.is_chief else ("backup", CONFIG_FILE)
        for name in names:
            target = os.path.join(self.home, name)
            if os.path.isdir(target):
                shutil.rmtree(target)
            elif os.path.exists(target):
                os.remove(target)

    def save_model(self, model) -> None:
        """Save ``model`` to ``<home>/model.keras`` atomically.

        Args:
            model: the trained Keras model.

        Example:
            >>> RunDir("runs/x").save_model(model)  # doctest: +SKIP
        """
        files.save_model(model, self.model)

    def write_metrics(self, metrics: dict) -> None:
        """Write ``<path>/metrics.json`` atomically.

        Args:
            metrics: JSON-able results (numpy values are converted).

        Example:
            >>> import tempfile; run = RunDir(tempfile.mkdtemp()); run.write_metrics({"tasks": {}})
            >>> open(run.metrics).read()
            '{\\n  "tasks": {}\\n}\\n'
        """
        files.write_json(self.metrics, metrics)

    def remove_backup(self) -> None:
        """Drop the backup once the model is safely saved.

        Example:
            >>> RunDir("/nonexistent").remove_backup()
        """
        shutil.rmtree(self.backup, ignore_errors=True)

    def remove_worker_dir(self) -> None:
        """Drop a finished worker's own folder (the chief has none).

        Example:
            >>> RunDir("/nonexistent", worker_rank=1).remove_worker_dir()
        """
        if self.worker_dir:
            shutil.rmtree(self.worker_dir, ignore_errors=True)


@dataclasses.dataclass
class OpenRun:
    """A reopened run: its model and config.json, and the dataset (with options) to read.

    Args:
        run: the run folder.
        model: the loaded ``MultiTaskModel``.
        config: the run's config.json (``{}`` when the model has none beside it).
        data: the dataset to read (``--data``, else the run's).
        data_options: that dataset's source options (``--data-dir``, else the run's).

    Example:
        >>> run = RunDir.of_model("runs/x/model.keras").open()        # doctest: +SKIP
        >>> test = run.load_split("test", batch_size=32)              # doctest: +SKIP
    """

    run: RunDir
    model: Any
    config: dict
    data: str
    data_options: dict

    @property
    def image_size(self) -> int:
        """The model's square input size in pixels.

        Example:
            >>> RunDir.of_model("runs/x/model.keras").open().image_size  # doctest: +SKIP
            96
        """
        return int(self.model.input_shape[1])

    def load_split(self, split: str, batch_size: int, size: int | None = None, **kwargs):
        """A ``tf.data`` split of the run's dataset at the model's input size, labelled for its tasks.

        Args:
            split: ``train``, ``val`` or ``test``.
            batch_size: examples per batch.
            size: number of examples (None: the whole split).
            **kwargs: more ``mtl_keras.data.load`` arguments (``augment=False``, ...).

        Returns:
            The batched dataset.

        Example:
            >>> ds = RunDir.of_model("runs/x/model.keras").open().load_split("val", 8)  # doctest: +SKIP
        """
        # lazy: the data package imports TensorFlow (already loaded by the model; kept out of the header).
        from mtl_keras import data as data_lib

        return data_lib.load(self.data, split=split, image_size=self.image_size, batch_size=batch_size,
                             tasks=self.model.tasks, size=size, **kwargs, **self.data_options)

    def card_source(self) -> dict:
        """What the export's model card records about the run (``export.card.new_card``'s ``source``).

        Returns:
            ``{"model", "data", "trunk", "image_size", "run_config"}``; ``run_config`` keeps the
            dataset, trunk, input size and build settings of config.json.

        Example:
            >>> RunDir.of_model("runs/x/model.keras").open().card_source()["trunk"]  # doctest: +SKIP
            'mobilenet_v3_small'
        """
        return {
            "model": os.path.abspath(self.run.model), "data": self.data,
            "trunk": self.model.build_config.get("trunk"), "image_size": self.image_size,
            "run_config": {k: self.config[k] for k in CARD_RUN_KEYS if k in self.config},
        }
