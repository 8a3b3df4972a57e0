#!/usr/bin/env python3
"""HyP² loss, multi-label image retrieval with hash codes. Usage:
python retrieval.py --dataset D --backbone B --hash_bit K [--test] (see --help and README.md)."""
import sys

from hyp2.command import main

if __name__ == "__main__":
    sys.exit(main())
