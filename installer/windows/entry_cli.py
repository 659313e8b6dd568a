"""PyInstaller entry point of ps-agent.exe (the command line)."""

import sys

from ps_agent.cli import main

if __name__ == "__main__":
    sys.exit(main())
