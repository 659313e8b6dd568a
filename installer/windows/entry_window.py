"""PyInstaller entry point of ps-agent-window.exe (the window; ``--hidden`` for the notification area)."""

import runpy

if __name__ == "__main__":
    runpy.run_module("ui", run_name="__main__", alter_sys=True)
