"""Serving: a batching FastAPI server with metrics, API keys, a prediction log, hot swap and ONNX export.

See docs/serve.md. Entry points: `trainwise.serve.app.build_app(runtime, settings)`,
`trainwise.serve.runtime.load_runtime(ref, precision)`, `trainwise.serve.export.export_onnx(ref, out)`,
`trainwise.serve.quality.precision_change(run_dir, precision)`, `trainwise.serve.predlog.read_prediction_log(dir)`.
"""
