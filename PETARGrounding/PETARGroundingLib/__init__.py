"""Slicer-free logic of the PETARGrounding module (shared pieces come from PETARReportLib)."""
from .grounding import CandidateList, candidate_mask, result_summary, segment_name, validate_text

__all__ = ["CandidateList", "candidate_mask", "result_summary", "segment_name", "validate_text"]
