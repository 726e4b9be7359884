"""What a visitor's picture costs before any model sees it: the full decode against the reduced one.

    python bench/thumbnail.py [--repeats 20]

Three JPEGs: matplotlib's 512x600 sample photo, the same photo enlarged to 4000x3000 (a
12-megapixel phone photo), and a bundled CIFAR-10 picture enlarged to 2000x1500. For each: the
median time of to_32x32(load_image(jpeg)) (every pixel decoded) and of pictures.thumbnail(jpeg)
(libjpeg's DCT scaling down to no less than THUMB_SOURCE pixels a side), their ratio, the size
decoded, and how far the two 32x32 thumbnails are apart (largest and mean channel difference, of
255). One thread, as each upload's handler decodes in its own.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from timing import median_time  # noqa: E402 (bench/ is on sys.path when run as a script)

from cifar_demo import data, hardware  # noqa: E402
from cifar_demo.data import pictures  # noqa: E402


def jpeg(img: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def photos() -> list[tuple[str, bytes]]:
    import matplotlib

    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    photo = Image.open(path).convert("RGB")
    cifar = Image.open(data.sample_paths()[12][0]).convert("RGB")
    return [("photo 512x600", path.read_bytes()),
            ("photo enlarged to 4000x3000", jpeg(photo.resize((4000, 3000), Image.Resampling.BICUBIC))),
            ("CIFAR-10 picture enlarged to 2000x1500", jpeg(cifar.resize((2000, 1500), Image.Resampling.BICUBIC)))]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=20)
    args = p.parse_args()
    torch.set_num_threads(1)
    print(hardware.machine_line())
    print(f"thumbnail: JPEGs decoded at no less than {pictures.THUMB_SOURCE} pixels a side; "
          f"median of {args.repeats} after 2 untimed")
    for name, data_ in photos():
        full = median_time(lambda: pictures.to_32x32(pictures.load_image(data_)), args.repeats, warmup=2)
        small = median_time(lambda: pictures.thumbnail(data_), args.repeats, warmup=2)
        size = pictures.load_image(data_, at_least=pictures.THUMB_SOURCE).size
        diff = np.abs(pictures.to_32x32(pictures.load_image(data_)).astype(int)
                      - pictures.thumbnail(data_).astype(int))
        print(f"  {name}: every pixel {full * 1000:.1f} ms, reduced ({size[0]}x{size[1]}) {small * 1000:.1f} ms "
              f"= {full / small:.1f}x faster; 32x32 apart by at most {diff.max()}, {diff.mean():.2f} on average")


if __name__ == "__main__":
    main()
