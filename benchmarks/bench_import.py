"""Time `import ferzoo` and the first registry listing in fresh processes (no TensorFlow may be imported).

Usage: python benchmarks/bench_import.py [--runs 10]
"""

import argparse
import statistics
import subprocess
import sys

CODE = """
import sys, time
t = time.perf_counter()
import ferzoo
a = time.perf_counter() - t
ferzoo.list_models(); ferzoo.list_datasets()
b = time.perf_counter() - t
print(a, b, 'tensorflow' in sys.modules)
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    args = ap.parse_args()
    imports, listings = [], []
    for _ in range(args.runs):
        out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, check=True).stdout.split()
        if out[2] != "False":
            raise SystemExit("TensorFlow was imported by `import ferzoo` or the registry listing")
        imports.append(float(out[0]) * 1000)
        listings.append(float(out[1]) * 1000)
    print(f"import ferzoo: median {statistics.median(imports):.1f} ms (min {min(imports):.1f}, max {max(imports):.1f})")
    print(f"import + list_models + list_datasets: median {statistics.median(listings):.1f} ms")
    print("tensorflow imported: no")


if __name__ == "__main__":
    main()
