"""Build the offline tiny models (tokenizer, tiny-base, tiny-chat) into outputs/tiny_models.

    python -m tiny [--force] [--out_dir DIR]      (make tiny)

A no-op when the cached build matches the current code and config (see tiny/build.py).
"""

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from common.cli import parse_options
from common.config import option
from tiny.build import build_tiny_models, read_build_info


@dataclass
class BuildOptions:
    force: bool = option(False, help="rebuild even when the cached build matches")
    out_dir: Optional[str] = option(None, help="output directory (default: outputs/tiny_models)")


def main(argv=None) -> int:
    args = parse_options("python -m tiny", __doc__.splitlines()[0], BuildOptions, argv)

    start = time.time()
    before = read_build_info(args.out_dir)
    try:
        paths = build_tiny_models(args.out_dir, force=args.force)
    except OSError as e:  # an --out_dir that is a file, or that cannot be created or written
        print(f"error: {e}", file=sys.stderr)
        return 2
    elapsed = time.time() - start
    out_dir = Path(next(iter(paths.values()))).parent
    info = read_build_info(out_dir)
    if info == before:  # nothing was built in this call: one line is enough
        print(f"tiny models up to date in {out_dir} (built earlier in {info['build_seconds']:.0f}s; "
              f"their checks are in {out_dir / 'BUILD_INFO.json'})")
        return 0
    print(f"built tiny models in {elapsed:.0f}s: {json.dumps(info['seconds'])}")
    for name, path in paths.items():
        print(f"  {name}: {path}")
    print(json.dumps(info["metrics"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
