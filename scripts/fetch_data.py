"""python -m scripts.fetch_data [ptb ...] [--data-dir data]: fetch and verify datasets.

Offline, set SRU_DATA_MIRROR to a directory laid out like ../shared/data."""
import argparse
import sys

from tasks.common.data import MANIFEST, DataError, default_data_dir, ensure_dataset


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("datasets", nargs="*", default=sorted(MANIFEST), help=f"default: all of {sorted(MANIFEST)}")
    p.add_argument("--data-dir", default=str(default_data_dir()))
    args = p.parse_args(argv)
    try:
        for name in args.datasets:
            paths = ensure_dataset(name, args.data_dir)
            print(f"{name}: {len(paths)} files verified in {args.data_dir}")
    except DataError as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
