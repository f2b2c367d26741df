"""One contender of `cargo bench --bench frame_path`: OpenCV 5 (FaceDetectorYN + FaceRecognizerSF, and cv2.dnn for
the liveness pair) or onnxruntime, on the same fp32 numbers facegate runs (the int8bq weights folded to fp32 in
memory, `models.folded_model_bytes`), over the same webcam frames, one thread. The caller pins it to a core.

    taskset -c 1 python3 benches/peer/frame_path.py --runtime opencv|ort [--repeats N] FRAME...

Each frame goes through decode (from the JPEG bytes held in memory), detection at longer side 320, the largest face,
alignment at full size, SFace and normalisation, the liveness pair (two crops, 80x80, two models) and a 10,000-row
match; every stage is timed. Prints one JSON object: per-stage medians (ms), the whole frame's median and mean, and
the process's minor page faults, user and system time per frame over the timed loop. Nothing is written.
"""
import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time

import cv2
import numpy as np

import frame_peer
import models

SIDE = 320
SCALES = (2.7, 4.0)


def crop_window(width, height, box, scale):
    """facegate's `liveness::crop_window` (upstream's `CropImage._get_new_box`) on the squared box."""
    x, y, w, h = box
    side = max(w, h)
    x, y, w, h = x + (w - side) / 2, y + (h - side) / 2, side, side
    scale = min((height - 1) / h, (width - 1) / w, scale)
    nw, nh = w * scale, h * scale
    cx, cy = x + w / 2, y + h / 2
    left, top, right, bottom = cx - nw / 2, cy - nh / 2, cx + nw / 2, cy + nh / 2
    if left < 0:
        right -= left
        left = 0
    if top < 0:
        bottom -= top
        top = 0
    if right > width - 1:
        left -= right - width + 1
        right = width - 1
    if bottom > height - 1:
        top -= bottom - height + 1
        bottom = height - 1
    clamp = lambda v, m: int(min(max(int(v), 0), m))
    return clamp(left, width - 1), clamp(top, height - 1), clamp(right, width - 1), clamp(bottom, height - 1)


def live_score(frame, box, run):
    scores = []
    for k, scale in enumerate(SCALES):
        l, t, r, b = crop_window(frame.shape[1], frame.shape[0], box, scale)
        patch = cv2.resize(frame[t : b + 1, l : r + 1], (80, 80), interpolation=cv2.INTER_LINEAR)
        logits = run(k, patch.transpose(2, 0, 1)[None].astype(np.float32)).ravel()
        e = np.exp(logits - logits.max())
        scores.append(e[1] / e.sum())
    return float(np.mean(scores))


class OpenCv(frame_peer.OpenCvPath):
    """OpenCV's own pipeline on fp32 weights; detect, align and embed as in `frame_peer.py`."""

    def __init__(self, frame_size, tmp):
        cv2.setNumThreads(1)
        paths = {}
        for name, src in (("yunet", models.YUNET), ("sface", models.SFACE)):
            paths[name] = os.path.join(tmp, name + ".onnx")
            with open(paths[name], "wb") as f:
                f.write(models.folded_model_bytes(src, keep_shapes=True))
        w, h = frame_size
        self.scale = min(1.0, SIDE / max(w, h))
        self.size = (round(w * self.scale), round(h * self.scale))
        self.det = cv2.FaceDetectorYN.create(paths["yunet"], "", self.size, 0.8, 0.3, 5000)
        self.rec = cv2.FaceRecognizerSF.create(paths["sface"], "")
        self.pad = [cv2.dnn.readNetFromONNX(p) for p in models.MINIFAS]

    def liveness(self, frame, face):
        def run(k, x):
            self.pad[k].setInput(x)
            return self.pad[k].forward()

        return live_score(frame, face[:4], run)


