import sys

from quantbench_loadgen.accuracy.cli import main

sys.exit(main())
