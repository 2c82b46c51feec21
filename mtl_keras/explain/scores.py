"""Which score a CAM explains for each task head: the task type's own rule, found by its kind.

Each task type carries its Grad-CAM score rule (``Task.gradcam_score`` and
``Task.gradcam_reads_logits``, in its file under ``mtl_keras/tasks/``): which tensor it reads (the
logits before a softmax/sigmoid, as Grad-CAM prescribes, or the output itself) and how it picks
each image's target from the model's prediction, the image's label, or a class the user names.
This module only dispatches to it. ``register_score`` still adds (or overrides) a rule for a kind
from outside its task file; a kind without a rule is reported as "no score rule" and skipped.

| kind | reads | default target (``"predicted"``) | ``"label"`` | other targets |
|---|---|---|---|---|
| classification | logits | predicted class | labelled class | class name / index |
| multilabel | logits | top-scoring label | best-scoring labelled class | class name / index |
| box | box (rel_yxyx) | box area | box area | ``y1 x1 y2 x2`` |
| regression | value | unit 0 | unit 0 | unit index |
| detection | heatmap logits | class of the highest peak; score = that peak | largest labelled object's class | class |
| segmentation | pixel logits | most frequent predicted non-background class; mean logit over its pixels | labelled pixels of the main labelled class | class |
| depth | log-depth | nearness of the image centre: minus the mean log-depth over its middle half | the same | none |

Example:
    >>> import numpy as np
    >>> from mtl_keras.tasks import ClassificationTask
    >>> t = ClassificationTask("shape", classes=["circle", "square"])
    >>> s = build_score(t, np.array([[0.1, 2.0], [3.0, 0.0]]))
    >>> s.targets, [float(v) for v in s(np.array([[0.1, 2.0], [3.0, 0.0]], "float32"))]
    (['square', 'circle'], [2.0, 3.0])
"""

from __future__ import annotations

import collections.abc
import dataclasses
from typing import Callable

import keras
import numpy as np

from mtl_keras.errors import MtlError, unknown
from mtl_keras.tasks import TASK_TYPES
from mtl_keras.tasks.box import BOX_COORDS
from mtl_keras.tasks.scoring import LABEL, PREDICTED, TaskScore

__all__ = [
    "BOX_COORDS", "LABEL", "PREDICTED", "SCORES", "ScoreRule", "TaskScore", "build_score", "register_score",
    "rule_for", "score_tensor",
]


@dataclasses.dataclass(frozen=True)
class ScoreRule:
    """How one task type is scored: a ``build`` function and whether it reads the logits.

    Example:
        >>> SCORES["box"].uses_logits, SCORES["classification"].uses_logits
        (False, True)
    """

    build: Callable
    uses_logits: bool


def _task_rule(task, raw, labels, target) -> TaskScore:
    return task.gradcam_score(raw, labels, target)


class ScoreRules(collections.abc.MutableMapping):
    """The score rule of every kind: each registered task type's own, then ``register_score``'s.

    Read live from ``mtl_keras.tasks.TASK_TYPES``, so a task type registered later has its rule
    here at once. Setting or deleting a key changes only the rules added from outside.

    Example:
        >>> rules = ScoreRules()
        >>> "detection" in rules, "no_such_kind" in rules
        (True, False)
    """

    def __init__(self):
        self.registered: dict[str, ScoreRule] = {}

    def _rules(self) -> dict:
        rules = {kind: ScoreRule(_task_rule, bool(cls.gradcam_reads_logits))
                 for kind, cls in TASK_TYPES.items() if cls.has_gradcam_score()}
        rules.update(self.registered)
        return rules

    def __getitem__(self, kind):
        return self._rules()[kind]

    def __setitem__(self, kind, rule):
        self.registered[kind] = rule

    def __delitem__(self, kind):
        del self.registered[kind]

    def __iter__(self):
        return iter(self._rules())

    def __len__(self):
        return len(self._rules())