class Ort(OpenCv):
    """onnxruntime for every model; OpenCV only where the runtime has nothing (resize, warp, NMS)."""

    def __init__(self, frame_size, tmp):
        super().__init__(frame_size, tmp)
        opts = models.ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        make = lambda b: models.ort.InferenceSession(b, opts, providers=["CPUExecutionProvider"])
        self.yunet = make(models.folded_model_bytes(models.YUNET))
        self.sface = make(models.folded_model_bytes(models.SFACE))
        self.pads = [make(open(p, "rb").read()) for p in models.MINIFAS]
        self.outs = [o.name for o in self.yunet.get_outputs()]
        self.padded = (-(-self.size[1] // 32) * 32, -(-self.size[0] // 32) * 32)

    def detect(self, frame):
        small = cv2.resize(frame, self.size, interpolation=cv2.INTER_AREA) if self.scale != 1.0 else frame
        ph, pw = self.padded
        x = np.zeros((1, 3, ph, pw), np.float32)
        x[0, :, : small.shape[0], : small.shape[1]] = small.transpose(2, 0, 1)
        out = dict(zip(self.outs, self.yunet.run(None, {self.yunet.get_inputs()[0].name: x})))
        return models.largest_yunet_face(out, self.padded, self.scale)

    def embed(self, crop):
        x = crop[:, :, ::-1].transpose(2, 0, 1)[None].astype(np.float32)
        e = self.sface.run(None, {self.sface.get_inputs()[0].name: x})[0].ravel()
        return e / np.linalg.norm(e)

    def liveness(self, frame, face):
        return live_score(frame, face[:4], lambda k, x: self.pads[k].run(None, {self.pads[k].get_inputs()[0].name: x})[0])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runtime", choices=["opencv", "ort"], required=True)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("frames", nargs="+")
    args = ap.parse_args()
    blobs = []
    for p in args.frames:
        with open(p, "rb") as f:
            blobs.append(np.frombuffer(f.read(), np.uint8))
    first = cv2.imdecode(blobs[0], cv2.IMREAD_COLOR)
    with tempfile.TemporaryDirectory() as tmp:
        path = (OpenCv if args.runtime == "opencv" else Ort)((first.shape[1], first.shape[0]), tmp)
    rng = np.random.default_rng(7)
    gallery = rng.standard_normal((10_000, 128)).astype(np.float32)
    gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
    stages = {k: [] for k in ("decode", "detect", "align", "embed", "liveness", "match", "frame")}

    def one(blob, timed):
        t0 = time.perf_counter()
        frame = cv2.imdecode(blob, cv2.IMREAD_COLOR)
        t1 = time.perf_counter()
        face = path.detect(frame)
        t2 = time.perf_counter()
        if face is None:
            if timed:
                stages["frame"].append((t2 - t0) * 1e3)
            return
        crop = path.align(frame, face)
        t3 = time.perf_counter()
        e = path.embed(crop)
        t4 = time.perf_counter()
        int(np.argmax(gallery @ e))
        t5 = time.perf_counter()
        path.liveness(frame, face)
        t6 = time.perf_counter()
        if timed:
            for k, v in zip(("decode", "detect", "align", "embed", "match", "liveness"), (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5)):
                stages[k].append(v * 1e3)
            # The whole frame as the issue defines it: decode to a normalised embedding, matched; liveness apart.
            stages["frame"].append((t5 - t0) * 1e3)

    for blob in blobs[:3]:
        one(blob, False)
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    n = 0
    for _ in range(args.repeats):
        for blob in blobs:
            one(blob, True)
            n += 1
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    report = {
        "contender": f"OpenCV {cv2.__version__}" if args.runtime == "opencv" else f"onnxruntime {models.ort.__version__}",
        "frames": n,
        "median_ms": {k: statistics.median(v) if v else None for k, v in stages.items()},
        "frame_mean_ms": statistics.fmean(stages["frame"]),
        "minor_faults_per_frame": (r1.ru_minflt - r0.ru_minflt) / n,
        "user_ms_per_frame": (r1.ru_utime - r0.ru_utime) * 1e3 / n,
        "sys_ms_per_frame": (r1.ru_stime - r0.ru_stime) * 1e3 / n,
    }
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    sys.exit(main())
