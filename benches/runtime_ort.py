#!/usr/bin/env python3
"""onnxruntime on amdistill's own ONNX export of the peers' student, the rows of benches/runtime.rs.

    cargo bench --bench runtime -- --onnx-dir /tmp/ortbench      # writes student*.onnx
    /tmp/ortvenv/bin/python benches/runtime_ort.py /tmp/ortbench [--seconds 8]

The model reads raw fbank frames [1, T, 80] and splices +/-5 frames inside, so one output
frame (the streaming row) is a call on 11 frames and a batch of 512 is a call on 522. Best of
4 windows, 1 thread (intra_op_num_threads=1) and, for the batch, 2 threads.
"""
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort


def session(path, threads):
    o = ort.SessionOptions()
    o.intra_op_num_threads = threads
    o.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), o, providers=["CPUExecutionProvider"])


def best_rate(seconds, units, step):
    for _ in range(3):
        step()
    best = 0.0
    for _ in range(4):
        start, n = time.perf_counter(), 0
        while time.perf_counter() - start < seconds / 4:
            step()
            n += 1
        best = max(best, n * units / (time.perf_counter() - start))
    return best


def main():
    d = Path(sys.argv[1])
    seconds = float(sys.argv[sys.argv.index("--seconds") + 1]) if "--seconds" in sys.argv else 8.0
    rng = np.random.default_rng(0)
    print(f"onnxruntime {ort.__version__}, best of 4 x {seconds / 4:.1f} s")
    print("| row | ort fp32 | ort int8 |")
    print("|---|---|---|")
    for name, frames, threads in [("streaming, 1 frame per call", 1, 1), ("batch 512", 512, 1), ("batch 512", 512, 2)]:
        cells = []
        for model in ["student.onnx", "student.int8.onnx"]:
            s = session(d / model, threads)
            inp = s.get_inputs()[0].name
            x = rng.standard_normal((1, frames + 10, 80)).astype(np.float32)
            cells.append(best_rate(seconds, frames, lambda: s.run(None, {inp: x})))
        print(f"| {name}, {threads} thread{'s' if threads > 1 else ''} | {cells[0]:.0f} frames/s | {cells[1]:.0f} frames/s |")


if __name__ == "__main__":
    main()
