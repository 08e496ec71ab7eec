"""Run every benchmark module in bench/ (or those named on the command line)."""

import importlib
import pkgutil
import sys
import time

import bench


def main(names: list[str]) -> int:
    modules = pkgutil.iter_modules(bench.__path__)
    found = sorted(m.name for m in modules if not m.name.startswith("_"))
    chosen = names or found
    unknown = sorted(set(chosen) - set(found))
    if unknown:
        have = ", ".join(found) or "none"
        print(f"unknown benchmark(s) {', '.join(unknown)}; have: {have}", file=sys.stderr)
        return 2
    for name in chosen:
        print(f"\n=== bench.{name} ===", flush=True)
        t0 = time.monotonic()
        importlib.import_module(f"bench.{name}").main()
        print(f"=== bench.{name}: {time.monotonic() - t0:.0f} s ===", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
