"""``python -m voicefleet_cli``: the same as the ``voicefleet`` command."""

import sys

from voicefleet_cli.main import main

sys.exit(main())
