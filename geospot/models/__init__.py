"""Qwen-VL models: loading (load.py), the image-only processor (processor.py), tiny offline
models (tiny.py) and the `geospot model` CLI (cli.py)."""
