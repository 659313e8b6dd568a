"""PySide6 user interface: a thin client of ps_agent's public API (never the network or the card)."""
