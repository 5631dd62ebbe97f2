"""Workloads: the contract and registry live in ``base``; built-in families are ``blas`` (gemm,
batched_gemm), ``conv`` (conv2d), ``elementwise`` (triad, reduction, softmax) and ``memory``
(memcpy_d2d, memcpy_h2d, memcpy_d2h). ``base.load_all()`` imports them on demand, so importing this
package stays cheap."""
