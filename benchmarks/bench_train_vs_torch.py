"""Train-step images/s of the classic MNIST network: accelbench's NumPy/CuPy layers vs PyTorch, side by side.

    PYTHONPATH=. python benchmarks/bench_train_vs_torch.py                    # CPU: NumPy vs torch (CPU)
    PYTHONPATH=. python benchmarks/bench_train_vs_torch.py --device gpu --out gpu.json
                                                  # GPU: CuPy eager, CuPy CUDA graph, torch (CUDA)

Both sides train the same network (conv32-conv64-conv64 3x3 same + ReLU, maxpool 2, dense 64, dense 10,
softmax cross-entropy, SGD with momentum 0.9) from the same initial weights on the same synthetic batch;
the first step's losses are compared to show they compute the same thing. Rounds alternate between the
frameworks so drift on a shared machine hits both alike; the verdict uses the median of per-round
ratios. CPU target (issue 3): NumPy >= 60% of torch's images/s at batch 64 and 256.

PyTorch is an optional benchmark dependency: ``pip install torch``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from accelbench.models.network import CudaGraph, Network, one_hot  # noqa: E402
from accelbench.models.spec import classic_mnist  # noqa: E402

TARGET_CPU_RATIO = 0.60
LR, MOMENTUM = 0.01, 0.9


def torch_net(net: Network, torch: Any, device: str) -> tuple[Any, Any, Any]:
    """The same architecture in PyTorch, initialised with ``net``'s weights."""
    nn = torch.nn
    model = nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
        nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(12544, 64), nn.ReLU(), nn.Linear(64, 10),
    )
    weights = net.get_weights()
    tparams = list(model.parameters())
    assert len(tparams) == len(weights)
    with torch.no_grad():
        for tp, w in zip(tparams, weights, strict=True):
            w = np.asarray(w, dtype=np.float32)
            if tp.ndim == 2:  # Linear stores (out, in); accelbench's dense stores (in, out)
                w = w.T
            tp.copy_(torch.from_numpy(np.ascontiguousarray(w)))
    model = model.to(device)
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    return model, opt, nn.CrossEntropyLoss()


def time_steps(step: Any, sync: Any, min_time_s: float) -> tuple[float, int]:
    """Seconds per step over a block of steps lasting at least ``min_time_s`` (after one warm-up step)."""
    step()
    sync()
    n = 0
    t0 = time.perf_counter()
    while True:
        step()
        n += 1
        if n >= 2 and time.perf_counter() - t0 >= min_time_s:
            sync()
            dt = time.perf_counter() - t0
            if dt >= min_time_s:
                return dt / n, n


def bench(device: str, batches: list[int], rounds: int, min_time_s: float, torch_threads: int | None,
          tf32: bool = False) -> dict[str, Any]:
    import torch

    if torch_threads:
        torch.set_num_threads(torch_threads)
    # like for like: accelbench's float32 is full fp32 (CuPy's default compute type), while PyTorch lets
    # cuDNN convolutions use TF32 tensor cores by default; --tf32 allows it on the torch side
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    spec = classic_mnist()
    rng = np.random.default_rng(0)
    results: dict[str, Any] = {"device": device, "batches": {}, "torch": torch.__version__,
                               "numpy": np.__version__, "torch_threads": torch.get_num_threads(),
                               "machine": platform.processor() or platform.machine(),
                               "cpu_count": os.cpu_count(), "torch_tf32": tf32}
    if device == "gpu":
        import cupy as cp

        xp: Any = cp
        tdev = "cuda"
        results["cupy"] = cp.__version__
        props = cp.cuda.runtime.getDeviceProperties(0)
        results["gpu"] = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])

        def sync() -> None:
            cp.cuda.get_current_stream().synchronize()
            torch.cuda.synchronize()
    else:
        xp = np
        tdev = "cpu"

        def sync() -> None:
            pass

    for b in batches:
        results["batches"][str(b)] = _one_batch(b, spec, rng, xp, tdev, torch, sync, device, rounds,
                                                min_time_s)
    return results


