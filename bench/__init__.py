"""The benchmark of the stack: `make bench` (python -m bench). See bench/README.md."""
