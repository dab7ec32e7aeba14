"""Grounding: a typed finding → the lesion it describes (parser, rule engine, ConTEXTual Net 3D)."""
from .api import ENGINES, ground
from .parser import ParsedFinding, parse_finding, text_for_encoder
from .result import Candidate, GroundingResult

__all__ = ["ENGINES", "Candidate", "GroundingResult", "ParsedFinding", "ground", "parse_finding", "text_for_encoder"]