SCORES = ScoreRules()


def register_score(kind: str, uses_logits: bool):
    """Decorator: a score rule for task type ``kind`` from outside its task file (it wins over the type's own).

    The decorated ``build(task, raw, labels, target) -> TaskScore`` gets the head's tensor for the
    batch as numpy (``raw``), the images' raw labels for the task (or ``None``) and the user's
    target option. A new task type normally defines ``gradcam_score`` on its class instead.

    Args:
        kind: the task type's ``kind``.
        uses_logits: score the input of the head's final softmax/sigmoid.

    Returns:
        The decorator, which returns ``build`` unchanged.

    Example:
        >>> @register_score("ordinal_example", uses_logits=False)
        ... def _ordinal(task, raw, labels, target):
        ...     return TaskScore(lambda out: out[:, 0], ["rank"] * len(raw), "rank")
        >>> "ordinal_example" in SCORES
        True
        >>> del SCORES["ordinal_example"]
    """

    def decorator(build):
        SCORES[kind] = ScoreRule(build, uses_logits)
        return build

    return decorator


def score_tensor(model, task):
    """The symbolic tensor ``task``'s score reads: logits before an output activation, else the output.

    Args:
        model: a built multi-task model.
        task: one of the model's tasks (its output layer has the task's name).

    Returns:
        A symbolic Keras tensor (the output layer's input or output).

    Raises:
        MtlError: the task's kind has no score rule.

    Example:
        >>> import mtl_keras as mk
        >>> m = mk.build_model(mk.data.tasks_for("shapes", names=["shape"]), image_size=32, trunk="mobilenet_v3_small")
        >>> score_tensor(m, m.tasks[0]).shape
        (None, 6)
    """
    rule = rule_for(task)
    layer = model.get_layer(task.name)
    if rule.uses_logits and isinstance(layer, keras.layers.Activation):
        return layer.input
    return layer.output


def rule_for(task) -> ScoreRule:
    """The registered score rule of a task's kind, or a clear error.

    Args:
        task: a ``Task`` (its ``kind`` selects the rule).

    Returns:
        The ``ScoreRule`` (``build``, ``uses_logits``).

    Raises:
        MtlError: no score rule is registered for the task's kind.

    Example:
        >>> from mtl_keras.tasks import BoxTask
        >>> rule_for(BoxTask("box")).uses_logits
        False
    """
    if task.kind not in SCORES:
        raise unknown(f"score rule for task {task.name!r} of kind", task.kind, SCORES)
    return SCORES[task.kind]


def build_score(task, raw, labels=None, target=PREDICTED) -> TaskScore:
    """The score of ``task`` for one batch: ``raw`` is its ``score_tensor`` evaluated on the batch.

    Args:
        task: the ``Task`` to score.
        raw: the ``score_tensor`` values on the batch, ``[B, ...]`` (converted to numpy).
        labels: the batch's raw labels of the task, needed for ``target="label"``; ``None`` otherwise.
        target: ``predicted`` (default, also for ``None``), ``label`` or a task-specific target.

    Returns:
        A ``TaskScore``: callable on the head output, with ``what`` and one ``targets`` entry per image.

    Raises:
        MtlError: ``label`` without labels, no score rule for the kind, or a target the rule rejects.

    Example:
        >>> import numpy as np
        >>> from mtl_keras.tasks import BoxTask
        >>> s = build_score(BoxTask("box"), np.array([[0.1, 0.1, 0.5, 0.3]]))
        >>> s.what, round(float(s(np.array([[0.1, 0.1, 0.5, 0.3]], "float32"))[0]), 3)
        ('box area', 0.08)
    """
    if target is None:
        target = PREDICTED
    if target == LABEL and labels is None:
        raise MtlError(f"task {task.name!r}: target 'label' needs labels, and the data has none for it")
    return rule_for(task).build(task, np.asarray(raw), labels, target)
