"""A small client of the sandbox's control API, for tests, the demo and the benchmark."""

from __future__ import annotations

from typing import Any

import requests


class SandboxClient:
    def __init__(self, base_url: str, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.session = requests.Session()
        self.timeout = timeout

    def _call(self, method: str, path: str, json: Any = None) -> Any:
        response = self.session.request(
            method, f"{self.base_url}/_sandbox{path}", json=json, timeout=self.timeout
        )
        response.raise_for_status()
        return response.json()

    def reset(self) -> None:
        self._call("POST", "/reset")

    def requests(self, vendor: str) -> list[dict[str, Any]]:
        """Every vendor-API request received: method, path, query, status, at."""
        result: list[dict[str, Any]] = self._call("GET", f"/{vendor}/requests")
        return result

    def request_count(self, vendor: str, path_contains: str | None = None) -> int:
        return sum(1 for r in self.requests(vendor) if path_contains is None or path_contains in r["path"])

    def objects(self, vendor: str, kind: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", f"/{vendor}/objects/{kind}")
        return result

    def fail(
        self,
        vendor: str,
        mode: str,
        status: int = 503,
        seconds: float | None = None,
        count: int | None = None,
        delay: float | None = None,
    ) -> None:
        """Misbehave (status, timeout, slow or reset) for `seconds`, for `count` requests, or until healed."""
        self._call(
            "POST",
            f"/{vendor}/faults",
            {"mode": mode, "status": status, "seconds": seconds, "count": count, "delay": delay},
        )

    def heal(self, vendor: str) -> None:
        self._call("DELETE", f"/{vendor}/faults")

    def set_rate(self, vendor: str, per_second: float | None, retry_after: int = 1) -> None:
        """Answer 429 with Retry-After above `per_second` requests; None lifts the limit."""
        self._call("POST", f"/{vendor}/rate", {"per_second": per_second, "retry_after": retry_after})
