"""Salesforce: Contacts, Leads, Accounts and Opportunities by sObject Collections upsert (200), OAuth 2.0.

A Contact batch that links Accounts upserts them first, in the same Composite request (`accounts`); the
records of people who are still Leads go to their Lead in that request, or to the Contact it was converted
to (`leads`); an Opportunity batch that names its person gets each one contact role, created once
(`contact_roles`).
The token comes from the login URL's token endpoint (JWT bearer flow, or client credentials) through a
second client with its own error table (`errors.TOKEN_TABLE`); the API's answers follow `errors.TABLE`.
"""

from __future__ import annotations

import base64
import re
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, ClassVar, Self
from urllib.parse import quote, urlencode, urlsplit

import jwt
import requests
from pydantic import SecretStr

from connectors.base import (
    COMMUNICATION,
    MARKETING,
    AmbiguousSends,
    ChangedRecord,
    HttpConnector,
    ObjectSpec,
    Outcome,
    Person,
    Record,
)
from connectors.endpoint import NoCredentials, NotConfigured, resolve_endpoint
from connectors.http import AuthError, RetryableError, VendorHttp
from connectors.salesforce.accounts import (
    ACCOUNT_ID_FIELD,
    ACCOUNT_KEY,
    links_account,
    person_account_id,
    split_accounts,
)
from connectors.salesforce.contact_roles import (
    existing_roles,
    role_record,
    roles_query,
    split_roles,
    wants_roles,
)
from connectors.salesforce.errors import TABLE, TOKEN_TABLE
from connectors.salesforce.leads import (
    CONVERTED_LEAD,
    NOT_CONVERTED,
    LeadState,
    contact_fields,
    contact_update,
    is_lead,
    lead_fields,
    lead_states,
    leads_query,
    split_leads,
    without_flag,
)
from connectors.salesforce.settings import AccountModel, SalesforceSettings
from ennu.models import SyncStatus
from ennu.settings import Settings

VENDOR_LOGIN_URL = "https://login.salesforce.com"
SANDBOX_CONSUMER_KEY = "sandbox-sf-key"
HALF_CONFIGURED = "salesforce: a client secret or private key is set but not SALESFORCE_CONSUMER_KEY"
SANDBOX_CLIENT_SECRET = "sandbox-sf-secret"  # noqa: S105 - the sandbox's published dummy secret
DEFAULT_API_VERSION = "62.0"
DEFAULT_EXTERNAL_ID_FIELD = (
    "ENNU_User_Id__c"  # the name mappings use; SALESFORCE_EXTERNAL_ID_FIELD renames it
)
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
JWT_LIFETIME_SECONDS = 180  # Salesforce refuses assertions that expire more than 3 minutes ahead
COLLECTION_LIMIT = 200
ERASABLE_OBJECTS = ("Contact", "Lead")
# The Opportunity external id of mappings/health_goal.*/salesforce.yaml
GOAL_EXTERNAL_ID_FIELD = "ENNU_Goal_Id__c"
API_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)?$")
LIMIT_INFO = re.compile(r"api-usage=(\d+)/(\d+)")


@dataclass(frozen=True)
class ClientCredentialsGrant:
    """OAuth 2.0 client credentials: the connected app's key and secret, Basic auth to the My Domain URL."""

    consumer_key: str
    client_secret: SecretStr

    def token_request(self) -> tuple[dict[str, str], dict[str, str]]:
        """(form fields, headers) of the token request."""
        pair = f"{self.consumer_key}:{self.client_secret.get_secret_value()}".encode()
        return {"grant_type": "client_credentials"}, {
            "Authorization": f"Basic {base64.b64encode(pair).decode()}"
        }


@dataclass(frozen=True)
class JwtBearerGrant:
    """OAuth 2.0 JWT bearer flow: an RS256 assertion for `username`, signed with the connected app's key."""

    consumer_key: str
    username: str
    private_key: SecretStr  # PEM
    audience: str  # https://login.salesforce.com or https://test.salesforce.com (see jwt_audience)

    def assertion(self, now: float | None = None) -> str:
        issued = int(now if now is not None else time.time())
        claims: dict[str, Any] = {
            "iss": self.consumer_key,
            "sub": self.username,
            "aud": self.audience,
            "exp": issued + JWT_LIFETIME_SECONDS,
        }
        return jwt.encode(claims, self.private_key.get_secret_value(), algorithm="RS256")

    def token_request(self) -> tuple[dict[str, str], dict[str, str]]:
        return {"grant_type": JWT_BEARER_GRANT, "assertion": self.assertion()}, {}


