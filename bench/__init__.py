"""Side-by-side benchmarks: each module in bench.__main__.BENCHES compares our way with the naive one.

Run with `make bench` (or `.venv/bin/python -m bench`); results are merged by name into bench/results.json.
"""
