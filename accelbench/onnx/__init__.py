"""Run ONNX models with accelbench's own NumPy/CuPy operators (see docs/onnx.md).

``importer`` loads and refuses, ``planner`` plans, ``executor`` runs, ``backend`` is the
``onnx.backend.base.Backend`` for onnx's own conformance tests, ``workload`` the ``onnx`` workload,
``zoo`` writes seeded classic CNNs, ``inspect`` and ``profile`` serve the CLI.
"""
