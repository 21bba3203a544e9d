"""Adapters behind the ports of ``signal_engine.ports``; only ``signal_engine.bootstrap`` wires them in."""
