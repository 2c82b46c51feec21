"""The edge export stage: a trained multi-task Keras model -> validated TFLite files + a model card.

Run as ``python -m export`` (or ``mtl-keras export``). Each mode (fp32, fp16, dynamic, int8 and
int8_mixed) is converted with builtin ops only, keeps the input ``image`` and one output per task
named after it, is scored per task through the LiteRT interpreter against the Keras model and timed.

Example:
    >>> from export import export_model
    >>> report = export_model("runs/x/model.keras", modes=["fp32", "int8"])  # doctest: +SKIP
"""

__all__ = ["export_model"]


def __getattr__(name):
    # Lazy, so `mtl-keras --help` does not import TensorFlow through this package.
    if name == "export_model":
        from export.stage import export_model

        return export_model
    raise AttributeError(name)
