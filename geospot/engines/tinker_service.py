"""What the Tinker service serves, what its errors mean to a user, and calling it with a time limit."""

from __future__ import annotations

import os
import re
import socket
import threading
from collections.abc import Callable
from typing import Any

from geospot.config import ConfigError
from geospot.engines.config import EngineConfig
from geospot.engines.tinker_convert import GeospotTinkerError, _tinker

VISION_NAME = re.compile(r"(?:^|[-_/])VL(?:[-_.]|$)", re.IGNORECASE)


def is_vision_model(name: str) -> bool:
    """Qwen-VL style names (`Qwen/Qwen3-VL-30B-A3B-Instruct`): our renderer speaks Qwen-VL."""
    return bool(VISION_NAME.search(name))


def model_size_b(name: str) -> float:
    """Total parameters in billions from a hub name (`...-30B-A3B-...` -> 30); inf if absent."""
    m = re.search(r"(\d+(?:\.\d+)?)B(?![a-z])", name.split("/")[-1], re.IGNORECASE)
    return float(m.group(1)) if m else float("inf")


def served_vision_models(capabilities) -> list[str]:
    """Vision models the service can train, smallest first."""
    names = [
        m.model_name
        for m in capabilities.supported_models
        if m.model_name and is_vision_model(m.model_name) and m.trainable is not False
    ]
    return sorted(names, key=lambda n: (model_size_b(n), n))


def check_model(model_name: str, capabilities) -> None:
    vision = served_vision_models(capabilities)
    if model_name in vision:
        return
    served = [m.model_name for m in capabilities.supported_models if m.model_name]
    what = "is not a vision model" if model_name in served else "is not served"
    raise ConfigError(
        f"model_name={model_name!r} {what} on Tinker; vision models it serves: "
        f"{', '.join(vision) if vision else '(none)'} — pick one, or use engine=local"
    )


def describe_service_error(e: BaseException, base_url: str) -> str | None:
    """One sentence for the failures a user can fix; None for the rest (re-raised as is)."""
    tinker = _tinker()
    status = getattr(e, "status_code", None)
    if isinstance(e, (tinker.AuthenticationError, tinker.PermissionDeniedError)) or status in (401, 403):
        return (
            f"the Tinker service rejected the API key (HTTP {status or 401}): check TINKER_API_KEY, or create a "
            "new key in the Tinker console"
        )
    if isinstance(
        e, (tinker.APIConnectionError, tinker.APITimeoutError, TimeoutError, ConnectionError, socket.gaierror)
    ):
        return (
            f"cannot reach the Tinker service at {base_url} ({type(e).__name__}): check the network "
            "connection, or set tinker_base_url / TINKER_BASE_URL if you use another endpoint"
        )
    if isinstance(e, tinker.TinkerError) and "api_key" in str(e):
        return f"the Tinker SDK refused the API key: {e}"
    return None


def _with_timeout(fn: Callable[[], Any], timeout_s: float, what: str) -> Any:
    """Run fn in a daemon thread: the SDK retries connection errors for a long time, and a
    start-up check must fail in seconds, not hang the run."""
    box: dict[str, Any] = {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed to the caller
            box["error"] = e

    t = threading.Thread(target=run, name=f"tinker-{what}", daemon=True)
    t.start()
    t.join(timeout_s)
    if t.is_alive():
        raise TimeoutError(f"{what} took more than {timeout_s:.0f} s")
    if "error" in box:
        raise box["error"]
    return box.get("value")


def _base_url(cfg: EngineConfig) -> str:
    return cfg.tinker_base_url or os.environ.get("TINKER_BASE_URL") or "the default Tinker endpoint"


def _service_call(fn: Callable[[], Any], what: str, base_url: str, timeout_s: float | None = None) -> Any:
    """fn() (in a thread with a deadline when timeout_s is set); a failure the user can fix
    becomes a GeospotTinkerError saying `what` failed and why, anything else is re-raised as is."""
    try:
        return fn() if timeout_s is None else _with_timeout(fn, timeout_s, what)
    except GeospotTinkerError:
        raise
    except BaseException as e:
        msg = describe_service_error(e, base_url)
        if msg is None:
            raise
        raise GeospotTinkerError(f"{what}: {msg}") from e
