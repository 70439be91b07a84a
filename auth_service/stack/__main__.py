"""``python3 -m auth_service.stack``: see :mod:`auth_service.stack.main`."""

import sys

from auth_service.stack.main import main

sys.exit(main())
