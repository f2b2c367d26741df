"""Load facegate's ONNX models for the peers (onnxruntime, OpenCV) with the same load-time fixes tract needs.

onnxruntime rejects two things in the OpenCV Zoo int8bq files: a `block_size` attribute on per-tensor
DequantizeLinear nodes (YuNet's biases), and graph inputs that no node reads (SFace). Both are fixed on the
protobuf in memory; nothing is written to disk.
"""
import os

import onnx
import onnxruntime as ort

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS = os.environ.get("FACEGATE_MODELS", os.path.join(HERE, "..", "..", "models"))
YUNET = os.path.join(MODELS, "face_detection_yunet_2023mar_int8bq.onnx")
SFACE = os.path.join(MODELS, "face_recognition_sface_2021dec_int8bq.onnx")
# The liveness pair (Silent-Face-Anti-Spoofing, fp32), crop 2.7x and 4.0x the face box.
MINIFAS = [os.path.join(MODELS, "pad", "2.7_80x80_MiniFASNetV2.onnx"),
           os.path.join(MODELS, "pad", "4_0_0_80x80_MiniFASNetV1SE.onnx")]


def fixed_model_bytes(path):
    model = onnx.load(path)
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    for node in graph.node:
        if node.op_type != "DequantizeLinear" or len(node.input) < 2:
            continue
        scale = inits.get(node.input[1])
        if scale is not None and len(scale.dims) <= 1 and (not scale.dims or scale.dims[0] == 1):
            keep = [a for a in node.attribute if a.name != "block_size"]
            del node.attribute[:]
            node.attribute.extend(keep)
    # YuNet declares 640x640 everywhere; the graph itself is size-agnostic, so free the spatial dims.
    for inp in graph.input:
        dims = inp.type.tensor_type.shape.dim
        if len(dims) == 4 and dims[2].dim_value == 640:
            dims[2].dim_param, dims[3].dim_param = "H", "W"
    if any(o.name.startswith("cls_") for o in graph.output):
        del graph.value_info[:]
        for out in graph.output:
            out.type.tensor_type.ClearField("shape")
    used = {i for n in graph.node for i in n.input}
    keep_inputs = [i for i in graph.input if i.name in used]
    del graph.input[:]
    graph.input.extend(keep_inputs)
    return model.SerializeToString()


def folded_model_bytes(path, keep_shapes=False):
    """The model with every weight-only `DequantizeLinear` folded into an fp32 initializer, as facegate loads it
    (`../shared/models/README.md`): y = (x - zero_point) * scale, with the scale per tensor, per axis or per block
    along `axis`. The peers then run the same fp32 numbers facegate runs, as a user choosing speed would.
    `keep_shapes` keeps the file's declared shapes (OpenCV 5's importer wants them; onnxruntime wants them freed)."""
    import numpy as np
    from onnx import numpy_helper

    model = onnx.ModelProto()
    model.ParseFromString(open(path, "rb").read() if keep_shapes else fixed_model_bytes(path))
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    folded, keep = {}, []
    for node in graph.node:
        if node.op_type != "DequantizeLinear" or not all(i in inits for i in node.input if i):
            keep.append(node)
            continue
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        x = numpy_helper.to_array(inits[node.input[0]]).astype(np.float32)
        scale = numpy_helper.to_array(inits[node.input[1]]).astype(np.float32)
        zero = numpy_helper.to_array(inits[node.input[2]]).astype(np.float32) if len(node.input) > 2 and node.input[2] else 0.0
        axis = attrs.get("axis", 1) % max(x.ndim, 1)
        block = attrs.get("block_size", 0)
        if scale.size == 1:
            scale, zero = scale.reshape(()), np.asarray(zero).reshape(()) if np.size(zero) == 1 else zero
        elif block and scale.ndim == x.ndim:
            scale = np.repeat(scale, block, axis=axis).take(range(x.shape[axis]), axis=axis)
            if np.size(zero) > 1:
                zero = np.repeat(zero, block, axis=axis).take(range(x.shape[axis]), axis=axis)
        else:
            shape = [1] * x.ndim
            shape[axis] = -1
            scale = scale.reshape(shape)
            if np.size(zero) > 1:
                zero = np.asarray(zero).reshape(shape)
        folded[node.output[0]] = numpy_helper.from_array(((x - zero) * scale).astype(np.float32), node.output[0])
    del graph.node[:]
    graph.node.extend(keep)
    used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    initializers = [t for t in graph.initializer if t.name in used] + list(folded.values())
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    # Graph inputs no node reads (SFace's stale weight names, and the folded weights) are dropped.
    inputs = [i for i in graph.input if i.name in used and i.name not in folded]
    del graph.input[:]
    graph.input.extend(inputs)
    return model.SerializeToString()


def session(path, threads=1):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(fixed_model_bytes(path), opts, providers=["CPUExecutionProvider"])


def largest_yunet_face(out, padded, scale, threshold=0.8, nms_iou=0.3):
    """The largest face from YuNet's twelve named outputs for a padded input (height, width), decoded as OpenCV's
    FaceDetectorYN does (vectorised numpy, as a Python user would write it), in frame pixels for a working `scale`:
    [x, y, w, h, 10 landmark coordinates, score], or None."""
    import cv2
    import numpy as np

    ph, pw = padded
    boxes, scores, kps = [], [], []
    for s in (8, 16, 32):
        cols = pw // s
        score = np.sqrt(np.clip(out[f"cls_{s}"][0, :, 0], 0, 1) * np.clip(out[f"obj_{s}"][0, :, 0], 0, 1))
        keep = np.nonzero(score >= threshold)[0]
        if keep.size == 0:
            continue
        r, c = keep // cols, keep % cols
        b = out[f"bbox_{s}"][0, keep]
        cx, cy = (c + b[:, 0]) * s, (r + b[:, 1]) * s
        w, h = np.exp(b[:, 2]) * s, np.exp(b[:, 3]) * s
        boxes.append(np.stack([cx - w / 2, cy - h / 2, w, h], 1))
        k = out[f"kps_{s}"][0, keep].reshape(-1, 5, 2)
        kps.append(((k + np.stack([c, r], 1)[:, None, :]) * s).reshape(-1, 10))
        scores.append(score[keep])
    if not boxes:
        return None
    boxes, scores, kps = np.concatenate(boxes), np.concatenate(scores), np.concatenate(kps)
    idx = np.array(cv2.dnn.NMSBoxes(boxes.tolist(), scores.tolist(), threshold, nms_iou)).ravel()
    best = idx[np.argmax(boxes[idx, 2] * boxes[idx, 3])]
    face = np.concatenate([boxes[best], kps[best], [scores[best]]]).astype(np.float32)
    face[:14] /= scale
    return face
