import sys

from gantui.cli import main

sys.exit(main())
