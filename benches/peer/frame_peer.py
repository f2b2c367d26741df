"""The peers of `cargo bench --bench peers`: OpenCV (FaceDetectorYN + FaceRecognizerSF) or onnxruntime running the
same ONNX files on the same webcam frames, timed on request so criterion measures them in the same run as facegate.

    python3 benches/peer/frame_peer.py --runtime opencv|ort --threads N --detect-side 640 --gallery 10000 FRAME...

Protocol on stdin/stdout, one line each: `STAGE ITERS` -> elapsed nanoseconds for ITERS repetitions of STAGE, where
STAGE is detect, align, embed, match or frame (the whole path on the next frame, cycling); `rss` -> the process's
peak and current resident memory in KiB (`PEAK CURRENT`); `quit`. Frames are read once into memory, never written.

The onnxruntime path uses OpenCV only where the runtime has nothing (resizing, the alignment warp, NMS); its detector
decoding is vectorised numpy, as a Python user would write it.
"""
import argparse
import os
import resource
import sys
import tempfile
import time

import cv2
import numpy as np

import models


def current_rss_kib():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class OpenCvPath:
    def __init__(self, threads, side, frame_size):
        cv2.setNumThreads(threads)
        with tempfile.TemporaryDirectory() as tmp:
            # OpenCV reads YuNet as it is; SFace needs its unread graph inputs dropped (in memory, then a private
            # temporary file: its loader takes a path).
            sface = os.path.join(tmp, "sface.onnx")
            with open(sface, "wb") as f:
                f.write(models.fixed_model_bytes(models.SFACE))
            self.rec = cv2.FaceRecognizerSF.create(sface, "")
        w, h = frame_size
        self.scale = min(1.0, side / max(w, h))
        self.size = (round(w * self.scale), round(h * self.scale))
        self.det = cv2.FaceDetectorYN.create(models.YUNET, "", self.size, 0.8, 0.3, 5000)

    def detect(self, frame):
        small = frame if self.scale == 1.0 else cv2.resize(frame, self.size, interpolation=cv2.INTER_AREA)
        _, faces = self.det.detect(small)
        if faces is None:
            return None
        face = faces[np.argmax(faces[:, 2] * faces[:, 3])].copy()
        face[:14] /= self.scale
        return face

    def align(self, frame, face):
        return self.rec.alignCrop(frame, face)

    def embed(self, crop):
        e = self.rec.feature(crop).ravel()
        return e / np.linalg.norm(e)


class OrtPath:
    STRIDES = (8, 16, 32)

    def __init__(self, threads, side, frame_size):
        cv2.setNumThreads(1)
        self.yunet = models.session(models.YUNET, threads)
        self.sface = models.session(models.SFACE, threads)
        self.yname = self.yunet.get_inputs()[0].name
        self.sname = self.sface.get_inputs()[0].name
        self.outs = [o.name for o in self.yunet.get_outputs()]
        w, h = frame_size
        self.scale = min(1.0, side / max(w, h))
        self.size = (round(w * self.scale), round(h * self.scale))
        self.padded = (-(-self.size[1] // 32) * 32, -(-self.size[0] // 32) * 32)
        with tempfile.TemporaryDirectory() as tmp:
            sface = os.path.join(tmp, "sface.onnx")
            with open(sface, "wb") as f:
                f.write(models.fixed_model_bytes(models.SFACE))
            self.rec = cv2.FaceRecognizerSF.create(sface, "")

    def detect(self, frame):
        small = frame if self.scale == 1.0 else cv2.resize(frame, self.size, interpolation=cv2.INTER_AREA)
        ph, pw = self.padded
        x = np.zeros((1, 3, ph, pw), np.float32)
        x[0, :, : small.shape[0], : small.shape[1]] = small.transpose(2, 0, 1)
        out = dict(zip(self.outs, self.yunet.run(None, {self.yname: x})))
        return models.largest_yunet_face(out, self.padded, self.scale)

    def align(self, frame, face):
        return self.rec.alignCrop(frame, face)

    def embed(self, crop):
        x = crop[:, :, ::-1].transpose(2, 0, 1)[None].astype(np.float32)
        e = self.sface.run(None, {self.sname: x})[0].ravel()
        return e / np.linalg.norm(e)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runtime", choices=["opencv", "ort"], required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--detect-side", type=int, default=640)
    ap.add_argument("--gallery", type=int, default=10000)
    ap.add_argument("frames", nargs="+")
    args = ap.parse_args()
    frames = [cv2.imread(p) for p in args.frames]
    if any(f is None for f in frames):
        sys.exit("a frame could not be read")
    size = (frames[0].shape[1], frames[0].shape[0])
    path = (OpenCvPath if args.runtime == "opencv" else OrtPath)(args.threads, args.detect_side, size)
    rng = np.random.default_rng(7)
    gallery = rng.standard_normal((args.gallery, 128)).astype(np.float32)
    gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)

    first = frames[0]
    face = path.detect(first)
    if face is None:
        sys.exit("no face in the first frame")
    crop = path.align(first, face)
    emb = path.embed(crop)
    cursor = [0]

    def whole_frame():
        frame = frames[cursor[0] % len(frames)]
        cursor[0] += 1
        found = path.detect(frame)
        if found is not None:
            e = path.embed(path.align(frame, found))
            int(np.argmax(gallery @ e))

    stages = {
        "detect": lambda: path.detect(first),
        "align": lambda: path.align(first, face),
        "embed": lambda: path.embed(crop),
        "match": lambda: int(np.argmax(gallery @ emb)),
        "frame": whole_frame,
    }
    print("ready", flush=True)
    for line in sys.stdin:
        words = line.split()
        if not words or words[0] == "quit":
            break
        if words[0] == "rss":
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            print(f"{peak} {current_rss_kib()}", flush=True)
            continue
        fn, iters = stages[words[0]], int(words[1])
        start = time.perf_counter_ns()
        for _ in range(iters):
            fn()
        print(time.perf_counter_ns() - start, flush=True)


if __name__ == "__main__":
    main()
