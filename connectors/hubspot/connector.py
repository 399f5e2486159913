"""HubSpot CRM: contacts, companies and deals by CRM v3 batch upsert (100 a request), private-app token.

Deals carry the configured pipeline and stage ids: a mapping names a logical stage (`dealstage: open` or
`won`) and the connector puts HUBSPOT_DEAL_PIPELINE and HUBSPOT_DEAL_STAGE_OPEN / _WON on the wire. A
mapping field `associations.<object>.<id property>` is no property of the record: it names the record
to associate with (v4 default association), found by one batch read per batch. Fields `<object>.<property>`
(`companies.name`) describe that record: it is then upserted by the association key instead of read (a
contact's clinic company, created with its contact). A target this process already upserted with the same
properties, or read, is neither upserted nor read again (`connectors.hubspot.targets`). An association
keyed by one of our own ids (`ennu_company_id`) is exclusive: an updated record loses its links to other
records of ours of that type.
ENNU's own properties (`connectors.hubspot.properties`) are created by `ensure_properties()`: once per
instance, remembered across processes by a fingerprint in the hub's database. A push never pays for that
check: when HubSpot answers a batch with 400 PROPERTY_DOESNT_EXIST (a new portal, a deleted property), the
connector ensures the definitions and retries that batch once.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, Self
from urllib.parse import quote

import requests

from connectors.base import (
    MARKETING,
    AmbiguousSends,
    ChangedRecord,
    HttpConnector,
    ObjectSpec,
    Outcome,
    Person,
    Record,
)
from connectors.endpoint import resolve_endpoint
from connectors.http import PermanentError, VendorHttp
from connectors.hubspot.errors import TABLE
from connectors.hubspot.properties import (
    associated_properties,
    association_keys,
    ensure_definitions,
    exclusive,
    missing_property_names,
    property_definitions,
)
from connectors.hubspot.search import (
    SEARCH_PAGE_LIMIT,
    SEARCH_RESULT_CAP,
    parse_hubspot_time,
    search_modified,
)
from connectors.hubspot.settings import HubSpotSettings
from connectors.hubspot.targets import KnownTargets, fingerprint
from ennu import vendor_schema
from ennu.models import SyncStatus
from ennu.settings import Settings

VENDOR_BASE_URL = "https://api.hubapi.com"
SANDBOX_TOKEN = "sandbox-hubspot-token"  # noqa: S105 - the sandbox's published dummy token
BATCH_LIMIT = 100  # inputs of a batch upsert, batch read and v4 batch association
DELIVERED = (SyncStatus.CREATED, SyncStatus.UPDATED)
# objects whose changes can be fetched, by the property HubSpot keeps their last modification in
MODIFIED_PROPERTY = {"contacts": "lastmodifieddate", "deals": "hs_lastmodifieddate"}


@functools.lru_cache(maxsize=256)
def not_properties(names: frozenset[str]) -> frozenset[str]:
    """The field names that are no property of the record: association keys and the associated records'
    properties (the records of one mapping share their names: worked out once, not once a record)."""
    keys = association_keys(names)
    elsewhere = {name for name, _, _ in keys}
    for _, to_object, _ in keys:
        elsewhere.update(associated_properties(names, to_object))
    return frozenset(elsewhere)


class HubSpotConnector(HttpConnector):
    """CRM v3 objects upserted in batches by a unique-value id property; deals staged and associated."""

    name: ClassVar[str] = "hubspot"
    # Upsert keys are unique-value properties (ours are created by `ensure_properties`); the properties a
    # record carries are open: custom properties are HubSpot's way.
    objects: ClassVar[tuple[ObjectSpec, ...]] = (
        # A contact batch that carries its clinic company costs 2 (contacts, the v4 link), 3 while one of its
        # companies is new to this process (the company upsert), 4 to 6 when updated contacts may be linked
        # to an earlier clinic: the estimate is the common case (1).
        ObjectSpec("contacts", BATCH_LIMIT, upsert_keys=("email", "ennu_user_id"), changes=True),
        ObjectSpec("companies", BATCH_LIMIT, upsert_keys=("ennu_company_id",)),
        # A deal batch is upserted, then associated with its contacts: one batch read, one v4 link.
        ObjectSpec("deals", BATCH_LIMIT, upsert_keys=("ennu_goal_id",), requests_per_batch=3, changes=True),
    )
    settings_class = HubSpotSettings
    table = TABLE
    ambiguous_sends: ClassVar[AmbiguousSends] = "idempotent"  # batch upsert by a unique idProperty

    def __init__(
        self,
        http: VendorHttp,
        *,
        deal_pipeline: str = "default",
        deal_stages: dict[str, str] | None = None,
        mappings_dir: Path | None = None,
        search_page_limit: int = SEARCH_PAGE_LIMIT,
        search_result_cap: int = SEARCH_RESULT_CAP,
    ) -> None:
        super().__init__(http)
        self.deal_pipeline = deal_pipeline
        self.deal_stages = deal_stages or {"open": "appointmentscheduled", "won": "closedwon"}
        self.mappings_dir = mappings_dir
        self.search_page_limit = search_page_limit
        self.search_result_cap = search_result_cap
        self._properties_ensured = False
        self._properties_lock = threading.Lock()
        self._properties_created = 0  # how many times this instance has ensured the definitions at the portal
        self._known_targets = KnownTargets()

    @classmethod
    def from_settings(cls, settings: Settings, *, rate_limited: bool = True) -> Self:
        own = HubSpotSettings.load()
        endpoint = resolve_endpoint(
            cls.name,
            credential_env="HUBSPOT_ACCESS_TOKEN",
            vendor_base_url=VENDOR_BASE_URL,
            configured_base_url=own.base_url,
            sandbox_path="hubspot",
            sandbox_secret=SANDBOX_TOKEN,
        )
        http = cls.client(
            endpoint.base_url,
            headers={"Authorization": f"Bearer {endpoint.secret.get_secret_value()}"},
            rate=own.rate_limit,
            rate_limited=rate_limited,
        )
        return cls(
            http,
            deal_pipeline=own.deal_pipeline,
            deal_stages={"open": own.deal_stage_open, "won": own.deal_stage_won},
            mappings_dir=settings.mappings_dir,
        )

    # ------------------------------------------------------------------------------- properties

    def ensure_properties(
        self, *, force: bool = False, missed_after: int | None = None
    ) -> dict[str, list[str]]:
        """Create ENNU's missing properties; the names created by object type.

        Once per instance, and across processes through the fingerprint remembered in the hub's database:
        the portal is read again only when the definitions (or the portal's base URL) change, or when
        `force` is set because HubSpot answered that a property is missing. `missed_after`: the count of
        ensures (`_properties_created`) read before the request that met the missing property; when another
        push has ensured them since, they are there now, and the portal is not read again.
        """
        with self._properties_lock:  # concurrent pushes wait for the first check
            if force and missed_after is not None and self._properties_created != missed_after:
                return {}
            return self._ensure_properties(force=force)

    def _ensure_properties(self, *, force: bool) -> dict[str, list[str]]:
        if self._properties_ensured and not force:
            return {}
        if self.mappings_dir is None:
            raise ValueError("hubspot: no mappings directory to derive the property definitions from")
        definitions = property_definitions(self.mappings_dir)
        wanted = vendor_schema.fingerprint({"base_url": self.http.base_url, "definitions": definitions})
        if not force and vendor_schema.is_ensured(self.name, wanted):
            self._properties_ensured = True
            return {}
        created = ensure_definitions(self.http, definitions)
        vendor_schema.remember_ensured(self.name, wanted)
        self._properties_ensured = True
        self._properties_created += 1
        return created

    # ------------------------------------------------------------------------------------- push

    def send(self, object_name: str, upsert_key: str, records: Sequence[Record]) -> list[Outcome]:
        outcomes: dict[str, Outcome] = {}
        inputs: list[dict[str, Any]] = []
        sent: list[Record] = []
        for record in records:
            properties, problem = self._wire_properties(object_name, record.fields)
            if problem is not None:
                outcomes[record.record_key] = Outcome(record.record_key, SyncStatus.REJECTED, error=problem)
                continue
            inputs.append(
                {"id": str(record.fields[upsert_key]), "idProperty": upsert_key, "properties": properties}
            )
            sent.append(record)
        if sent:
            outcomes.update(self._upsert(object_name, upsert_key, sent, inputs))
            outcomes.update(self._associate(object_name, sent, outcomes))
        return [
            outcomes.get(r.record_key)
            or Outcome(r.record_key, SyncStatus.FAILED, error="no result from hubspot")
            for r in records
        ]

    def _wire_properties(self, object_name: str, fields: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
        """The properties HubSpot receives, or a reason to reject the record."""
        elsewhere = not_properties(frozenset(fields))
        properties = {n: v for n, v in fields.items() if v is not None and n not in elsewhere}
        if object_name != "deals":
            return properties, None
        properties["pipeline"] = self.deal_pipeline
        stage = properties.get("dealstage")
        if stage is not None:
            if str(stage) not in self.deal_stages:
                return {}, f"dealstage is not one of the logical stages {', '.join(sorted(self.deal_stages))}"
            properties["dealstage"] = self.deal_stages[str(stage)]
        return properties, None

    def _upsert(
        self, object_name: str, upsert_key: str, records: Sequence[Record], inputs: list[dict[str, Any]]
    ) -> dict[str, Outcome]:
        body = self._post_upsert(object_name, inputs)
        by_key = {str(r.fields[upsert_key]).lower(): r for r in records}
        outcomes: dict[str, Outcome] = {}
        for result in body.get("results", []):
            key = str(result.get("properties", {}).get(upsert_key, "")).lower()
            record = by_key.get(key)
            if record is not None:
                status = SyncStatus.CREATED if result.get("new") else SyncStatus.UPDATED
                outcomes[record.record_key] = Outcome(
                    record.record_key, status, remote_id=str(result.get("id"))
                )
        for error in body.get("errors", []):
            code = str(error.get("category") or error.get("status") or "error")
            for key in error.get("context", {}).get("ids", []):
                record = by_key.get(str(key).lower())
                if record is not None:
                    outcomes[record.record_key] = Outcome(record.record_key, SyncStatus.FAILED, error=code)
        return outcomes

    def _post_upsert(self, object_name: str, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        """One batch upsert's answer; a portal without our properties gets them and the batch once more."""
        path = f"/crm/v3/objects/{object_name}/batch/upsert"
        ensured = self._properties_created
        response = self.http.request(
            "POST", path, json={"inputs": inputs}, allow_statuses=TABLE.expect("upsert")
        )
        if response.status_code == 400:
            if not missing_property_names(_json(response)):
                self.http.classify(response)  # raises the shared client's PermanentError
            # This portal never had our properties, or someone deleted one: create them (once for the pushes
            # that met it at the same time), retry once.
            self.ensure_properties(force=True, missed_after=ensured)
            response = self.http.request("POST", path, json={"inputs": inputs})
        return _json(response)

    def _associate(
        self, object_name: str, records: Sequence[Record], outcomes: dict[str, Outcome]
    ) -> dict[str, Outcome]:
        """Default associations of the upserted records: one batch read and one v4 batch create per target.

        A record upserted but not associated keeps its status and says why in `error`.
        """
        updated: dict[str, Outcome] = {}
        names = {name for r in records for name in r.fields}
        for field, to_object, id_property in association_keys(sorted(names)):
            delivered = [
                r for r in records if r.record_key in outcomes and outcomes[r.record_key].status in DELIVERED
            ]
            pairs = [
                (outcomes[r.record_key], _id_value(id_property, r.fields[field]))
                for r in delivered
                if r.fields.get(field) is not None
            ]
            # Updated records may be linked to an earlier target of ours (a created one has no links yet).
            moved = [
                r
                for r in delivered
                if exclusive(id_property)
                and field in r.fields
                and outcomes[r.record_key].status is SyncStatus.UPDATED
            ]
            if not pairs and not moved:
                continue
            reasons: dict[str, str] = {}
            target_ids: dict[str, str] = {}
            linked: set[str] = set()
            try:
                if pairs:
                    target_ids, remembered = self._targets(to_object, id_property, field, delivered)
                    linked = self._link(object_name, to_object, pairs, target_ids)
                    stale = {k for o, k in pairs if o.remote_id not in linked and k in remembered}
                    if stale:  # refused for a target known here: deleted or merged in HubSpot since
                        self._known_targets.forget((to_object, id_property, k) for k in stale)
                        again = [
                            r
                            for r in delivered
                            if r.fields.get(field) is not None
                            and _id_value(id_property, r.fields[field]) in stale
                        ]
                        target_ids.update(self._targets(to_object, id_property, field, again)[0])
                        retry = [(o, k) for o, k in pairs if k in stale and o.remote_id not in linked]
                        linked |= self._link(object_name, to_object, retry, target_ids)
                if moved:
                    wanted = {
                        str(outcomes[r.record_key].remote_id): target_ids.get(
                            _id_value(id_property, r.fields[field]) if r.fields[field] is not None else ""
                        )
                        for r in moved
                    }
                    self._unlink_others(object_name, to_object, id_property, wanted)
            except PermanentError as exc:
                reasons = {o.record_key: f"not associated with {to_object}: {exc.reason}" for o, _ in pairs}
                for r in moved:  # a record whose target is gone keeps its earlier link, and says so
                    if r.fields.get(field) is None:
                        reason = f"earlier {to_object} link kept: {exc.reason}"
                        updated[r.record_key] = replace(outcomes[r.record_key], error=reason)
            for outcome, key in pairs:
                if outcome.remote_id in linked:
                    continue
                reason = reasons.get(outcome.record_key) or (
                    f"not associated: no {to_object} with that {id_property}"
                    if key not in target_ids
                    else f"not associated with {to_object}: refused"
                )
                updated[outcome.record_key] = replace(updated.get(outcome.record_key, outcome), error=reason)
        return updated

    def _targets(
        self, to_object: str, id_property: str, field: str, records: Sequence[Record]
    ) -> tuple[dict[str, str], set[str]]:
        """HubSpot id by association key of the records' targets: upserted where the records describe
        them (`<to_object>.<property>` fields), read otherwise (they must exist); and the keys answered
        from what this connector already sent or read (`KnownTargets`), with no request."""
        described = associated_properties({n for r in records for n in r.fields}, to_object)
        properties: dict[str, dict[str, Any] | None] = {}
        for r in records:  # the first record naming a target describes it
            if r.fields.get(field) is not None:
                key = _id_value(id_property, r.fields[field])
                if key not in properties:
                    values = {p: r.fields[n] for n, p in described.items() if r.fields.get(n) is not None}
                    properties[key] = {**values, id_property: key} if described else None
        digests = {key: fingerprint(values) for key, values in properties.items()}
        found: dict[str, str] = {}
        for key, digest in digests.items():
            known = self._known_targets.get((to_object, id_property, key), digest)
            if known is not None:
                found[key] = known
        remembered = set(found)
        missing = sorted(key for key in properties if key not in found)
        if not missing:
            return found, remembered
        if described:
            fetched = self._upsert_targets(to_object, id_property, missing, properties)
        else:
            fetched = self._read_ids(to_object, id_property, missing)
        for key, hubspot_id in fetched.items():
            if key in digests:
                self._known_targets.remember((to_object, id_property, key), hubspot_id, digests[key])
        return found | fetched, remembered

    def _upsert_targets(
        self, to_object: str, id_property: str, keys: list[str], properties: dict[str, dict[str, Any] | None]
    ) -> dict[str, str]:
        """HubSpot id by key of the described targets, upserted (100 a request)."""
        found: dict[str, str] = {}
        for start in range(0, len(keys), BATCH_LIMIT):
            inputs = [
                {"id": key, "idProperty": id_property, "properties": properties[key]}
                for key in keys[start : start + BATCH_LIMIT]
            ]
            for result in self._post_upsert(to_object, inputs).get("results", []):
                value = (result.get("properties") or {}).get(id_property)
                if value is not None:
                    found[_id_value(id_property, value)] = str(result["id"])
        return found

    def _unlink_others(
        self, object_name: str, to_object: str, id_property: str, wanted: dict[str, str | None]
    ) -> None:
        """Remove the links of these records (HubSpot id -> the one target id they keep, or None) to other
        `to_object` records of ours (those carrying `id_property`); links to anyone else's stay.

        One v4 batch read per 100 records; when some are linked elsewhere, one batch read of those targets
        and one v4 batch archive."""
        ids = sorted(wanted)
        others: dict[str, set[str]] = {}
        for start in range(0, len(ids), BATCH_LIMIT):
            chunk = ids[start : start + BATCH_LIMIT]
            response = self.http.request(
                "POST",
                f"/crm/v4/associations/{object_name}/{to_object}/batch/read",
                json={"inputs": [{"id": object_id} for object_id in chunk]},
            )
            for result in _json(response).get("results", []):
                from_id = str((result.get("from") or {}).get("id"))
                for linked in result.get("to") or []:
                    target = str(linked.get("toObjectId"))
                    if from_id in wanted and target != wanted[from_id]:
                        others.setdefault(from_id, set()).add(target)
        if not others:
            return
        ours = self._ours(to_object, id_property, sorted(set().union(*others.values())))
        inputs = [
            {"from": {"id": from_id}, "to": [{"id": t} for t in sorted(targets & ours)]}
            for from_id, targets in sorted(others.items())
            if targets & ours
        ]
        path = f"/crm/v4/associations/{object_name}/{to_object}/batch/archive"
        for start in range(0, len(inputs), BATCH_LIMIT):
            self.http.request("POST", path, json={"inputs": inputs[start : start + BATCH_LIMIT]})

    def _ours(self, object_type: str, id_property: str, object_ids: list[str]) -> set[str]:
        """The HubSpot ids among these whose record carries our `id_property` (batch read by id)."""
        found: set[str] = set()
        for start in range(0, len(object_ids), BATCH_LIMIT):
            body = {
                "inputs": [{"id": object_id} for object_id in object_ids[start : start + BATCH_LIMIT]],
                "properties": [id_property],
                "propertiesWithHistory": [],
            }
            response = self.http.request("POST", f"/crm/v3/objects/{object_type}/batch/read", json=body)
            for result in _json(response).get("results", []):
                if (result.get("properties") or {}).get(id_property):
                    found.add(str(result["id"]))
        return found

    def _read_ids(self, object_type: str, id_property: str, keys: list[str]) -> dict[str, str]:
        """HubSpot object id by id-property value, for those that exist (batch read, 100 a request)."""
        found: dict[str, str] = {}
        for start in range(0, len(keys), BATCH_LIMIT):
            body = {
                "idProperty": id_property,
                "inputs": [{"id": key} for key in keys[start : start + BATCH_LIMIT]],
                "properties": [id_property],
                "propertiesWithHistory": [],
            }
            response = self.http.request("POST", f"/crm/v3/objects/{object_type}/batch/read", json=body)
            for result in _json(response).get("results", []):
                value = (result.get("properties") or {}).get(id_property)
                if value is not None:
                    found[_id_value(id_property, value)] = str(result["id"])
        return found

    def _link(
        self,
        object_name: str,
        to_object: str,
        pairs: list[tuple[Outcome, str]],
        target_ids: dict[str, str],
    ) -> set[str]:
        """The record ids HubSpot answered as associated (v4 batch default association, 100 a request)."""
        inputs = [
            {"from": {"id": outcome.remote_id}, "to": {"id": target_ids[key]}}
            for outcome, key in pairs
            if key in target_ids
        ]
        linked: set[str] = set()
        path = f"/crm/v4/associations/{object_name}/{to_object}/batch/associate/default"
        for start in range(0, len(inputs), BATCH_LIMIT):
            response = self.http.request("POST", path, json={"inputs": inputs[start : start + BATCH_LIMIT]})
            for result in _json(response).get("results", []):
                linked.add(str((result.get("from") or {}).get("id")))
        return linked

    # ------------------------------------------------------------------------------ fetch changes

    def fetch_modified(
        self, since: datetime, properties: Sequence[str], object_type: str = "contacts"
    ) -> list[dict[str, Any]]:
        """Contacts (or deals) modified after since (aware datetime), every page followed, oldest first:
        [{"id": "123", "properties": {name: str | None, ...incl. the modification time}, "updatedAt": "ISO"}]
        """
        found = search_modified(
            self.http,
            object_type,
            MODIFIED_PROPERTY[object_type],
            since,
            properties,
            page_limit=self.search_page_limit,
            result_cap=self.search_result_cap,
        )
        return [
            {
                "id": str(r["id"]),
                "properties": dict(r.get("properties") or {}),
                "updatedAt": r.get("updatedAt"),
            }
            for r in found
        ]

    def fetch_changes(self, object_name: str, since: datetime, fields: Sequence[str]) -> list[ChangedRecord]:
        if not self.object_spec(object_name).changes:
            raise NotImplementedError(
                f"hubspot reports changes of contacts and deals only, not {object_name}"
            )
        changed = []
        for found in self.fetch_modified(since, fields, object_name):
            modified = found["properties"].get(MODIFIED_PROPERTY[object_name]) or found["updatedAt"]
            changed.append(ChangedRecord(found["id"], parse_hubspot_time(str(modified)), found["properties"]))
        return changed

    # ----------------------------------------------------------------------------------- the rest

    def check_connection(self) -> str:
        self.http.request("GET", "/account-info/v3/details")
        return "account details read"

    def withdraw_consent(self, person: Person, withdrawn: frozenset[str]) -> Outcome | None:
        """A withdrawn marketing consent opts the address out of all email (communication preferences v4).

        HubSpot then shows the contact's `hs_email_optout`; it cannot be set as a property. There is no
        SMS or call consent on our HubSpot contacts, so a withdrawn communication consent changes nothing.
        """
        if MARKETING not in withdrawn:
            return None
        key = f"user:{person.user_id}"
        if not person.email:
            return Outcome(key, SyncStatus.SKIPPED, error="no e-mail to identify the contact")
        subscriber = quote(person.email.strip().lower(), safe="")
        path = f"/communication-preferences/v4/statuses/{subscriber}/unsubscribe-all"
        self.http.request("POST", path, params={"channel": "EMAIL"})
        return Outcome(key, SyncStatus.UPDATED, remote_id="email opted out of all")

    def erase(self, person: Person) -> Outcome:
        """GDPR-delete the contact (HubSpot also forgets its e-mail) and archive the deals of their goals.

        Deals have no GDPR delete; archived deals leave HubSpot's recycling bin after 90 days.
        """
        key = f"user:{person.user_id}"
        deals = self._read_ids("deals", "ennu_goal_id", [str(g) for g in person.goal_ids])
        if deals:
            self.http.request(
                "POST",
                "/crm/v3/objects/deals/batch/archive",
                json={"inputs": [{"id": deal_id} for deal_id in deals.values()]},
            )
        if not person.email:
            return Outcome(key, SyncStatus.SKIPPED, error="no e-mail to identify the contact")
        self._known_targets.forget(
            ("contacts", id_property, _id_value(id_property, value))
            for id_property, value in (("email", person.email), ("ennu_user_id", person.user_id))
        )
        response = self.http.request(
            "POST",
            "/crm/v3/objects/contacts/gdpr-delete",
            json={"objectId": person.email.strip().lower(), "idProperty": "email"},
            allow_statuses=TABLE.expect("gone"),
        )
        if response.status_code == 404 and not deals:
            return Outcome(key, SyncStatus.UNCHANGED, error="not found")
        contact = "contact GDPR-deleted" if response.status_code != 404 else "no contact"
        return Outcome(key, SyncStatus.ERASED, remote_id=f"{contact}, {len(deals)} deals archived")


def _id_value(id_property: str, value: Any) -> str:
    """An id-property value as HubSpot matches it: e-mails without case or surrounding space, a whole
    number as an integer (a host id read through a join with misses arrives as 12.0)."""
    if id_property == "email":
        return str(value).strip().lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _json(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
