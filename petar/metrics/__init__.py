"""Evaluation metrics: grounding (lesion-level F1, Dice; numpy + SimpleITK only) and report texts (BLEU-1/4,
ROUGE-L, METEOR, CIDEr, BERTScore; libraries of the `reports` extra, imported only when a metric runs)."""
from .grounding import RULES, CaseCounts, dice, evaluate_grounding, f1, match_all_rules, match_components
from .reports import DEFAULT_METRICS, LEXICAL_METRICS, ReportMetricPlugin, evaluate_reports, load_texts, register_plugin

__all__ = ["RULES", "CaseCounts", "dice", "evaluate_grounding", "f1", "match_all_rules", "match_components",
           "DEFAULT_METRICS", "LEXICAL_METRICS", "ReportMetricPlugin", "evaluate_reports", "load_texts",
           "register_plugin"]
