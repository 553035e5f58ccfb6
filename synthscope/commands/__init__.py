"""The ``synthscope`` commands, one module per group (generate, detect, audit, lab, report, data).

Each module has ``register(commands)``, which adds its parsers to the top-level subparsers and sets on
every runnable parser ``handler(args, progress)`` (and, where a command may run a large network,
``workload(args)``, see :mod:`synthscope.commands.common`). A handler's docstring is its command's
description in ``--help``. ``synthscope.cli`` lists the groups in the order ``--help`` shows them,
parses, and calls the handler.

Convention: at the top a command module imports only the standard library,
:mod:`synthscope.commands.common` and torch-free modules (:mod:`synthscope.registry`); torch, diffusers
and the models are imported inside handlers, so that ``--help`` answers at once.
"""
