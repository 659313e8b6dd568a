import sys

from ps_agent.cli import main

sys.exit(main())
