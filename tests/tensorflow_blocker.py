"""An environment in which a child Python process cannot import TensorFlow (nor anything that needs it).

The device runner must work where TensorFlow is not installed; tests run it with this environment, so
an import that slips in fails loudly instead of passing on a development machine.
"""

from __future__ import annotations

import os
import textwrap

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BLOCKED = ("tensorflow", "keras", "mtl_keras", "export", "tf_keras")


def blocked_env(root) -> dict:
    """``os.environ`` plus a ``sitecustomize`` under ``root/blocker`` that refuses to import ``BLOCKED``."""
    blocker = os.path.join(os.fspath(root), "blocker")
    os.makedirs(blocker, exist_ok=True)
    with open(os.path.join(blocker, "sitecustomize.py"), "w") as f:
        f.write(textwrap.dedent(f"""
            import sys
            class Block:
                def find_spec(self, name, path=None, target=None):
                    if name.split(".")[0] in {BLOCKED!r}:
                        raise ImportError(f"{{name}} is blocked: the device runner must run without it")
            sys.meta_path.insert(0, Block())
        """))
    return {**os.environ, "PYTHONPATH": f"{blocker}{os.pathsep}{REPO}"}
