"""OpenCV's own pipeline (FaceDetectorYN + FaceRecognizerSF) as an embedding service for `examples/open_set_peer.rs`,
which runs the peer on exactly facegate's open-set splits.

    python3 benches/peer/opencv_embed.py --faces DIR [--score 0.8] [--pick largest]

Reads photo paths (relative to DIR) on stdin, one per line; answers each with one line on stdout: the 128 numbers of
the unit embedding of its largest face, or `-` when OpenCV finds no face. Embeddings pass only through the pipe.
"""
import argparse
import os
import sys
import tempfile

import cv2

from opencv_eval import embed, load


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--faces", required=True)
    ap.add_argument("--score", type=float, default=0.8)
    ap.add_argument("--pick", choices=["first", "largest"], default="largest")
    args = ap.parse_args()
    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory() as tmp:
        det, rec = load(tmp, args.score)
    for line in sys.stdin:
        rel = line.rstrip("\n")
        img = cv2.imread(os.path.join(args.faces, rel))
        e = None if img is None else embed(det, rec, img, args.pick)
        sys.stdout.write("-\n" if e is None else " ".join(f"{v:.7g}" for v in e) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
