"""Benchmarks: each module measures one area and prints its figures next to a baseline
measured in the same run. ``make bench`` (``python -m bench``) runs them all;
``python -m bench NAME`` runs one."""
