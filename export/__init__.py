"""The edge export stage: a trained multi-task Keras model -> validated TFLite files + a model card.

Run as ``python -m export`` (or ``mtl-keras export``). Each mode (fp32, fp16, dynamic, int8 and
int8_mixed) is converted with builtin ops only, keeps the input ``image`` and one output per task
named after it, is scored per task through the LiteRT interpreter against the Keras model and timed.

Example:
    >>> from export import export_model
    >>> report = export_model("runs/x/model.keras", modes=["fp32", "int8"])  # doctest: +SKIP
"""

__all__ = ["ExportPlan", "export_model", "run_export"]


def __getattr__(name):
    # lazy: `mtl-keras --help` imports this package (for the export flags); the stage imports TensorFlow.
    if name in __all__:
        from export import stage

        return getattr(stage, name)
    raise AttributeError(name)
