"""Sub-commands beyond backtest/demo/datasets, one module each.

Each module listed in ``COMMAND_MODULES`` exposes ``register(subparsers)``, which adds its parser and
sets ``handler=function(args, console) -> int`` with ``set_defaults``. Handlers import heavy modules
lazily so ``signal-engine --help`` stays fast.
"""

COMMAND_MODULES: tuple[str, ...] = ("signal_engine.commands.data", "signal_engine.commands.fanout",
                                    "signal_engine.commands.paper",
                                    "signal_engine.commands.serve", "signal_engine.commands.step",
                                    "signal_engine.commands.text", "signal_engine.commands.train")
