"""Epic FHIR R4: Observations of biomarker results and assessment scores for the person's Patient, by
SMART Backend Services (see `connector`); its stand-in is `sandbox/fhir.py`."""

from connectors.epic_fhir.connector import ERASURE_DECISION, SURVEYS_OFF, EpicFhirConnector
from connectors.epic_fhir.writes import Capabilities

CONNECTOR = EpicFhirConnector

__all__ = ["CONNECTOR", "ERASURE_DECISION", "SURVEYS_OFF", "Capabilities", "EpicFhirConnector"]
