"""Eval, predict, export: what people do with a trained model.

`evaluate(engine, samples, ...) -> EvalResult(metrics, predictions)` is the one entry point
the training loops call; `geospot eval|predict|export` live in `geospot.eval.cli`,
`geospot.eval.predict_cli` and `geospot.eval.export`."""

from geospot.eval.runner import EvalResult, Prediction, evaluate, medoid, metrics_for, predict, resolve_sampling

__all__ = ["EvalResult", "Prediction", "evaluate", "medoid", "metrics_for", "predict", "resolve_sampling"]
