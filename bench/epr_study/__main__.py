"""``python -m bench.epr_study extract|run|report ...`` (from the repository root)."""
import sys

from bench.epr_study.cli import main

sys.exit(main())
