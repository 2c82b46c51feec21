"""The layout's rules, read from the imports of the source (README, "Layout").

Stages import only from the stages before them (``STAGES``), never from the command line; ``export``
uses the library, not its CLI; ``demo`` is the device runtime and imports nothing of the project or
TensorFlow. Imports inside functions are counted too: hiding an arrow in a function does not make
it point the right way.
"""

from __future__ import annotations

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]

# Earlier stages first. A module may import from its own stage and from earlier ones.
STAGES = [
    ("demo",),                                   # the device runtime: numpy + Pillow + LiteRT
    # The package itself (its __init__ loads every name lazily, so importing it loads nothing), errors
    # and the quiet TensorFlow start: what every stage may use.
    ("mtl_keras", "mtl_keras.errors", "mtl_keras.startup"),
    ("mtl_keras.layers",),                       # custom Keras layers the heads and trunks are made of
    ("mtl_keras.tasks",),                        # one file per task type
    ("mtl_keras.data",),                         # sources -> tf.data, labels encoded by the tasks
    ("mtl_keras.balancing",),                    # loss/gradient balancing and the balanced train step
    ("mtl_keras.model",),                        # trunk + heads -> MultiTaskModel
    ("mtl_keras.train",),                        # around fit: strategy, precision, callbacks, recipe
    ("mtl_keras.run",),                          # a run folder: written by train, read by the rest
    ("mtl_keras.evaluate",),                     # metrics, compare
    ("mtl_keras.explain",),                      # Grad-CAM
    ("export",),                                 # TFLite
    ("mtl_keras.cli",),                          # the command line
]
PROJECT = ("mtl_keras", "export", "demo")


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: pathlib.Path) -> list[tuple[str, int]]:
    """(imported module, line) for every import of the project's modules, at any depth."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            # `from pkg import module` imports pkg.module
            targets = [f"{target}.{a.name}" if _is_module(f"{target}.{a.name}") else target for a in node.names]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            continue
        found += [(t, node.lineno) for t in targets if t.split(".")[0] in PROJECT]
    return found


def _is_module(dotted: str) -> bool:
    path = ROOT.joinpath(*dotted.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def _stage(module: str) -> int:
    best, rank = -1, None
    for i, prefixes in enumerate(STAGES):
        for p in prefixes:
            # The package name alone matches only itself: a new top-level module must be placed.
            if (module == p or (p != "mtl_keras" and module.startswith(p + "."))) and len(p) > best:
                best, rank = len(p), i
    assert rank is not None, f"{module} belongs to no stage: add it to STAGES"
    return rank


def _sources():
    for top in PROJECT:
        yield from sorted((ROOT / top).rglob("*.py"))


def test_every_import_points_to_an_earlier_stage():
    wrong = []
    for path in _sources():
        me = _module_name(path)
        for target, line in _imports(path):
            if _stage(target) > _stage(me):
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {target}")
    assert not wrong, "imports that point to a later stage:\n" + "\n".join(wrong)


def test_the_library_never_imports_the_command_line():
    wrong = [
        f"{path.relative_to(ROOT)}:{line} imports {target}"
        for path in _sources()
        if not _module_name(path).startswith("mtl_keras.cli")
        for target, line in _imports(path)
        if target == "mtl_keras.cli" or target.startswith("mtl_keras.cli.")
    ]
    assert not wrong, "\n".join(wrong)


def test_no_import_cycle_between_modules():
    graph = {}
    for path in _sources():
        graph[_module_name(path)] = {t for t, _ in _imports(path)} - {_module_name(path)}

    def parents(m):  # importing a.b.c runs a/__init__ and a/b/__init__ first
        parts = m.split(".")
        return {".".join(parts[:i]) for i in range(1, len(parts))}

    state, cycles = {}, []

    def visit(m, path):
        if state.get(m) == "done" or m not in graph:
            return
        if state.get(m) == "active":
            cycles.append(" -> ".join(path[path.index(m):] + [m]))
            return
        state[m] = "active"
        for t in sorted(graph[m]):
            if m not in parents(t):  # a package importing its own submodule is not a cycle
                visit(t, path + [m])
        state[m] = "done"

    for m in sorted(graph):
        visit(m, [])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_demo_runs_without_tensorflow_or_the_library():
    wrong = []
    for path in sorted((ROOT / "demo").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            wrong += [f"{path.relative_to(ROOT)}:{node.lineno} imports {n}" for n in names
                      if n.split(".")[0] in ("tensorflow", "keras", "mtl_keras", "export", "tf_keras_vis")]
    assert not wrong, "\n".join(wrong)


def test_the_rules_would_catch_a_backward_import(tmp_path):
    # The checker itself: a stage lower than the one it imports from is reported.
    assert _stage("mtl_keras.tasks.detection") < _stage("mtl_keras.evaluate.metrics")
    assert _stage("mtl_keras.cli.train") > _stage("export.stage") > _stage("mtl_keras.explain.cams")
    assert _stage("mtl_keras.model.build") < _stage("mtl_keras.train.recipe")
