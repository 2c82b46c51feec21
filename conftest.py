"""Settings for every pytest run from the repository root, the docstring examples included.

``make test`` collects the examples in ``mtl_keras``, ``export`` and ``demo`` (``--doctest-modules``);
a ``__main__.py`` is a program, not a module of examples: importing it must not run it, so it is not
collected. ``bench/`` holds scripts, not the package, and is not collected either.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

collect_ignore_glob = ["*/__main__.py", "bench/*"]
