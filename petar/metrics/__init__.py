"""Evaluation metrics (numpy + SimpleITK only): grounding (lesion-level F1, Dice)."""
from .grounding import RULES, CaseCounts, dice, evaluate_grounding, f1, match_all_rules, match_components

__all__ = ["RULES", "CaseCounts", "dice", "evaluate_grounding", "f1", "match_all_rules", "match_components"]
