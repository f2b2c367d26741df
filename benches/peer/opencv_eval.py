"""OpenCV's own pipeline (FaceDetectorYN + FaceRecognizerSF.alignCrop/feature) on the same photos and models, for
comparison with `facegate eval`. Embeddings stay in memory. Prints EER and FNMR at FMR 1e-3/1e-4/1e-5 over all
pairs of the `person_*` photos, or over the rows of a pairs file.

    python3 benches/peer/opencv_eval.py --faces ../shared/faces [--pairs FILE --protocol lfw] [--score 0.9]
"""
import argparse
import csv
import glob
import os
import tempfile

import cv2
import numpy as np

import models


def metrics(gen, imp):
    gen, imp = np.sort(gen), np.sort(imp)
    out = {}
    for t in (1e-3, 1e-4, 1e-5):
        k = int(np.floor(t * len(imp)))
        thr = np.nextafter(imp[len(imp) - 1 - k], np.float32(np.inf)) if k < len(imp) else -np.inf
        out[t] = (float((gen < thr).mean()), float(thr))
    ts = np.unique(np.concatenate([gen, imp]))
    fnmr = np.searchsorted(gen, ts, side="left") / len(gen)
    fmr = 1 - np.searchsorted(imp, ts, side="left") / len(imp)
    i = np.argmin(np.abs(fnmr - fmr))
    acc = ((len(gen) - np.searchsorted(gen, ts, "left")) + np.searchsorted(imp, ts, "left")) / (len(gen) + len(imp))
    return (fnmr[i] + fmr[i]) / 2, acc.max(), out


def load(tmp, score):
    """OpenCV's detector and recogniser on facegate's models. OpenCV's loaders take paths: the load-time-fixed
    SFace goes through the private temporary folder `tmp`; YuNet is read as it is."""
    sface = os.path.join(tmp, "sface.onnx")
    with open(sface, "wb") as f:
        f.write(models.fixed_model_bytes(models.SFACE))
    det = cv2.FaceDetectorYN.create(models.YUNET, "", (320, 320), score, 0.3, 5000)
    rec = cv2.FaceRecognizerSF.create(sface, "")
    return det, rec


def embed(det, rec, img, pick):
    """The unit embedding of the first or largest face of a BGR image, or None."""
    det.setInputSize((img.shape[1], img.shape[0]))
    _, faces = det.detect(img)
    if faces is None:
        return None
    face = faces[0] if pick == "first" else faces[np.argmax(faces[:, 2] * faces[:, 3])]
    e = rec.feature(rec.alignCrop(img, face)).ravel()
    return e / np.linalg.norm(e)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--faces", required=True)
    ap.add_argument("--pairs")
    ap.add_argument("--protocol", default="")
    ap.add_argument("--score", type=float, default=0.9)
    ap.add_argument("--pick", choices=["first", "largest"], default="first")
    args = ap.parse_args()
    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory() as tmp:
        det, rec = load(tmp, args.score)
    if args.pairs:
        rows = [r for r in csv.DictReader(open(args.pairs)) if r["protocol"].startswith(args.protocol)]
        files = sorted({r["path_a"] for r in rows} | {r["path_b"] for r in rows})
    else:
        files = sorted(os.path.relpath(p, args.faces) for p in glob.glob(os.path.join(args.faces, "person_*", "*")))
    emb, detected = {}, 0
    for rel in files:
        img = cv2.imread(os.path.join(args.faces, rel))
        e = None if img is None else embed(det, rec, img, args.pick)
        if e is not None:
            emb[rel] = e
            detected += 1
    def score(a, b):
        return float(emb[a] @ emb[b]) if a in emb and b in emb else -1.0
    gen, imp = [], []
    if args.pairs:
        for r in rows:
            (gen if r["same"] == "1" else imp).append(score(r["path_a"], r["path_b"]))
    else:
        ids = [f.split(os.sep)[0] for f in files]
        m = np.stack([emb.get(f, np.zeros(128, np.float32)) for f in files])
        ok = np.array([f in emb for f in files])
        s = m @ m.T
        s[~ok, :] = -1
        s[:, ~ok] = -1
        iu = np.triu_indices(len(files), 1)
        same = np.array(ids)[iu[0]] == np.array(ids)[iu[1]]
        gen, imp = s[iu][same], s[iu][~same]
    eer, acc, points = metrics(np.array(gen, np.float32), np.array(imp, np.float32))
    print(f"opencv {cv2.__version__}: images {len(files)} detected {detected} genuine {len(gen)} impostor {len(imp)}")
    print(f"EER {100 * eer:.3f} %  accuracy {100 * acc:.3f} %")
    for t, (fnmr, thr) in points.items():
        print(f"FNMR @ FMR {t:.0e}: {100 * fnmr:.3f} % (threshold {thr:.3f})")


if __name__ == "__main__":
    main()
