"""``accelbench profile model.onnx``: time per node and per op type on each backend and engine.

accelbench: the executor synchronises after each step and times it (serialising the device, so the sum
exceeds an unprofiled run on the GPU). onnxruntime: its own profiler's per-kernel times (a JSON trace
written to a temporary folder and removed).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from .. import backends
from .executor import Executor
from .importer import q, validate
from .planner import plan
from .workload import input_shape, loaded, ort_reason, ort_session, seeded_inputs


def _accelbench(path: Path, be: Any, batch: int, repeats: int, fold: bool) -> dict[str, Any]:
    lm = loaded(str(path))
    pl = plan(lm, fold_batchnorm=fold, input_shapes=input_shape(lm, batch))
    ex = Executor(pl, be.xp)
    feeds = ex.prepare_inputs(seeded_inputs(lm, input_shape(lm, batch), 0))
    ex.run(feeds)
    be.synchronize()
    per: dict[str, dict[str, Any]] = {}

    def hook(st: Any, dt: float) -> None:
        r = per.setdefault(st.name or f"#{st.index}", {"node": st.name or f"#{st.index}", "op": st.op_type,
                                                       "fused": list(st.fused), "flops": st.work.flops,
                                                       "times_s": []})
        r["times_s"].append(dt)

    t0 = time.perf_counter()
    for _ in range(repeats):
        ex.run(feeds, on_step=hook, sync=be.synchronize)
    total = (time.perf_counter() - t0) / repeats
    nodes = [{**{k: v for k, v in r.items() if k != "times_s"}, "time_s": float(np.median(r["times_s"]))}
             for r in per.values()]
    return {"total_s": total, "nodes": nodes}


def _onnxruntime(path: Path, be: Any, batch: int, repeats: int) -> dict[str, Any]:
    import onnxruntime as ort

    lm = loaded(str(path))
    feeds = seeded_inputs(lm, input_shape(lm, batch), 0)
    with tempfile.TemporaryDirectory(prefix="accelbench-ortprof-") as tmp:
        so = ort.SessionOptions()
        so.log_severity_level = 3
        so.enable_profiling = True
        so.profile_file_prefix = os.path.join(tmp, "ort")
        ref = ort_session(str(path))  # for the thread count and providers only
        so.intra_op_num_threads = ref.get_session_options().intra_op_num_threads
        prov = "CUDAExecutionProvider" if be.is_gpu else "CPUExecutionProvider"
        sess = ort.InferenceSession(str(path), so, providers=[prov])
        sess.run(None, feeds)
        t0 = time.perf_counter()
        for _ in range(repeats):
            sess.run(None, feeds)
        total = (time.perf_counter() - t0) / repeats
        trace = sess.end_profiling()
        with open(trace, encoding="utf-8") as f:
            events = json.load(f)
    per: dict[str, dict[str, Any]] = {}
    for e in events:
        if e.get("cat") != "Node" or not str(e.get("name", "")).endswith("_kernel_time"):
            continue
        name = str(e["name"])[: -len("_kernel_time")]
        r = per.setdefault(name, {"node": name, "op": e.get("args", {}).get("op_name", "?"), "times_s": []})
        r["times_s"].append(float(e.get("dur", 0)) * 1e-6)
    nodes = [{"node": r["node"], "op": r["op"], "time_s": float(np.median(r["times_s"][1:] or r["times_s"]))}
             for r in per.values()]
    return {"total_s": total, "nodes": nodes}


def profile_model(path: str | Path, backend: str = "all", batch: int = 16, repeats: int = 3,
                  fold_batchnorm: bool = False) -> dict[str, Any]:
    """{"results": {"<backend>/<engine>": {"total_s", "nodes": [...], "ops": {op: seconds}}}, "skipped": {...}}."""
    p = Path(path)
    lm = loaded(str(p))
    validate(lm)
    input_shape(lm, batch)  # a fixed-batch model refuses another batch here, before anything runs
    names = ["gpu", "cpu"] if backend == "all" else [backend]
    results: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    for b in names:
        be = backends.get(b)
        if not be.available:
            skipped[b] = be.reason
            continue
        results[f"{b}/accelbench"] = _accelbench(p, be, batch, repeats, fold_batchnorm)
        why = ort_reason(b)
        if why:
            skipped[f"{b}/onnxruntime"] = why
        else:
            results[f"{b}/onnxruntime"] = _onnxruntime(p, be, batch, repeats)
    for r in results.values():
        ops: dict[str, float] = {}
        for n in r["nodes"]:
            ops[n["op"]] = ops.get(n["op"], 0.0) + n["time_s"]
        r["ops"] = dict(sorted(ops.items(), key=lambda kv: -kv[1]))
    return {"file": str(path), "batch": batch, "results": results, "skipped": skipped}


def render(res: dict[str, Any], top: int = 15) -> Any:
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    parts: list[Any] = []
    keys = list(res["results"])
    ops = Table(title=f"{res['file']}: time per op type at batch {res['batch']} (ms)", title_justify="left")
    ops.add_column("op")
    for k in keys:
        ops.add_column(k, justify="right")
    all_ops: list[str] = []
    for k in keys:
        for op in res["results"][k]["ops"]:
            if op not in all_ops:
                all_ops.append(op)
    for op in all_ops:
        ops.add_row(Text(q(op)), *[f"{res['results'][k]['ops'].get(op, 0.0) * 1e3:.2f}" for k in keys])
    ops.add_row("whole run", *[f"{res['results'][k]['total_s'] * 1e3:.1f}" for k in keys])
    parts.append(ops)
    for k in keys:
        nodes = sorted(res["results"][k]["nodes"], key=lambda n: -n["time_s"])[:top]
        t = Table(title=f"{k}: slowest {len(nodes)} nodes", title_justify="left")
        for col in ("node", "op", "ms"):
            t.add_column(col, justify="right" if col == "ms" else "left")
        for n in nodes:
            t.add_row(Text(q(n["node"])), Text(q(n["op"]) + (" +" + "+".join(n.get("fused", [])) if n.get("fused") else "")),
                      f"{n['time_s'] * 1e3:.2f}")
        parts.append(t)
    return Group(*parts)
