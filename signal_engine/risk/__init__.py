"""Risk layer: turns signals and a volatility forecast into a target exposure."""

from signal_engine.risk.holding import held_direction
from signal_engine.risk.sizing import volatility_target_position

__all__ = ["held_direction", "volatility_target_position"]
