"""Export a trained model to TFLite (fp32 | fp16 | dynamic | int8), validated per task (alias of python -m export).

Example:
    mtl-keras export runs/x/model.keras --modes fp32,int8 --out runs/x/export
"""

from export.__main__ import add_arguments, run

__all__ = ["add_arguments", "run"]
