"""``python tests/train_cli_runner.py train ...``: the loftup CLI with the tests' tiny backbone
registered (for subprocess and torchrun tests)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loftup.cli import main  # noqa: E402
from train_fixtures import register_tiny  # noqa: E402

if __name__ == "__main__":
    register_tiny()
    sys.exit(main(sys.argv[1:]))
