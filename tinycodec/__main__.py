"""``python -m tinycodec`` is the same as the ``tinycodec`` command."""

import sys

from tinycodec.cli import main

sys.exit(main())
