"""Embedding server for the tract-vs-onnxruntime agreement check (`cargo bench --bench ort_agreement`).

Reads aligned crops from stdin (each 112*112*3 bytes of RGB, row-major) and writes SFace's raw output for each
(128 little-endian f32) to stdout. Pipes only: no crop or embedding touches the disk.
"""
import sys

import numpy as np

import models

CROP = 112 * 112 * 3


def main():
    sface = models.session(models.SFACE, 1)
    name = sface.get_inputs()[0].name
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while True:
        data = stdin.read(CROP)
        if len(data) < CROP:
            break
        rgb = np.frombuffer(data, np.uint8).reshape(112, 112, 3).astype(np.float32)
        out = sface.run(None, {name: rgb.transpose(2, 0, 1)[None].copy()})[0].astype("<f4").ravel()
        stdout.write(out.tobytes())
        stdout.flush()


if __name__ == "__main__":
    main()
