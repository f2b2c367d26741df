"""onnxruntime on the same models, input sizes and frames as `cargo bench --bench vision`: the peer figures
for benches/README.md. One intra-op thread unless --threads. Prints median milliseconds per stage.

    python3 benches/peer/ort_speed.py [--threads N] [--runs 100]
"""
import argparse
import glob
import os
import statistics
import time

import cv2
import numpy as np

import models

HERE = os.path.dirname(os.path.abspath(__file__))
LIVE = os.path.join(HERE, "..", "..", "..", "shared", "spoof", "live")


def median_ms(fn, runs):
    fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def yunet_input(bgr):
    h, w = bgr.shape[:2]
    ph, pw = -(-h // 32) * 32, -(-w // 32) * 32
    pad = np.zeros((ph, pw, 3), np.float32)
    pad[:h, :w] = bgr
    return pad.transpose(2, 0, 1)[None].copy()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=100)
    args = ap.parse_args()
    cv2.setNumThreads(args.threads)
    frame = cv2.imread(sorted(glob.glob(os.path.join(LIVE, "nuaa_*.jpg")))[0])
    small = cv2.resize(frame, (frame.shape[1] // 2, frame.shape[0] // 2), interpolation=cv2.INTER_LINEAR)
    yunet = models.session(models.YUNET, args.threads)
    sface = models.session(models.SFACE, args.threads)
    name = yunet.get_inputs()[0].name
    for label, img in (("yunet_640x480", frame), ("yunet_320x240", small)):
        x = yunet_input(img)
        print(f"onnxruntime {args.threads}t  detect/{label:<16} {median_ms(lambda: yunet.run(None, {name: x}), args.runs):7.2f} ms")
    crop = np.random.default_rng(0).integers(0, 256, (1, 3, 112, 112)).astype(np.float32)
    sname = sface.get_inputs()[0].name
    print(f"onnxruntime {args.threads}t  embed/sface_112x112    {median_ms(lambda: sface.run(None, {sname: crop}), args.runs):7.2f} ms")
    # The liveness pair on one face: two 80x80 patches, one per model (model only).
    pair = [models.session(path, args.threads) for path in models.MINIFAS]
    patch = np.random.default_rng(1).integers(0, 256, (1, 3, 80, 80)).astype(np.float32)
    run_pair = lambda: [s.run(None, {s.get_inputs()[0].name: patch}) for s in pair]
    print(f"onnxruntime {args.threads}t  liveness/minifasnet_pair {median_ms(run_pair, args.runs):7.2f} ms")


if __name__ == "__main__":
    main()
