"""A typed client of the sandbox's control API, for tests, the demo and the benchmark."""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Any

import requests

from sandbox.faults import COMMIT_MODES, FaultMode


class SandboxClient:
    """Talks to `{base_url}/_sandbox`; raises requests.HTTPError when the sandbox refuses a call."""

    def __init__(self, base_url: str, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()

    def _call(self, method: str, path: str, json: dict[str, Any] | None = None) -> Any:
        response = self.session.request(
            method, f"{self.base_url}/_sandbox{path}", json=json, timeout=self.timeout
        )
        response.raise_for_status()
        return response.json()

    def convert_lead(self, external_id: str, *, mapped_fields: Sequence[str] = ()) -> dict[str, str]:
        """Convert a Salesforce Lead (by ENNU_User_Id__c) as staff would: its new Contact's and Account's
        ids. `mapped_fields`: the custom Lead fields the org maps to the Contact's."""
        response = self.session.post(
            f"{self.base_url}/salesforce/_sandbox/convert-lead",
            json={"external_id": external_id, "mapped_fields": list(mapped_fields)},
            timeout=self.timeout,
        )
        response.raise_for_status()
        result: dict[str, str] = response.json()
        return result

    def health(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/health")
        return result

    def reset(self) -> None:
        """Forget every request, body and object; heal faults; limits back to the configured ones."""
        self._call("POST", "/reset")

    def requests(self, vendor: str) -> list[dict[str, Any]]:
        """The vendor-API requests received, oldest first: method, path, query, status, at, fault.

        A request whose fault is a commit mode (`stored_but_unanswered`) was carried out with `status`, but
        its client never had that answer (or, commit_then_late, had it only after the delay).
        """
        result: list[dict[str, Any]] = self._call("GET", f"/{vendor}/requests")
        return result

    def stored_but_unanswered(self, vendor: str) -> list[dict[str, Any]]:
        """The requests the stand-in carried out while a commit fault kept the answer from the client."""
        return [r for r in self.requests(vendor) if r["fault"] in COMMIT_MODES]

    def request_count(self, vendor: str, path_contains: str | None = None) -> int:
        return sum(1 for r in self.requests(vendor) if path_contains is None or path_contains in r["path"])

    def bodies(self, vendor: str) -> list[dict[str, Any]]:
        """The request bodies kept in memory (the newest, up to the configured number): method, path, body."""
        result: list[dict[str, Any]] = self._call("GET", f"/{vendor}/bodies")
        return result

    def holdings(self, vendor: str) -> dict[str, list[Any]]:
        """Everything the stand-in stores for `vendor`, by kind."""
        result: dict[str, list[Any]] = self._call("GET", f"/{vendor}/objects")
        return result

    def objects(self, vendor: str, kind: str) -> list[dict[str, Any]]:
        """What the stand-in stores, e.g. ("hubspot", "contacts") or ("mailchimp", "members")."""
        result: list[dict[str, Any]] = self._call("GET", f"/{vendor}/objects/{kind}")
        return result

    def fail(
        self,
        vendor: str,
        mode: FaultMode,
        status: int = 503,
        seconds: float | None = None,
        count: int | None = None,
        delay: float | None = None,
    ) -> None:
        """Misbehave for `seconds`, for the next `count` requests, or until `heal`.

        status: answer `status` in the vendor's error shape; timeout: wait `delay` (30 s) or until the
        client leaves, then drop the connection unanswered; slow: wait `delay` (1 s) or until `heal`, then
        answer normally; reset: drop the connection (TCP RST) without an answer. The commit modes carry the
        request out and store it first: commit_then_reset then drops the connection (RST) instead of
        answering; commit_then_late answers after `delay` (30 s), or never if the client leaves first.
        """
        body = {"mode": mode, "status": status, "seconds": seconds, "count": count, "delay": delay}
        self._call("POST", f"/{vendor}/faults", body)

    def heal(self, vendor: str) -> None:
        self._call("DELETE", f"/{vendor}/faults")

    def set_rate(
        self,
        vendor: str,
        per_second: float | None,
        retry_after: int = 1,
        concurrent: int | None = None,
        window: tuple[int, float] | None = None,
    ) -> None:
        """Above `per_second` requests (or `window`'s (requests, seconds) in any such window, or `concurrent`
        at once) answer the vendor's 429; None lifts it."""
        body: dict[str, Any] = {"per_second": per_second, "retry_after": retry_after}
        body["concurrent"] = concurrent
        if window is not None:
            body.update(requests=window[0], window_seconds=window[1])
        self._call("POST", f"/{vendor}/rate", body)

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> SandboxClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()