Grant = ClientCredentialsGrant | JwtBearerGrant


@dataclass(frozen=True)
class AccessToken:
    value: SecretStr
    instance_url: str


def parse_limit_info(header: str | None) -> tuple[int, int] | None:
    """`api-usage=18/15000` → (18, 15000)."""
    match = LIMIT_INFO.search(header or "")
    return (int(match.group(1)), int(match.group(2))) if match else None


def soql_datetime(when: datetime) -> str:
    """A SOQL dateTime literal in UTC, floored to the second (a later read may repeat, never skip)."""
    aware = when if when.tzinfo else when.replace(tzinfo=UTC)
    return aware.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_sf_datetime(value: str) -> datetime:
    """Salesforce's `2026-11-29T10:15:30.000+0000` as an aware UTC datetime."""
    return datetime.fromisoformat(value).astimezone(UTC)


def jwt_audience(login_url: str) -> str:
    """The JWT `aud`: login.salesforce.com, or test.salesforce.com for sandbox orgs, even behind My Domain.

    Any other host (an Experience Cloud site, a stand-in) is its own audience.
    """
    host = (urlsplit(login_url).hostname or "").lower()
    if host == "test.salesforce.com" or host.endswith(".sandbox.my.salesforce.com"):
        return "https://test.salesforce.com"
    if host == "salesforce.com" or host.endswith(".salesforce.com"):
        return VENDOR_LOGIN_URL
    return login_url.rstrip("/")


def _api_name(name: str) -> str:
    """Object and field names go into paths and SOQL: only API names, never anything else."""
    if not API_NAME.match(name):
        raise ValueError(f"salesforce: {name!r} is not an API name")
    return name


