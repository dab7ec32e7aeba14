"""Slicer-free logic of the PETARGrounding module (shared pieces come from PETARReportLib)."""
from .grounding import (CandidateList, accept_in_service, candidate_job, candidate_mask, candidate_request,
                        ground_progress, result_summary, segment_name, validate_text)

__all__ = ["CandidateList", "accept_in_service", "candidate_job", "candidate_mask", "candidate_request",
           "ground_progress", "result_summary", "segment_name", "validate_text"]
