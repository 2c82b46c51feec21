"""``python -m mtl_keras.cli``: the same as the ``mtl-keras`` command.

Example:
    $ python -m mtl_keras.cli train --help
"""

import sys

from mtl_keras.cli import main

sys.exit(main())