class SalesforceConnector(HttpConnector):
    """CRM objects upserted by an external-id field; the token is fetched lazily and refreshed once on 401."""

    name: ClassVar[str] = "salesforce"
    # Upsert keys are external-id fields (custom, unique text fields of the org: mappings/*/salesforce*.yaml).
    # Fields are open: custom fields (`__c`) are Salesforce's way. Every sObject has SystemModstamp, so each
    # can be read for changes.
    objects: ClassVar[tuple[ObjectSpec, ...]] = (
        # Contacts and their Accounts: one Composite request a batch.
        ObjectSpec("Contact", COLLECTION_LIMIT, upsert_keys=(DEFAULT_EXTERNAL_ID_FIELD,), changes=True),
        ObjectSpec("Lead", COLLECTION_LIMIT, upsert_keys=(DEFAULT_EXTERNAL_ID_FIELD,), changes=True),
        ObjectSpec("Account", COLLECTION_LIMIT, upsert_keys=(ACCOUNT_ID_FIELD,), changes=True),
        # The upsert and the roles' look-up (one Composite request), then the missing roles' create.
        ObjectSpec(
            "Opportunity",
            COLLECTION_LIMIT,
            upsert_keys=(GOAL_EXTERNAL_ID_FIELD,),
            changes=True,
            requests_per_batch=2,
        ),
    )
    settings_class = SalesforceSettings
    table = TABLE
    ambiguous_sends: ClassVar[AmbiguousSends] = "idempotent"  # upsert by an external-id field

    def __init__(
        self,
        http: VendorHttp,
        auth_http: VendorHttp,
        grant: Grant,
        *,
        api_version: str = DEFAULT_API_VERSION,
        external_id_field: str = DEFAULT_EXTERNAL_ID_FIELD,
        query_batch_size: int | None = None,
        account_model: AccountModel = "clinic",
    ) -> None:
        super().__init__(http)
        self.auth_http = auth_http
        self.grant = grant
        self.api_version = api_version
        self.external_id_field = _api_name(external_id_field)
        self.query_batch_size = query_batch_size
        self.account_model: AccountModel = account_model
        self.api_usage: tuple[int, int] | None = None  # the last Sforce-Limit-Info: (used, daily limit)
        self._token: AccessToken | None = None
        self._token_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, *, rate_limited: bool = True) -> Self:
        own = SalesforceSettings.load()
        try:
            endpoint = resolve_endpoint(
                cls.name,
                credential_env="SALESFORCE_CONSUMER_KEY",
                vendor_base_url=VENDOR_LOGIN_URL,
                configured_base_url=own.login_url,
                sandbox_path="salesforce",
                sandbox_secret=SANDBOX_CONSUMER_KEY,
            )
        except NoCredentials:
            if cls.has_credentials():
                raise NotConfigured(HALF_CONFIGURED) from None
            raise
        login_url = endpoint.base_url.rstrip("/")
        consumer_key = endpoint.secret.get_secret_value()
        grant: Grant
        if endpoint.sandbox:
            if cls.has_credentials():
                # A secret or key without the consumer key it belongs to: never the sandbox instead.
                raise NotConfigured(HALF_CONFIGURED)
            grant = ClientCredentialsGrant(consumer_key, SecretStr(SANDBOX_CLIENT_SECRET))
        else:
            grant = _configured_grant(consumer_key, login_url, own)
        # The API client's base URL is replaced by the instance URL of the first token.
        http = cls.client(login_url, rate=own.rate_limit, rate_limited=rate_limited)
        auth_http = cls.client(login_url, rate=None, table=TOKEN_TABLE, pool_size=2)
        return cls(
            http,
            auth_http,
            grant,
            api_version=own.api_version,
            external_id_field=own.external_id_field,
            query_batch_size=own.query_batch_size,
            account_model=own.account_model,
        )

    # ------------------------------------------------------------------ session

    def _fetch_token(self) -> AccessToken:
        data, headers = self.grant.token_request()
        response = self.auth_http.request(
            "POST",
            "/services/oauth2/token",
            data=data,
            headers=headers,
            allow_statuses=TOKEN_TABLE.expect("refused"),
        )
        try:
            answer: Any = response.json()
        except ValueError:  # an HTML error page from a proxy or a wrong login URL
            answer = None
        # OAuth answers an object; a proxy or the API's error shape (a list) is no token and no OAuth code.
        body: dict[str, Any] = answer if isinstance(answer, dict) else {}
        if response.status_code >= 400:
            # Any refusal of the credentials is an auth failure, so the push stage defers the records
            # instead of failing them; the OAuth error code (invalid_grant, ...) is kept.
            raise AuthError(self.name, 401, f"token {body.get('error') or response.status_code}")
        if not body.get("access_token") or not body.get("instance_url"):
            raise AuthError(self.name, 401, "token response without access_token or instance_url")
        token = AccessToken(SecretStr(str(body["access_token"])), str(body["instance_url"]).rstrip("/"))
        self.http.base_url = f"{token.instance_url}/services/data/v{self.api_version}"
        return token

    def _session(self, stale: AccessToken | None = None) -> AccessToken:
        """The cached token; a new one when there is none or when `stale` (refused by the API) is current."""
        with self._token_lock:
            if self._token is None or (stale is not None and self._token is stale):
                self._token = self._fetch_token()
            return self._token

    def _send(self, token: AccessToken, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {token.value.get_secret_value()}", **kwargs.pop("headers", {})}
        response = self.http.request(method, path, headers=headers, **kwargs)
        usage = parse_limit_info(response.headers.get("Sforce-Limit-Info"))
        if usage is not None:
            self.api_usage = usage
        return response

    def _call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """One API request; an expired session (401 INVALID_SESSION_ID) is refreshed and retried once."""
        token = self._session()
        try:
            return self._send(token, method, path, **kwargs)
        except AuthError as exc:
            if exc.code != "INVALID_SESSION_ID":
                raise
        return self._send(self._session(stale=token), method, path, **kwargs)

    def _field(self, name: str) -> str:
        """Mappings say ENNU_User_Id__c; an org may call its external-id field otherwise."""
        return self.external_id_field if name == DEFAULT_EXTERNAL_ID_FIELD else _api_name(name)

    def _sobject(self, object_name: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        """The record body: nulls left out (never clear what staff typed), dotted names as relationships."""
        body: dict[str, Any] = {"attributes": {"type": object_name}}
        for name, value in fields.items():
            if value is None:
                continue
            head, _, tail = self._field(name).partition(".")
            if tail:
                body.setdefault(head, {})[tail] = value
            else:
                body[head] = value
        return body

    # ------------------------------------------------------------------ the surface

    def send(self, object_name: str, upsert_key: str, records: Sequence[Record]) -> list[Outcome]:
        """Upsert ≤200 records of one sObject by its external-id field; one result per record, in order.

        Contacts take the Composite path when they link Accounts or hold people who are Leads; Opportunities
        that name their person take it for their contact roles.
        """
        if len(records) > COLLECTION_LIMIT:
            raise ValueError(f"salesforce: at most {COLLECTION_LIMIT} records a request")
        if not records:
            return []
        if object_name == "Contact":
            return self._send_contacts(upsert_key, records)
        if object_name == "Opportunity" and any(is_lead(r) for r in records):
            return self._send_goals_of_leads(upsert_key, records)
        return self._send_plain(object_name, upsert_key, [without_flag(r) for r in records])

    def _send_plain(self, object_name: str, upsert_key: str, records: Sequence[Record]) -> list[Outcome]:
        if object_name == "Opportunity" and wants_roles(records):
            return self._send_with_roles(upsert_key, records)
        path = f"/composite/sobjects/{_api_name(object_name)}/{self._field(upsert_key)}"
        response = self._call("PATCH", path, json=self._collection(object_name, upsert_key, records))
        return _outcomes(records, response.json())

    def _collection(self, object_name: str, upsert_key: str, records: Sequence[Record]) -> dict[str, Any]:
        """The sObject Collections body: every record's own, none rolled back for another's failure."""
        return {
            "allOrNone": False,
            "records": [self._sobject(object_name, _with_text_key(r.fields, upsert_key)) for r in records],
        }

    def _composite(self, subrequests: list[dict[str, Any]]) -> dict[str, tuple[int, Any]]:
        """One Composite request (subrequests run in order, each answers on its own): referenceId ->
        (status, body). A subrequest the server could not run (5xx) makes the whole batch retryable."""
        prefix = f"/services/data/v{self.api_version}"
        body = {
            "allOrNone": False,
            "compositeRequest": [{**sub, "url": prefix + sub["url"]} for sub in subrequests],
        }
        answer: dict[str, Any] = self._call("POST", "/composite", json=body).json()
        answers = {
            str(a["referenceId"]): (int(a["httpStatusCode"]), a["body"]) for a in answer["compositeResponse"]
        }
        for status, sub_body in answers.values():
            if status >= 500:
                raise RetryableError(self.name, f"composite subrequest http {status} {_error_code(sub_body)}")
        return answers

    def _send_contacts(self, upsert_key: str, records: Sequence[Record]) -> list[Outcome]:
        """The batch's Accounts, its Contacts referring to theirs, and the records of people who are still
        Leads (to their Lead, with the fields a Lead has): one request, a Composite one where there is more
        than one collection. Those whose Lead was converted then go to its Contact (`_to_converted`)."""
        contact_at, lead_at = split_leads(records)
        contacts = [without_flag(records[i]) for i in contact_at]
        accounts: list[dict[str, Any]] = []
        if links_account(contacts):
            accounts, contacts = split_accounts(contacts, self.account_model, upsert_key)
        leads = [replace(records[i], fields=lead_fields(records[i].fields)) for i in lead_at]
        id_field = self._field(upsert_key)
        parts: list[tuple[str, str, dict[str, Any]]] = []
        if accounts:
            account_body = {"allOrNone": False, "records": [self._sobject("Account", a) for a in accounts]}
            parts.append(("accounts", f"/composite/sobjects/Account/{ACCOUNT_ID_FIELD}", account_body))
        if contacts:
            parts.append(
                (
                    "contacts",
                    f"/composite/sobjects/Contact/{id_field}",
                    self._collection("Contact", upsert_key, contacts),
                )
            )
        if leads:
            parts.append(
                ("leads", f"/composite/sobjects/Lead/{id_field}", self._collection("Lead", upsert_key, leads))
            )
        if len(parts) == 1:
            reference, path, body = parts[0]
            answers = {reference: (200, self._call("PATCH", path, json=body).json())}
        else:
            answers = self._composite(
                [{"method": "PATCH", "url": p, "referenceId": ref, "body": b} for ref, p, b in parts]
            )
        outcomes: dict[int, Outcome] = {}
        if contacts:
            refused = _refused_accounts(accounts, answers["accounts"]) if accounts else {}
            for i, r, o in zip(
                contact_at, contacts, _sub_outcomes(contacts, answers["contacts"]), strict=True
            ):
                key = str(r.fields.get(ACCOUNT_KEY, "")).lower()
                if o.status == SyncStatus.FAILED and key in refused:
                    o = replace(o, error=f"Account {refused[key]}")
                outcomes[i] = o
        if leads:
            lead_outcomes = _sub_outcomes(leads, answers["leads"])
            for i, o in zip(lead_at, lead_outcomes, strict=True):
                outcomes[i] = replace(o, object="Lead")
            converted = [
                records[i] for i, o in zip(lead_at, lead_outcomes, strict=True) if o.error == CONVERTED_LEAD
            ]
            if converted:
                by_key = self._to_converted(upsert_key, converted)
                for i in lead_at:
                    outcomes[i] = by_key.get(records[i].record_key, outcomes[i])
        return [outcomes[i] for i in range(len(records))]

    def _lead_states(self, user_ids: Sequence[str]) -> dict[str, LeadState]:
        """The people's Leads as Salesforce holds them (one SOQL query): converted, and into which Contact."""
        soql = leads_query(self.external_id_field, list(dict.fromkeys(user_ids)))
        page: dict[str, Any] = self._call("GET", "/query", params={"q": soql}).json()
        return lead_states(self._all_rows(page), self.external_id_field)

    def _to_converted(self, upsert_key: str, records: Sequence[Record]) -> dict[str, Outcome]:
        """The records of people whose Lead was converted, written to that Contact by its Id with the
        external id set on it (one look-up, one sObject Collections update): record key -> outcome.

        A Lead that says it is converted but names no Contact keeps the record's refusal."""
        states = self._lead_states([str(r.fields[upsert_key]) for r in records])
        targets = [
            (r, state.contact_id)
            for r in records
            if (state := states.get(str(r.fields[upsert_key]))) is not None
            and state.converted
            and state.contact_id
        ]
        if not targets:
            return {}
        body = {
            "allOrNone": False,
            "records": [
                contact_update(
                    contact_id, self._sobject("Contact", _with_text_key(contact_fields(r.fields), upsert_key))
                )
                for r, contact_id in targets
            ],
        }
        results: list[dict[str, Any]] = self._call("PATCH", "/composite/sobjects", json=body).json()
        return {
            o.record_key: replace(o, object="Contact") for o in _outcomes([r for r, _ in targets], results)
        }

    def _send_goals_of_leads(self, upsert_key: str, records: Sequence[Record]) -> list[Outcome]:
        """Goal Opportunities of a batch with people who were Leads: their Leads looked up (one query). A
        person still a Lead gets no Opportunity (a Lead cannot be a contact role): skipped with the reason,
        and the goal's next event after the conversion creates it. A converted person's Contact gets the
        external id (by its Id) so that their role can name it; then the batch goes as any."""
        _, lead_at = split_leads(records)
        people = {i: str(records[i].user_id) for i in lead_at if records[i].user_id is not None}
        states = self._lead_states(list(people.values())) if people else {}
        skipped: dict[int, Outcome] = {}
        adopt: dict[str, str] = {}
        for i, user_id in people.items():
            state = states.get(user_id)
            if state is None:  # no Lead (any more): the role names the Contact, if there is one
                continue
            if state.converted and state.contact_id:
                adopt[user_id] = state.contact_id
            else:
                skipped[i] = Outcome(records[i].record_key, SyncStatus.SKIPPED, error=NOT_CONVERTED)
        if adopt:
            body = {
                "allOrNone": False,
                "records": [
                    contact_update(contact_id, {self.external_id_field: user_id})
                    for user_id, contact_id in adopt.items()
                ],
            }
            # A refused update shows in the role that cannot name the Contact ("not linked to its contact").
            self._call("PATCH", "/composite/sobjects", json=body)
        sending = [i for i in range(len(records)) if i not in skipped]
        sent = (
            self._send_plain("Opportunity", upsert_key, [without_flag(records[i]) for i in sending])
            if sending
            else []
        )
        outcomes = {**skipped, **dict(zip(sending, sent, strict=True))}
        return [outcomes[i] for i in range(len(records))]

    def _send_with_roles(self, upsert_key: str, records: Sequence[Record]) -> list[Outcome]:
        """Opportunities upserted and their contact roles read (one Composite request), then the missing
        roles created (one collection create): a re-send creates none twice."""
        opportunities, wanted = split_roles(records)
        id_field = self._field(upsert_key)
        goal_ids = [str(r.fields[upsert_key]) for r in opportunities if r.fields.get(upsert_key) is not None]
        soql = roles_query(id_field, self.external_id_field, goal_ids)
        answers = self._composite(
            [
                {
                    "method": "PATCH",
                    "url": f"/composite/sobjects/Opportunity/{id_field}",
                    "referenceId": "opportunities",
                    "body": self._collection("Opportunity", upsert_key, opportunities),
                },
                # The query string encoded as a GET's params are (as simple-salesforce's `query` sends it).
                {"method": "GET", "url": f"/query/?{urlencode({'q': soql})}", "referenceId": "roles"},
            ]
        )
        outcomes = _sub_outcomes(opportunities, answers["opportunities"])
        status, page = answers["roles"]
        if status >= 400:
            # Without the look-up a create could add a second role: nothing is linked, the batch goes again.
            raise RetryableError(
                self.name, f"contact roles look-up http {status} {_error_code(page)}", now=False
            )
        have = existing_roles(self._all_rows(page), self.external_id_field)
        missing = [
            (i, role_record(str(o.remote_id), self.external_id_field, w))
            for i, (o, w) in enumerate(zip(outcomes, wanted, strict=True))
            if w is not None
            and o.status != SyncStatus.FAILED
            and o.remote_id
            and (str(o.remote_id), w.contact_key) not in have
        ]
        if not missing:
            return outcomes
        body = {"allOrNone": False, "records": [record for _, record in missing]}
        results: list[dict[str, Any]] = self._call("POST", "/composite/sobjects", json=body).json()
        for (i, _), result in zip(missing, results, strict=False):
            if not result.get("success"):
                # Most often the person's Contact is not there yet (their registration still on its way).
                # The Opportunity is upserted all the same and says why it is not linked; its next event (the
                # goal completed) looks again and links it.
                code = _first_status_code(result)
                outcomes[i] = replace(outcomes[i], error=f"not linked to its contact: {code}")
        return outcomes

    def _all_rows(self, page: Mapping[str, Any]) -> list[dict[str, Any]]:
        """A query answer's rows, every later page followed."""
        rows: list[dict[str, Any]] = list(page.get("records") or [])
        while not page.get("done", True) and page.get("nextRecordsUrl"):
            token = self._session()
            page = self._call("GET", f"{token.instance_url}{page['nextRecordsUrl']}").json()
            rows += page.get("records") or []
        return rows

    def upsert_one(self, object_name: str, upsert_key: str, record: Record) -> Outcome:
        """Upsert one record with the sObject Rows by External ID resource (PATCH .../{field}/{value})."""
        id_field = self._field(upsert_key)
        value = record.fields.get(upsert_key)
        if value is None:
            return Outcome(record.record_key, SyncStatus.FAILED, error=f"no {upsert_key}")
        fields = {k: v for k, v in record.fields.items() if k != upsert_key}
        body = self._sobject(object_name, fields)
        del body["attributes"]
        response = self._call(
            "PATCH",
            f"/sobjects/{_api_name(object_name)}/{id_field}/{quote(str(value), safe='')}",
            json=body,
            allow_statuses=TABLE.expect("record"),
        )
        if response.status_code == 204:  # API 45.0 and earlier: an update has no body
            return Outcome(record.record_key, SyncStatus.UPDATED)
        if response.status_code == 300:
            return Outcome(record.record_key, SyncStatus.FAILED, error="MULTIPLE_CHOICES")
        answer: Any = response.json()
        if response.status_code == 400:
            errors = answer if isinstance(answer, list) else []
            code = next((str(e.get("errorCode")) for e in errors if isinstance(e, dict)), "http 400")
            return Outcome(record.record_key, SyncStatus.FAILED, error=code)
        created = response.status_code == 201 or bool(answer.get("created"))
        status = SyncStatus.CREATED if created else SyncStatus.UPDATED
        return Outcome(record.record_key, status, remote_id=answer.get("id"))

    def fetch_changed(
        self, object_name: str, since: datetime, fields: Sequence[str] | None = None
    ) -> list[dict[str, Any]]:
        """Records of `object_name` modified after `since` (SystemModstamp), every page followed."""
        names = list(fields) if fields else ["Id", self.external_id_field, "SystemModstamp"]
        # Every name passed _api_name and the date is formatted by us: nothing else reaches the SOQL.
        columns = ", ".join(self._field(n) for n in names)
        where = f"SystemModstamp > {soql_datetime(since)}"
        soql = f"SELECT {columns} FROM {_api_name(object_name)} WHERE {where} ORDER BY SystemModstamp"  # noqa: S608
        headers = (
            {"Sforce-Query-Options": f"batchSize={self.query_batch_size}"} if self.query_batch_size else {}
        )
        page: dict[str, Any] = self._call("GET", "/query", params={"q": soql}, headers=headers).json()
        records: list[dict[str, Any]] = []
        while True:
            records += [{k: v for k, v in r.items() if k != "attributes"} for r in page.get("records", [])]
            next_url = page.get("nextRecordsUrl")
            if page.get("done", True) or not next_url:
                return records
            token = self._session()
            page = self._call("GET", f"{token.instance_url}{next_url}", headers=headers).json()

    def fetch_changes(self, object_name: str, since: datetime, fields: Sequence[str]) -> list[ChangedRecord]:
        names = list(dict.fromkeys(["Id", "SystemModstamp", *fields]))
        return [
            ChangedRecord(str(row["Id"]), parse_sf_datetime(str(row["SystemModstamp"])), row)
            for row in self.fetch_changed(object_name, since, names)
        ]

    def check_connection(self) -> str:
        limits: dict[str, Any] = self._call("GET", "/limits").json()
        daily = limits.get("DailyApiRequests") or {}
        return f"daily API requests remaining {daily.get('Remaining', '?')}/{daily.get('Max', '?')}"

    def withdraw_consent(self, person: Person, withdrawn: frozenset[str]) -> Outcome | None:
        """Set the person's opt-outs: Email Opt Out for marketing, Do Not Call for SMS and calls. On their
        Contact; on their Lead where they have no Contact by external id; on the Contact their Lead was
        converted to where the Lead refuses it."""
        fields = {
            name: True
            for name, category in (("HasOptedOutOfEmail", MARKETING), ("DoNotCall", COMMUNICATION))
            if category in withdrawn
        }
        if not fields:
            return None
        key = f"user:{person.user_id}"
        record = Record(key, None, person.user_id, {DEFAULT_EXTERNAL_ID_FIELD: str(person.user_id), **fields})
        outcome = self.upsert_one("Contact", DEFAULT_EXTERNAL_ID_FIELD, record)
        if outcome.status == SyncStatus.FAILED and outcome.error == "REQUIRED_FIELD_MISSING":
            # No Contact of theirs (an upsert would create one, which needs a name): their Lead, if any.
            outcome = self.upsert_one("Lead", DEFAULT_EXTERNAL_ID_FIELD, record)
            if outcome.status == SyncStatus.FAILED and outcome.error == CONVERTED_LEAD:
                outcome = self._to_converted(DEFAULT_EXTERNAL_ID_FIELD, [record]).get(key, outcome)
        if outcome.status == SyncStatus.FAILED and outcome.error == "REQUIRED_FIELD_MISSING":
            return Outcome(key, SyncStatus.UNCHANGED, error="not found")
        return Outcome(key, outcome.status, remote_id=",".join(sorted(fields)))

    def erase(self, person: Person) -> Outcome:
        """Delete the person's Contact and Lead, the Contact their Lead was converted to, their health goals'
        Opportunities and their own Account, by external id (the converted Contact by its Id, which the Lead
        names: it may not carry the external id). Their contact roles go with the Contact and the
        Opportunities; a clinic's Account is the clinic's, not the person's, and stays.

        Deleted records go to the Recycle Bin (15 days) before Salesforce purges them.
        """
        key = f"user:{person.user_id}"
        lead = self._lead_states([str(person.user_id)]).get(str(person.user_id))
        targets: list[tuple[str, str | None, object]] = [
            (name, self.external_id_field, person.user_id) for name in ERASABLE_OBJECTS
        ]
        if lead is not None and lead.converted and lead.contact_id:
            targets.append(("Contact", None, lead.contact_id))
        targets += [("Opportunity", GOAL_EXTERNAL_ID_FIELD, goal_id) for goal_id in person.goal_ids]
        targets.append(("Account", ACCOUNT_ID_FIELD, person_account_id(person.user_id)))
        deleted: list[str] = []
        for object_name, id_field, value in targets:
            path = (
                f"/sobjects/{object_name}/{value}"
                if id_field is None
                else f"/sobjects/{object_name}/{id_field}/{value}"
            )
            response = self._call("DELETE", path, allow_statuses=TABLE.expect("gone"))
            if response.status_code != 404 and object_name not in deleted:
                deleted.append(object_name)
        if not deleted:
            return Outcome(key, SyncStatus.UNCHANGED, error="not found")
        return Outcome(key, SyncStatus.ERASED, remote_id=",".join(deleted))

    def close(self) -> None:
        super().close()
        self.auth_http.close()


def _with_text_key(fields: Mapping[str, Any], upsert_key: str) -> dict[str, Any]:
    """External-id fields are text: 42 is sent as "42", as the single-record URL would carry it."""
    out = dict(fields)
    if out.get(upsert_key) is not None:
        out[upsert_key] = str(out[upsert_key])
    return out


def _first_status_code(result: Mapping[str, Any]) -> str:
    # statusCode only: Salesforce's messages can quote the refused value.
    errors = result.get("errors") or [{}]
    return str(errors[0].get("statusCode") or "error")


def _error_code(body: Any) -> str:
    """The first errorCode of a REST error body (a list of {message, errorCode, fields})."""
    first = body[0] if isinstance(body, list) and body and isinstance(body[0], dict) else {}
    return str(first.get("errorCode") or "error")


def _outcome(record: Record, result: Mapping[str, Any]) -> Outcome:
    if result.get("success"):
        status = SyncStatus.CREATED if result.get("created") else SyncStatus.UPDATED
        return Outcome(record.record_key, status, remote_id=result.get("id"))
    return Outcome(record.record_key, SyncStatus.FAILED, error=_first_status_code(result))


def _outcomes(records: Sequence[Record], results: list[dict[str, Any]]) -> list[Outcome]:
    """One outcome per record from a collection's results, in order; a record without a result failed."""
    outcomes = [_outcome(record, result) for record, result in zip(records, results, strict=False)]
    return outcomes + [
        Outcome(r.record_key, SyncStatus.FAILED, error="no result from salesforce")
        for r in records[len(outcomes) :]
    ]


def _sub_outcomes(records: Sequence[Record], answer: tuple[int, Any]) -> list[Outcome]:
    """A Composite subrequest's outcomes: its results, or its refusal (an error list) for every record."""
    status, body = answer
    if status < 300 and isinstance(body, list):
        return _outcomes(records, body)
    return [Outcome(r.record_key, SyncStatus.FAILED, error=_error_code(body)) for r in records]


def _refused_accounts(accounts: Sequence[Mapping[str, Any]], answer: tuple[int, Any]) -> dict[str, str]:
    """Account external id (lower case) -> the code it was refused with."""
    status, body = answer
    if status >= 300 or not isinstance(body, list):
        return {str(a[ACCOUNT_ID_FIELD]).lower(): _error_code(body) for a in accounts}
    return {
        str(a[ACCOUNT_ID_FIELD]).lower(): _first_status_code(result)
        for a, result in zip(accounts, body, strict=False)
        if not result.get("success")
    }


def _configured_grant(consumer_key: str, login_url: str, own: SalesforceSettings) -> Grant:
    """JWT bearer when a private key is configured, else client credentials; NotConfigured without either."""
    private_key = SalesforceSettings.secret("SALESFORCE_PRIVATE_KEY")
    if private_key is None and own.private_key_file is not None:
        private_key = SecretStr(own.private_key_file.read_text())
    if private_key is not None:
        if not own.username:
            raise NotConfigured("salesforce: the JWT bearer flow needs SALESFORCE_USERNAME")
        audience = own.jwt_audience or jwt_audience(login_url)
        return JwtBearerGrant(consumer_key, own.username, private_key, audience)
    client_secret = SalesforceSettings.secret("SALESFORCE_CLIENT_SECRET")
    if client_secret is not None:
        return ClientCredentialsGrant(consumer_key, client_secret)
    raise NotConfigured(
        "salesforce: SALESFORCE_CONSUMER_KEY is set but neither SALESFORCE_PRIVATE_KEY(_FILE) "
        "nor SALESFORCE_CLIENT_SECRET"
    )
