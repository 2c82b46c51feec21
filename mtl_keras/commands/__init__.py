"""CLI subcommands, one module each: ``add_arguments(parser)`` and ``run(args) -> int``.

Adding a subcommand means adding a module here and one entry in ``COMMANDS``.
"""

COMMANDS = {
    "train": "mtl_keras.commands.train",
    "evaluate": "mtl_keras.commands.evaluate",
    "export": "mtl_keras.commands.export",
    "compare": "mtl_keras.commands.compare",
    "explain": "mtl_keras.commands.explain",
}
