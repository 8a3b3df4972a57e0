#!/usr/bin/env python3
"""HyP² loss, multi-label image retrieval with hash codes. Usage:
python retrieval.py --dataset D --backbone B --hash_bit K [--test] (see --help and README.md)."""

if __name__ == "__main__":
    try:
        from hubness_pr.commands.launch import launch
    except KeyboardInterrupt:  # Ctrl-C before the launcher is even loaded
        import os
        os.write(2, b"retrieval.py: interrupted\n")
        raise SystemExit(130) from None
    raise SystemExit(launch("hubness_pr.commands.retrieval", "retrieval.py"))
