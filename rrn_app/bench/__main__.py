"""`python -m rrn_app.bench`: rrn-bench (also how rrn-bench starts its memory probes)."""

from rrn_app.bench.cli import main

main()
