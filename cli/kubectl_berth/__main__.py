import sys

from kubectl_berth.cli import main

sys.exit(main())
