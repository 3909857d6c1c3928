#!/usr/bin/env python3
"""Checks amdistill's ONNX models with onnxruntime (from PyPI) against amdistill's own forward.

    python3 -m venv /tmp/ortvenv && /tmp/ortvenv/bin/pip install onnxruntime numpy
    AMDISTILL_ONNX_DIR=/tmp/onnx_ref cargo test --release --test onnx -- --ignored write_ort_reference
    /tmp/ortvenv/bin/python scripts/check_onnx_ort.py /tmp/onnx_ref [BUNDLE_DIR ...]

The cargo test writes, per architecture (TDNN-F, DNN with layer norm, BLSTM), model.onnx and
model.int8.onnx, an input [1, T, F] and amdistill's outputs as raw float32; this script runs
both models in onnxruntime and prints the largest absolute difference:

  fp32:  must be < 1e-4 (same arithmetic, different summation order);
  int8:  compared with amdistill's int8 runtime (activations quantised per frame, as the
         graph says); near-tie roundings may flip, so the bound is 2e-3 + 2% of the peak.

Bundle directories given after the reference folder are loaded too: each model*.onnx is run
on random features and its metadata (the fbank configuration) is printed.
Exit status 1 if any check fails.
"""
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort


def run(path, x):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return sess.run(None, {name: x})[0], sess


def check_reference(ref):
    ok = True
    for line in (ref / "shapes.txt").read_text().split("\n"):
        if not line.strip():
            continue
        tag, t, f, to, s = line.split()
        t, f, to, s = int(t), int(f), int(to), int(s)
        x = np.fromfile(ref / f"{tag}.input.f32", dtype="<f4").reshape(1, t, f)
        for kind, model, want_file in [
            ("fp32", f"{tag}.onnx", f"{tag}.output.f32"),
            ("int8", f"{tag}.int8.onnx", f"{tag}.int8.exact.output.f32"),
        ]:
            want = np.fromfile(ref / want_file, dtype="<f4").reshape(to, s)
            got, _ = run(ref / model, x)
            got = got.reshape(-1, s)
            if got.shape != want.shape:
                print(f"FAIL {model}: output {got.shape}, amdistill {want.shape}")
                ok = False
                continue
            diff = float(np.abs(got - want).max())
            bound = 1e-4 if kind == "fp32" else 2e-3 + 0.02 * float(np.abs(want).max())
            verdict = "ok" if diff < bound else "FAIL"
            ok &= diff < bound
            print(f"{verdict:4} {model:22} {to} frames x {s} senones  max |ort - amdistill| = {diff:.2e} (bound {bound:.1e})")
    return ok


def check_bundle(bundle):
    ok = True
    for model in sorted(bundle.glob("model*.onnx")):
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        sess = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
        inp = sess.get_inputs()[0]
        f = inp.shape[-1]
        x = np.random.default_rng(0).standard_normal((2, 60, f)).astype(np.float32) * 3 + 10
        y = sess.run(None, {inp.name: x})[0]
        meta = sess.get_modelmeta().custom_metadata_map
        # Valid convolution: the model's left and right context frames are not output.
        ctx = int(meta.get("amdistill.left_context", 0)) + int(meta.get("amdistill.right_context", 0))
        lse = np.log(np.exp(y.astype(np.float64)).sum(-1))
        good = y.shape[:2] == (2, 60 - ctx) and np.isfinite(y).all() and np.abs(lse).max() < 1e-3
        ok &= bool(good)
        print(f"{'ok' if good else 'FAIL':4} {model}: [2, 60, {f}] -> {list(y.shape)} (context {ctx}), "
              f"posteriors sum to 1 (max |logsumexp| {np.abs(lse).max():.1e})")
        print(f"     {meta.get('amdistill.model', '?')}; fbank: {meta.get('amdistill.fbank_conf', '(none)')!r}")
    return ok


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    ok = check_reference(Path(sys.argv[1]))
    for b in sys.argv[2:]:
        ok &= check_bundle(Path(b))
    print(f"onnxruntime {ort.__version__}: {'all checks passed' if ok else 'SOME CHECKS FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