def _one_batch(b: int, spec: Any, rng: np.random.Generator, xp: Any, tdev: str, torch: Any, sync: Any,
               device: str, rounds: int, min_time_s: float) -> dict[str, Any]:
    x = rng.standard_normal((b, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, b)
    net = Network(spec, xp, "float32", seed=0)
    net.set_optimizer("sgd", LR, MOMENTUM)
    model, opt, lossf = torch_net(net, torch, tdev)
    xd, ohd = xp.asarray(x), xp.asarray(one_hot(y, 10))
    tx, ty = torch.from_numpy(x).to(tdev), torch.from_numpy(y).to(tdev)

    # sanity: identical first-step losses (same weights, same batch)
    ours_loss = float(net.forward_backward(xd, ohd))
    theirs_loss = float(lossf(model(tx), ty).detach())

    def torch_step() -> None:
        opt.zero_grad(set_to_none=True)
        loss = lossf(model(tx), ty)
        loss.backward()
        opt.step()

    def ours_step() -> None:
        net.train_step(xd, ohd)

    contenders: dict[str, Any] = {"accelbench": ours_step, "torch": torch_step}
    graph_error = None
    if device == "gpu":
        try:
            graph = CudaGraph(xp, ours_step)
            contenders = {"accelbench": ours_step, "accelbench-graph": graph.launch, "torch": torch_step}
        except Exception as e:  # report it and still compare the eager step
            graph_error = f"{type(e).__name__}: {e}"
            print(f"batch {b}: CUDA graph capture failed: {graph_error}", flush=True)
    per: dict[str, list[float]] = {k: [] for k in contenders}
    for _ in range(rounds):
        for name, fn in contenders.items():
            dt, _n = time_steps(fn, sync, min_time_s)
            per[name].append(b / dt)
    ratios = {name: statistics.median(a / t for a, t in zip(per[name], per["torch"], strict=True))
              for name in contenders if name != "torch"}
    out = {
        "images_per_s": {k: statistics.median(v) for k, v in per.items()},
        "rounds_images_per_s": per,
        "ratio_vs_torch": ratios,
        "first_step_loss": {"accelbench": ours_loss, "torch": theirs_loss},
    }
    if graph_error:
        out["graph_error"] = graph_error
    print(f"batch {b}: " + ", ".join(f"{k} {statistics.median(v):,.1f} img/s" for k, v in per.items())
          + "; " + ", ".join(f"{k}/torch {r:.2f}" for k, r in ratios.items()), flush=True)
    return out


def table(res: dict[str, Any]) -> str:
    rows = []
    names = None
    for b, r in res["batches"].items():
        ips = r["images_per_s"]
        names = names or list(ips)
        rows.append([b] + [f"{ips[n]:,.1f}" for n in names] +
                    [f"{r['ratio_vs_torch'][n]:.2f}" for n in names if n != "torch"])
    head = ["batch"] + [f"{n} img/s" for n in names or []] + [f"{n}/torch" for n in (names or []) if n != "torch"]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(head, widths, strict=True))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    ap.add_argument("--batch", type=int, nargs="+", default=None,
                    help="batch sizes (default: 64 256 on cpu; 1 16 64 256 on gpu)")
    ap.add_argument("--rounds", type=int, default=3, help="alternating measurement rounds per batch")
    ap.add_argument("--min-time", type=float, default=2.0, help="seconds per measurement block")
    ap.add_argument("--torch-threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    ap.add_argument("--tf32", action="store_true", help="let torch use TF32 for float32 convs/matmuls (its cuDNN "
                    "default); accelbench's float32 stays full fp32")
    ap.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    a = ap.parse_args()
    try:
        import torch  # noqa: F401
    except ImportError:
        print("PyTorch is not installed (pip install torch); it is only needed for this benchmark", file=sys.stderr)
        return 2
    batches = a.batch or ([64, 256] if a.device == "cpu" else [1, 16, 64, 256])
    res = bench(a.device, batches, a.rounds, a.min_time, a.torch_threads, a.tf32)
    ok = True
    if a.device == "cpu":
        worst = min(r["ratio_vs_torch"]["accelbench"] for r in res["batches"].values())
        ok = worst >= TARGET_CPU_RATIO
        res["target_ratio"] = TARGET_CPU_RATIO
        res["meets_target"] = ok
    print()
    print(table(res))
    if a.device == "cpu":
        print(f"target: NumPy >= {TARGET_CPU_RATIO:.0%} of torch's images/s -> {'met' if ok else 'NOT met'}")
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(res, indent=2))
        print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
