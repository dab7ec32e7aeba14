"""Finding-text parser: one report sentence → the numbers and words a grounding engine needs.

Standard library only (it runs inside 3D Slicer and can be loaded by path). The text is scanned once into protected
spans, in priority order — slice/series groups, dates, sizes (and distances), isotopes, numbers that are not SUVs
(percent, HU, ordinals, "segment 7", "L3", "4R", "Deauville 4", durations), SUV keywords — and the numbers left next
to an SUV keyword are SUV values.

SUV: "SUVmax", "SUV max", "SUV(max)", "max/maximum/highest SUV" and a plain "SUV" are SUVmax; SUVpeak/SUVmean/SUL are
not (their numbers are only removed by `text_for_encoder`). Values run on after a keyword through fillers ("of",
"approximately", "=", "has increased", "respectively"), "and", commas and protected spans. A value is prior after
previously/prior/from/versus/compared to, or when "previously"/"on prior" follows it; "from X to Y" → prior X, current
Y; "to X from Y" → current X, prior Y; "was X" is prior only when another value is current; "ranging from X to Y" /
"between X and Y" is a range (several lesions, `suv_max` the highest). After the first keyword a bare decimal ("...
and 5.2 in the right axilla") is one more value unless a reference word precedes it (liver, blood pool, background).

Slices: image/slice/im/img/section N (axial, "#", "no."), "series S, image N", "image N of series S", "(image N,
series S)", "(S:N)", "series/image S/N", "images 100-104" (the middle plane). A group is coronal/sagittal/MIP when it
says so, when such a word precedes it in the same clause (30 characters) or "(coronal)" follows it: it never gives
`axial_slice` and its series is not recorded. A slice right after a prior value ("previously 5.2 (image 229)") is the
prior scan's. `axial_slice`/`series` come from the first axial (or unqualified) group.

Several lesions: `lesion_count` is the most of — current SUV values (a range counts 2), distinct axial slices, a
count before a plural lesion noun ("two nodes"), 2 for "multiple/several/both ... <plural noun>" or a plural lesion
noun in the subject ("Bilateral hilar nodes, ..."). `suv_max`, `axial_slice`, `series`, `size_mm` and `site` then
describe the first lesion named. `index_lesion` (an attribute, not in `to_dict`) is True when several lesions are
described but one is singled out ("the largest ...", "the most avid ..."): the numbers then describe that lesion.

Negative (lesion_count 0): a cue ("no FDG-avid ...", "no evidence of", "without ... uptake", "negative for", "no
longer", "resolved", "physiologic", "unremarkable") and no current SUV value; "not avid"/"non-avid" count even with
one. "no other/additional ..." after a described lesion, "no change", "no necrosis" are not negative.

Site: the first phrase of anatomy words (side/position modifiers, region adjectives such as axillary/hilar, anatomy
nouns such as node/lobe/liver, part nouns such as body/tail after them, "X of the Y", "L3", "segment 7", "station
4R"), lower-case except levels and stations ("L3 vertebral body"); lesion nouns (nodule, mass, focus) end it; liver
segments become "liver segment N". Laterality: left/right (-sided, Lt/Rt, "L"/"R" before an anatomy word, stations
4R/10L), both sides or "bilateral" → bilateral, else a midline structure (mediastinal, subcarinal, vertebra,
prostate) → midline; "left ventricle" is not a side.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

try:
    from ..errors import InputError
except ImportError:  # loaded by path, without the petar package
    class InputError(ValueError):
        exit_code = 2

__all__ = ["ParsedFinding", "parse_finding", "text_for_encoder"]

_FIELDS = ("suv_max", "suv_prior", "axial_slice", "series", "size_mm", "laterality", "site", "tracer", "negative",
           "lesion_count")


@dataclass
class ParsedFinding:
    text: str
    suv_max: float | None = None          # the current scan's SUVmax
    suv_prior: float | None = None        # a prior scan's value, when the sentence gives one
    axial_slice: int | None = None        # report numbering (DESIGN.md §2); never a coronal/sagittal image number
    series: int | None = None
    size_mm: list = field(default_factory=list)
    laterality: str | None = None         # left | right | bilateral | midline | None
    site: str | None = None
    tracer: str | None = None             # FDG | PSMA | DOTATATE | fluciclovine | None
    negative: bool = False
    lesion_count: int = 1
    index_lesion: bool = False            # several lesions, numbers of the one singled out ("the largest ...")

    def to_dict(self) -> dict:
        return {"text": self.text, **{k: list(self.size_mm) if k == "size_mm" else getattr(self, k) for k in _FIELDS}}


# ---------------------------------------------------------------- patterns
_NORMALISE = str.maketrans({"×": "x", "–": "-", "—": "-", "−": "-", "\u00a0": " ", "’": "'", "＃": "#"})
_N = r"\d+(?:\.\d+)?"
_IMG = r"(?:slices?|images?|img|im|sections?)"
_ORIENT = r"(?:axial|trans-?axial|transverse|coronal|sagittal|cor|sag|ax|mip)"
_O = rf"(?:\b(?P<o>{_ORIENT})\.?\s+)?"
_ENDN = r"(?![\d.]?\d)"
_PAIR_RE = re.compile(rf"(?:{_O}\b(?P<kw>series\s*/\s*image|se\s*/\s*im|ser\s*/\s*img|{_IMG}|series)\b\.?\s*#?\s*|"
                      rf"(?P<open>[(\[,;]\s*))(?P<s>\d{{1,3}})\s*(?P<sep>[:/])\s*(?P<n>\d{{1,4}}){_ENDN}"
                      rf"(?!\s*[:/]\s*\d)", re.I)
_IMAGE_RE = re.compile(rf"{_O}\b(?:slice|image|img|im|section)(?P<pl>s)?\b\.?\s*(?:#|no\.?|number|num\.?)?\s*:?\s*#?"
                       rf"\s*(?P<n>\d{{1,4}}){_ENDN}(?!\s*(?::\s*\d|cm\b|mm\b|%))(?:\s*(?:-|to|through|thru)\s*"
                       rf"(?:{_IMG}\s*)?(?P<n2>\d{{1,4}}){_ENDN}(?!\s*(?:cm\b|mm\b|%)))?"
                       rf"(?:\s*(?:of|/)\s*\d{{1,4}}{_ENDN})?", re.I)
_MORE_RE = re.compile(r"(?:\s*(?:,|,?\s*and|&)\s*\d{1,4}(?![\d.]?\d)(?!\s*(?:cm\b|mm\b|%)))+", re.I)
_SERIES_RE = re.compile(rf"{_O}\b(?:series|ser|se)\b\.?\s*(?:#|no\.|number)?\s*:?\s*(?P<s>\d{{1,4}}){_ENDN}"
                        rf"(?!\s*[:/]\s*\d)", re.I)
_MONTH = (r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?|"
          r"oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\b\.?")
_DATE_RE = re.compile(rf"\b\d{{1,2}}([/.-])\d{{1,2}}\1\d{{2,4}}\b|\b\d{{4}}-\d{{1,2}}-\d{{1,2}}\b|\b\d{{1,2}}/\d{{4}}\b"
                      rf"|\b{_MONTH}\s+\d{{1,2}}(?:st|nd|rd|th)?\b(?:,?\s+\d{{4}}\b)?|\b\d{{1,2}}(?:st|nd|rd|th)?\s+"
                      rf"{_MONTH}(?:,?\s+\d{{4}}\b)?|\b{_MONTH}\s+\d{{4}}\b|\b(?:19|20)\d{{2}}\b(?!\.\d)", re.I)
_SIZE_RE = re.compile(rf"\b(?P<a>{_N})(?:\s*-?\s*(?P<ua>cm|mm))?(?:\s*(?:x|by|\*)\s*(?P<b>{_N})(?:\s*-?\s*"
                      rf"(?P<ub>cm|mm))?)?(?:\s*(?:x|by|\*)\s*(?P<c>{_N}))?\s*-?\s*(?P<u>cm|mm)\b(?!\s*\^)", re.I)
_DISTANCE_RE = re.compile(r"\s*(?:from|below|above|beneath|inferior|superior|lateral|medial|proximal|distal|anterior|"
                          r"posterior|away|deep|beyond|to\s+the)\b", re.I)
_ISOTOPE_RE = re.compile(r"\b(?:ga|cu|zr|tc|lu|f|c|in|i|y)-\d{1,3}m?\b|\b\d{1,3}m?-?(?:ga|cu|zr|tc|lu|f|c|in|i|y)\b|"
                         r"\b(?:ga|cu|zr|f)\s?(?:68|64|89|18)\b|\bpsma-?(?:11|1007|617)\b", re.I)
_SKIP_RE = re.compile(r"\b\d+(?:\.\d+)?\s*(?:%|percent\b|-?fold\b|times\b|hu\b|mci\b|mbq\b|min(?:utes?)?\b|hours?\b|"
                      r"hrs?\b|days?\b|weeks?\b|months?\b|years?\b|cycles?\b)|\b\d+(?:st|nd|rd|th)\b|"
                      r"\b[CTLS]\d{1,2}(?:\s*-\s*[CTLS]?\d{1,2})?\b|\b\d{1,2}[RL]\b|\b(?:segments?|levels?|stations?|"
                      r"zones?|ribs?|deauville(?:\s+score)?|krenning(?:\s+score)?|score|grade|stage|cycle|"
                      r"(?:psma|pi|lung|bi)-?rads)\s*(?:of\s+)?[#:]?\s*\d+[a-z]?\b", re.I)
_KW_RE = re.compile(r"(?P<other>\b(?:suv|sul)\s*[-_]?\s*\(?\s*(?:peak|mean|min|avg|average|lbm|bsa|ibw)\b\)?|"
                    r"\b(?:peak|mean|average|minimum)\s+(?:suv|sul)s?\b|\bsul\s*[-_]?\s*\(?\s*max(?:imum)?\b\)?|"
                    r"\bmax(?:imum|imal|\.)?\s+sul\b)|(?P<max>\bsuv\s*[-_]?\s*\(?\s*max(?:imum|imal)?s?\b\)?|"
                    r"\b(?:max(?:imum|imal)?\.?|highest)\s+suvs?\b)|(?P<generic>\bsuvs?\b)", re.I)
_TOKEN_RE = re.compile(r"\d+(?:\.\d+)?|[A-Za-z]+(?:[-/][A-Za-z]+)*|\S")
_TRACERS = (("FDG", r"\bfdg|fluorodeoxyglucose"),
            ("PSMA", r"psma|dcfpyl|\bpyl\b|piflufolastat|pylarify|gozetotide|illuccix|locametz|flotufolastat|posluma"),
            ("DOTATATE", r"dotatate|dotatoc|dotanoc|netspot|detectnet|somatostatin"),
            ("fluciclovine", r"fluciclovine|axumin|facbc"))
_ADVERB = r"(?:(?:significantly|definitely|particularly|clearly|appreciably|abnormally)\s+)?(?:[a-z]+[- ])?"
_STRONG_NEG = (rf"\bnot\s+{_ADVERB}(?:avid|hypermetabolic)\b|\bnon-?(?:[a-z]+-?)?avid\b|\bnon-?hypermetabolic\b|"
               r"\bno\s+longer\s+(?:[a-z]+[- ])?(?:avid|hypermetabolic)\b")
_STRONG_NEG_RE = re.compile(_STRONG_NEG, re.I)     # "not avid" holds even with an SUV value given
_DISEASE = r"hypermetabol\w*|uptake|activity|metasta\w*|disease|recurren\w*|malignan\w*|lymphadenopathy"
_NEG_RE = re.compile(
    r"\bno\s+(?!(?:significant\s+|interval\s+|appreciable\s+|substantial\s+)*(?:change|difference|increase|decrease|"
    rf"growth)\b)(?:longer\b|(?:evidence|signs?)\s+of\b|(?:[\w-]+\s+){{0,3}}?(?:[\w-]*avid\w*|fdg|psma|dotatate|"
    rf"{_DISEASE}|adenopathy|lesions?|nodes?|foci|focus|masses|tumou?rs?)\b)|\bwithout\s+(?:(?:evidence|signs?)\s+of"
    rf"\s+)?(?:[\w-]+\s+){{0,3}}?(?:[\w-]*avid\w*|{_DISEASE})\b|\bnot\s+{_ADVERB}(?:seen|visuali[sz]ed|identified|"
    r"present)\b|\bnegative\s+(?:for|study|scan|exam)\b|\b(?:absence|free)\s+of\b|\bresol(?:ved|ution)\b|"
    rf"\bphysiologic(?:al)?\b|\bunremarkable\b|\bwithin\s+normal\s+limits\b|{_STRONG_NEG}", re.I)
_PARTIAL_RE = re.compile(r"(?:partial(?:ly)?|near(?:ly)?|incomplete(?:ly)?|almost|mostly)\s*-?\s*$", re.I)
_OTHER_RE = re.compile(r"\b(?:other|additional|further|remaining|elsewhere|more)\b", re.I)
_INDEX_RE = re.compile(r"\b(?:largest|biggest|dominant|hottest|index|most\s+(?:avid|intense|hypermetabolic|"
                       r"conspicuous|prominent|active))\b", re.I)

_LESIONS = "nodes lesions foci masses nodules metastases mets deposits implants opacities tumors tumours sites areas"
_PLURAL = rf"(?:{'|'.join(_LESIONS.split())})"
_COUNT_WORDS = {w: i + 2 for i, w in enumerate("two three four five six seven eight nine ten eleven twelve".split())}
_COUNT_RE = re.compile(rf"(?<![\d.])\b(?P<w>{'|'.join(_COUNT_WORDS)}|[2-9]|1\d)\b(?!\s*(?:cm|mm)\b)\s+"
                       rf"(?:[\w-]+\s+){{0,4}}?{_PLURAL}\b", re.I)
_MANY_RE = re.compile(rf"\b(?:multiple|several|numerous|innumerable|scattered|few|various|many|both)\s+"
                      rf"(?:[\w-]+\s+){{0,4}}?{_PLURAL}\b", re.I)
_SUBJECT_END = re.compile(r"[,;:(]|\d|\b(?:with|measuring|which|that|in|at|on|along|within|demonstrat\w*|show\w*|is|"
                          r"are|was|were|has|have|seen|noted|again|compatible|consistent|suspicious|concerning|"
                          r"suv\w*)\b", re.I)

_FILLER = set("of is was measures measuring measured approximately approx about around roughly circa ca nearly up down "
              "value values the an a at with has have had been be increased decreased increasing decreasing increase "
              "decrease risen rose fallen fell declined dropped changed interval slightly mildly markedly "
              "significantly as which that and respectively g/ml g ml bw on today this study scan exam examination pet "
              "ct pet/ct range ranging ranges between compared comparison relative versus vs from to now currently "
              "current was then previously previous prior baseline earlier before formerly".split())
_PUNCT_FILLER = set(",()[]=:~≈<>≥≤-/")
_ABBREV = {"vs", "approx", "ca", "max", "no", "im", "se"}
_RANGE = {"range", "ranging", "ranges", "between"}
_AFTER_CUES = {"previously", "prior", "baseline", "earlier", "before", "formerly"}
_PRIOR_CUES = {"previous", "from", "versus", "vs", "compared", "relative", "then"} | _AFTER_CUES
_CURRENT_CUES = {"now", "currently", "current", "today", "to"}
_REFERENCE = {"liver", "blood", "pool", "background", "reference", "ratio", "mediastinum", "aorta", "aortic",
              "peak", "mean", "spleen", "score", "deauville"}
_LESION_NOUNS = set(_LESIONS.split()) | {"node", "lesion", "focus", "mass", "nodule", "other", "additional", "more"}

_SIDE = {"left": "left", "right": "right", "left-sided": "left", "right-sided": "right", "lt": "left", "rt": "right",
         "bilateral": "bilateral", "bilaterally": "bilateral"}
_POS = set("upper lower middle mid superior inferior anterior posterior medial lateral deep superficial external "
           "internal common proximal distal high low apical basal central peripheral outer inner main anterolateral "
           "posterolateral anteromedial posteromedial paramedian".split())
_ADJ = set("axillary hilar perihilar mediastinal cervical supraclavicular infraclavicular inguinal femoral iliac "
           "obturator retroperitoneal para-aortic paraaortic periaortic aortocaval retrocaval paracaval precaval "
           "portocaval mesenteric peritoneal retrocrural pleural subpleural pericardial epicardial cardiophrenic "
           "paracardiac pelvic perirectal mesorectal presacral sacral subcarinal prevascular paratracheal pretracheal "
           "precarinal paraesophageal esophageal mammary intramammary subpectoral pectoral submandibular submental "
           "intraparotid jugular jugulodigastric retropharyngeal occipital preauricular periportal portal "
           "gastrohepatic celiac peripancreatic pancreatic hepatic splenic renal adrenal pulmonary lung osseous bony "
           "skeletal vertebral costal sternal humeral scapular clavicular acetabular pubic ischial gastric duodenal "
           "colonic rectal sigmoid cecal jejunal ileal anal prostatic uterine endometrial ovarian adnexal testicular "
           "thyroid tonsillar nasopharyngeal oropharyngeal hypopharyngeal laryngeal glottic supraglottic lingual "
           "cerebral cerebellar intracranial dural biliary subcutaneous cutaneous intramuscular paraspinal thoracic "
           "lumbar cranial calvarial orbital sinonasal nasal mandibular maxillary subclavian paravertebral perineal "
           "popliteal epitrochlear lymph nodal breast chest abdominal gluteal spinal".split())
_HEAD = set("node nodes lymphadenopathy adenopathy lobe lobes lung lungs lingula liver segment bone bones vertebra "
            "vertebrae spine rib ribs ilium sacrum coccyx acetabulum pubis ischium femur humerus scapula clavicle "
            "sternum manubrium skull calvarium mandible maxilla pelvis adrenal adrenals pancreas spleen kidney kidneys "
            "bladder prostate breast breasts thyroid mediastinum hilum hila axilla axillae esophagus stomach colon "
            "rectum cecum duodenum jejunum ileum bowel peritoneum omentum pleura muscle skin brain cerebellum tonsil "
            "nasopharynx oropharynx hypopharynx larynx tongue uterus endometrium cervix ovary ovaries adnexa testis "
            "gallbladder neck chest abdomen groin trachea mesentery appendix anus orbit sinus parotid marrow "
            "hemithorax".split())
_CONN = set("body head tail neck wing crest ala pedicle process arch tip base apex dome bed gland glands region space "
            "fossa angle margin wall tissue tissues parenchyma cortex chain quadrant uncinate".split())
_MIDLINE = set("midline mediastinal mediastinum prevascular subcarinal precarinal pretracheal aortocaval sternum "
               "sternal manubrium vertebra vertebrae vertebral spine spinal sacrum sacral coccyx presacral prostate "
               "prostatic bladder uterus uterine cervix rectum rectal esophagus esophageal trachea nasopharynx "
               "nasopharyngeal larynx laryngeal anal anus".split())
_LEVEL_RE = re.compile(r"^(?:[CTLS]\d{1,2}(?:-[CTLS]?\d{1,2})?|\d{1,2}[RL])$", re.I)
_ROMAN = {"i": 1, "ii": 2, "iii": 3, "iv": 4, "v": 5, "vi": 6, "vii": 7, "viii": 8}


# ---------------------------------------------------------------- scanning
@dataclass
class _Tok:
    kind: str            # num | word | punct | kw | span
    text: str            # lower-case
    start: int
    end: int
    info: object = None  # kw class (max | generic | other), or span kind


class _Scan:
    """Protected spans, slice groups and tokens of one normalised sentence."""

    def __init__(self, text: str):
        self.text, self.spans = text, []          # spans: (start, end, kind, match)
        self.groups = self._slices()
        for rx, kind in ((_DATE_RE, "date"), (_SIZE_RE, "size"), (_ISOTOPE_RE, "skip"), (_SKIP_RE, "skip"),
                         (_KW_RE, "kw")):
            for m in rx.finditer(text):
                far = kind == "size" and (_DISTANCE_RE.match(text, m.end()) or re.search(r"\bwithin\s*$",
                                                                                         text[:m.start()], re.I))
                self._add(m.start(), m.end(), "distance" if far else kind, m)
        self.spans.sort(key=lambda s: s[0])
        self.toks, pos = [], 0
        for a, b, kind, m in self.spans + [(len(text), len(text), None, None)]:
            for t in _TOKEN_RE.finditer(text, pos, a):
                w = t.group(0).lower()
                self.toks.append(_Tok("num" if w[0].isdigit() else "word" if w[0].isalpha() else "punct", w,
                                      t.start(), t.end()))
            if kind is not None:
                self.toks.append(_Tok("kw", m.group(0).lower(), a, b, m.lastgroup) if kind == "kw" else
                                 _Tok("span", text[a:b].lower(), a, b, kind))
            pos = max(pos, b)

    def _add(self, a, b, kind, data) -> bool:
        if any(a < e and s < b for s, e, _, _ in self.spans):
            return False
        self.spans.append((a, b, kind, data))
        return True

    def _slices(self) -> list:
        text, ms = self.text, []
        for rx, kind in ((_PAIR_RE, "pair"), (_IMAGE_RE, "image"), (_SERIES_RE, "series")):
            for m in rx.finditer(text):
                o, a = (m.group("o") or "").lower(), m.start()
                if kind == "pair":
                    kw = (m.group("kw") or "").lower().replace(" ", "")
                    closed = m.group("open") and re.match(r"\s*\)", text[m.end():])      # "(3/120)"
                    if m.group("sep") != (("/" if "/" in kw else ":") if kw else "/" if closed else ":") and not (
                            m.group("open") and m.group("sep") == ":"):
                        continue
                    a, d = m.start("s") if m.group("open") else a, {"s": int(m.group("s")), "n": int(m.group("n"))}
                elif kind == "series":
                    d = {"s": int(m.group("s"))}
                else:
                    d = {"n": (int(m.group("n")) + int(m.group("n2") or m.group("n"))) // 2}
                if self._add(a, m.end(), "slice", None):
                    ms.append({"a": a, "b": m.end(), "kind": kind, "o": o, **d})
                    more = _MORE_RE.match(text, m.end()) if kind == "image" and m.group("pl") else None
                    if more and self._add(more.start(), more.end(), "slice", None):   # "images 210 and 215"
                        ms += [{"a": n.start(), "b": n.end(), "kind": "image", "o": o, "n": int(n.group(0))}
                               for n in re.finditer(r"\d+", text[:more.end()]) if n.start() >= more.start()]
        ms.sort(key=lambda g: g["a"])
        gaps = ((("image", "series"), r"\s*,?\s*(?:of|on|in|from)\s+(?:the\s+)?"),  # "image N of series S" first,
                (("series", "image"), r"[\s,;:/]*(?:and\s*)?"),                     # then "series S, image N",
                (("image", "series"), r"\s*[,;/]?\s*\(?\s*"))                      # then "image N (series S)"
        for kinds, gap in gaps:
            i = 0
            while i + 1 < len(ms):
                g, nxt = ms[i], ms[i + 1]
                if (g["kind"], nxt["kind"]) == kinds and re.fullmatch(gap, text[g["b"]:nxt["a"]]):
                    opened = "(" in text[g["b"]:nxt["a"]]
                    g.update({k: nxt[k] for k in ("s", "n") if k in nxt}, b=nxt["b"], o=g["o"] or nxt["o"],
                             kind="pair")
                    if opened and (m := re.match(r"\s*\)", text[g["b"]:])):
                        g["b"] += m.end()
                    del ms[i + 1]
                i += 1
        for j, g in enumerate(ms):      # orientation from the context when the group does not say
            if not g["o"]:
                before = re.split(r"[.;)\d]", text[max(ms[j - 1]["b"] if j else 0, g["a"] - 30):g["a"]])[-1]
                words = re.findall(rf"\b{_ORIENT}\b", before, re.I)
                after = re.match(rf"\s*[(,]?\s*(?:(?:on|in)\s+(?:the\s+)?)?(?P<o>{_ORIENT})\b"
                                 r"(?!\s*(?:[a-z]+\s*)?#?\s*\d)", text[g["b"]:], re.I)
                g["o"] = words[-1].lower() if words else (after.group("o").lower() if after else "")
            g["axial"] = g["o"] not in ("coronal", "cor", "sagittal", "sag", "mip")
        return ms


def _next_significant(toks, j, skip=frozenset(_FILLER - _CURRENT_CUES - {"and"})):
    """Index of the first token after j that is not a skipped word, "(" or a protected span other than a size."""
    j += 1
    while j < len(toks) and ((toks[j].kind == "span" and toks[j].info != "size") or toks[j].text in ("(", "[")
                             or (toks[j].kind == "word" and toks[j].text in skip)):
        j += 1
    return j


def _pre_cue(toks, i) -> str:
    """The cue word right before keyword i: "(previously SUVmax 5.2)", "now SUVmax 7.4", "blood pool SUV 1.8"."""
    k = i - 1
    while k >= 0 and (toks[k].text in ("(", "[", "the", "a", "an", "of", "with", "measured", "measuring", "had", "has",
                                       "having", "showed", "demonstrated", "value") or
                      (toks[k].text == "to" and k and toks[k - 1].text in ("compared", "relative"))):
        k -= 1
    cue = toks[k].text if k >= 0 and toks[k].kind == "word" else ""
    if cue == "liver" and k and (toks[k - 1].text in ("normal", "background", "reference") or any(
            t.kind == "kw" and t.info != "other" for t in toks[:k])):
        return "reference"      # "normal liver SUVmax 2.3", "node SUVmax 3.1, liver SUVmax 3.0"
    while k >= 0 and (toks[k].info == "size" or toks[k].text in (",", "and", "measuring", "measured")):
        k -= 1                  # "(previously 0.9 cm, SUVmax 3.2)", "previously 1.3 cm and SUVmax 8.0"
    if k >= 0 and toks[k].text in ("previously", "prior") and not (k and toks[k - 1].text in ("with", "to", "the",
                                                                                              "on")):
        return cue if cue in _CURRENT_CUES else "previously"
    return cue


def _zone(toks, i):
    """SUV values after keyword i: ([token, class], is_range); class cur | prior | weak | other."""
    vals, pending, prev, cue = [], None, "", _pre_cue(toks, i)
    is_range, reference = cue in _RANGE, cue in ("pool", "background", "reference", "parenchyma")
    if cue in _PRIOR_CUES or cue in _CURRENT_CUES or cue == "was":
        pending = "weak" if cue == "was" else "cur" if cue in _CURRENT_CUES else "prior"
    for j in range(i + 1, len(toks)):
        t = toks[j]
        if t.kind == "span":
            continue
        if t.kind == "kw" or (t.kind == "num" and j + 1 < len(toks) and toks[j + 1].text in _LESION_NOUNS):
            break
        if t.kind == "num":
            vals.append([t, pending or "cur"])
            pending = None
        elif t.kind == "punct":
            if t.text == ";" or (t.text == "." and prev not in _ABBREV) or t.text not in _PUNCT_FILLER | {"."}:
                break
        elif t.text in _RANGE:
            is_range = True
        elif t.text in _AFTER_CUES:     # before a number it introduces it, after one it marks it
            k = _next_significant(toks, j)
            nk = toks[k] if k < len(toks) else None
            if nk is not None and nk.kind == "num":
                pending = "prior"
            elif nk is not None and nk.kind in ("kw", "span"):
                break
            elif nk is None or nk.kind == "punct" or nk.text in _CURRENT_CUES:
                if vals and vals[-1][1] in ("cur", "weak"):
                    vals[-1][1] = "prior"
            else:
                break
        elif t.text in _PRIOR_CUES or t.text == "was":
            pending = "weak" if t.text == "was" else "prior"
        elif t.text in _CURRENT_CUES:
            if not (t.text == "to" and prev in ("compared", "relative", "similar", "equal")):
                pending = "cur"
        elif t.text not in _FILLER:
            break
        prev = t.text if t.kind == "word" else prev
    if is_range or reference:
        for v in vals:
            v[1] = "other" if reference else "cur"
    return vals, is_range


def _value(tok, cls, kw=None, rng=False) -> dict:
    return {"value": float(tok.text), "cls": cls, "start": tok.start, "end": tok.end, "range": rng, "kw": kw}


def _suv_values(toks) -> list:
    """All SUV values in text order: dicts {value, cls (cur | prior | weak | other), start, end, range, kw}."""
    out, seen, first_kw = [], set(), None
    for i, t in enumerate(toks):
        if t.kind != "kw":
            continue
        first_kw = i if first_kw is None and t.info != "other" else first_kw
        vals, is_range = _zone(toks, i)
        if not vals and i and toks[i - 1].kind == "num" and toks[i - 1].start not in seen:
            vals = [[toks[i - 1], "cur"]]                                                   # "9.0 SUVmax"
        for tok, cls in vals:
            if tok.start not in seen:
                seen.add(tok.start)
                out.append(_value(tok, "other" if t.info == "other" else cls, i, is_range and t.info != "other"))
    for j, t in enumerate(toks):    # a bare decimal after the first keyword ("... and 5.2 in the right axilla"),
        if first_kw is None or t.kind != "num" or t.start in seen:         # or "previously 5.2, now SUVmax 7.4"
            continue
        before = {x.text for x in toks[max(0, j - 3):j] if x.kind == "word"}
        if j < first_kw:
            if toks[j - 1].text in _PRIOR_CUES and not (j + 1 < len(toks) and toks[j + 1].text in _LESION_NOUNS):
                out.append(_value(t, "prior"))
        elif "." in t.text and _REFERENCE & before:     # "(liver 2.1)": no lesion value, still an SUV number
            out.append(_value(t, "other"))
        elif "." in t.text:
            k = _next_significant(toks, j, skip=frozenset({"on", "the", ","}))
            after = toks[k].text if k < len(toks) else ""
            out.append(_value(t, "prior" if before & (_PRIOR_CUES | {"was"}) or after in _AFTER_CUES else "cur"))
    return sorted(out, key=lambda v: v["start"])


# ---------------------------------------------------------------- words
def _words(text):
    text = re.sub(r"\b(Lt|Rt|LT|RT|L|R)\.(?=\s+[A-Za-z])", r"\1 ", text)      # "Lt. axillary"
    return [(m.group(0), m.group(0).lower(), m.start()) for m in
            re.finditer(r"[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*|[^\sA-Za-z0-9]", text)]


def _category(words, i) -> str:
    orig, w, _ = words[i]
    nxt = words[i + 1][1] if i + 1 < len(words) else ""
    if w in _SIDE and (w not in ("lt", "rt") or orig in ("Lt", "Rt", "LT", "RT")):
        return "side"
    if orig in ("L", "R") and nxt and _category(words, i + 1) in ("adj", "head"):
        return "side"
    if _LEVEL_RE.match(orig):
        return "lvl"
    for key in (w, w.split("-")[0] if w.split("-")[-1] in ("based", "sided") else None):
        if key in _ADJ or key in _HEAD:
            return "adj" if key in _ADJ else "head"
    if w in _CONN:
        return "conn"
    if w in ("level", "station") and re.fullmatch(r"\d+[a-z]?|[ivx]+[ab]?|\d{1,2}[rl]", nxt):
        return "head"
    if w in _POS or re.fullmatch(r"\d+(?:st|nd|rd|th)", w):
        return "pos"
    if i and words[i - 1][1] in ("segment", "segments", "level", "station") and re.fullmatch(r"\d+[ab]?|[ivx]+[ab]?",
                                                                                          w):
        return "num"
    return ""


def _site(text: str) -> str | None:
    words = _words(text)
    cats = [_category(words, i) for i in range(len(words))]
    i, spans = 0, []
    while i < len(words):
        j = i
        while j < len(words) and cats[i]:
            if cats[j]:
                j += 1
            elif words[j][0] == "(" and j + 2 < len(words) and cats[j + 1] == "lvl" and words[j + 2][0] == ")":
                j += 3          # "right paratracheal (4R) node"
            elif words[j][1] == "of" and any(c in ("adj", "head", "conn", "lvl") for c in cats[i:j]):
                k = j + 1 + (j + 1 < len(words) and words[j + 1][1] == "the")      # "tail of the pancreas"
                while k < len(words) and cats[k] in ("side", "pos"):
                    k += 1
                if k >= len(words) or cats[k] not in ("adj", "head", "lvl"):
                    break
                j = k
            else:
                break
        while j > i and (cats[j - 1] in ("pos", "side") or (cats[j - 1] == "adj" and any(
                cats[k] in ("head", "lvl") for k in range(i, j - 1)))):
            j -= 1              # "right lower lobe pulmonary nodule" → "right lower lobe"
        if any(cats[k] in ("adj", "head", "lvl") for k in range(i, j)) and not re.match(
                r"\s*(?:blood|background|reference)\b", text[words[j - 1][2] + len(words[j - 1][0]):], re.I):
            spans.append(range(i, j))
        i = max(j, i + 1)
    if not spans:
        return None
    parts = []
    for k in spans[0]:
        orig, w, _ = words[k]
        w = w.rsplit("-", 1)[0] if w.split("-")[-1] in ("based", "sided") else w
        parts.append(_SIDE[w] if w in ("lt", "rt") else {"L": "left", "R": "right"}.get(
            orig, orig.upper() if cats[k] == "lvl" or (cats[k] == "num" and words[k - 1][1] != "segment") else w))
    site = re.sub(r"\( | \)", lambda m: m.group(0).strip(), " ".join(parts))
    seg = re.search(r"\bsegments?\s+(\d|[ivx]+)([ab])?\b", text, re.I)
    if seg and re.search(r"\b(?:liver|hepatic|segments?)\b", site) and re.search(r"\b(?:liver|hepatic)\b", text, re.I):
        n = seg.group(1).lower()
        site = f"liver segment {_ROMAN.get(n, n)}{(seg.group(2) or '').lower()}"
    return site


def _laterality(text: str) -> str | None:
    words, lower = _words(text), text.lower()
    if re.search(r"\bbilateral(?:ly)?\b|\bboth\s+(?:sides|lungs|axillae|axillas|hila|kidneys|adrenals|breasts|lobes|"
                 r"groins|necks?)\b|\b(?:left\s+and\s+right|right\s+and\s+left)\b", lower):
        return "bilateral"
    sides = set()
    for i, (orig, w, _) in enumerate(words):
        nxt = words[i + 1][1] if i + 1 < len(words) else ""
        if _category(words, i) == "side" and nxt not in ("atrium", "atrial", "ventricle", "ventricular", "heart"):
            sides.add(_SIDE.get(w) or {"L": "left", "R": "right"}[orig])
        elif re.fullmatch(r"\d{1,2}[RL]", orig) and re.search(r"\b(?:node|nodes|nodal|station|level|lymph)\b", lower):
            sides.add("right" if orig[-1] == "R" else "left")
    if sides:
        return "bilateral" if len(sides) > 1 else sides.pop()
    if any(w in _MIDLINE for _, w, _ in words) or any(_LEVEL_RE.match(o) and o[0] in "CTLScstl" for o, _, _ in words):
        return "midline"
    return None


def _negative(text: str, currents: list) -> bool:
    for m in (_STRONG_NEG_RE if currents else _NEG_RE).finditer(text):
        if _PARTIAL_RE.search(text[:m.start()]):
            continue
        a, b = sorted((m.start(), currents[0]["start"])) if currents else (0, 0)
        if re.search(r";|\.(?!\d)", text[a:b]):
            continue            # "node SUVmax 7.1; non-avid lung nodule": another clause
        if _OTHER_RE.search(text[m.start():m.end() + 12]) and re.search(r"\w", text[:m.start()]):
            continue            # "... node; no other avid lesions": a lesion was described first
        return True
    return False


def _size(m) -> list:
    dims = []
    for g, ug in (("a", "ua"), ("b", "ub"), ("c", None)):
        if m.group(g):
            u = (ug and m.group(ug)) or (g == "a" and m.group("b") and m.group("ub")) or m.group("u")
            dims.append(round(float(m.group(g)) * (10.0 if u.lower() == "cm" else 1.0), 4))
    return dims


def _lesion_count(text, currents, ranged, axial_slices) -> int:
    n = max(len(currents), 2 if ranged else 1, len(set(axial_slices)))
    for m in _COUNT_RE.finditer(text):
        n = max(n, _COUNT_WORDS.get(m.group("w").lower()) or int(m.group("w")))
    subject = text[:m.start()] if (m := _SUBJECT_END.search(text)) else text
    if _MANY_RE.search(text) or re.search(rf"\b{_PLURAL}\b", subject, re.I):
        n = max(n, 2)
    return n


# ---------------------------------------------------------------- API
def _analyse(text):
    if text is None or not str(text).strip():
        raise InputError("the finding text is empty: type or paste a report sentence")
    norm = " ".join(str(text).translate(_NORMALISE).split())
    return norm, _Scan(norm)


def parse_finding(text: str) -> ParsedFinding:
    """Parse one report sentence (the rules are in the module docstring)."""
    norm, scan = _analyse(text)
    values = _suv_values(scan.toks)
    weak = [v for v in values if v["cls"] == "weak"]
    has_current = any(v["cls"] == "cur" for v in values)
    for k, v in enumerate(weak):                # "was X": prior beside a current value, else the current one
        v["cls"] = "cur" if k == 0 and not has_current else "prior"
    currents = [v for v in values if v["cls"] == "cur"]
    priors = [v for v in values if v["cls"] == "prior"]
    suv = None
    if currents:
        first = currents[0]
        suv = max(v["value"] for v in currents if v["kw"] == first["kw"]) if first["range"] else first["value"]
    for g in scan.groups:       # "previously 5.2 (image 229)": a slice of the prior scan
        before = [v for v in values if v["end"] <= g["a"]]
        g["prior"] = bool(before) and before[-1]["cls"] == "prior" and bool(
            re.fullmatch(r"\s*[(\[]?\s*(?:on\s+|at\s+)?", norm[before[-1]["end"]:g["a"]]))
    axial = [g for g in scan.groups if g["axial"] and "n" in g and not g["prior"]]
    series = axial[0].get("s") if axial else None
    if series is None:
        series = next((g["s"] for g in scan.groups if g["axial"] and "s" in g and not g["prior"]), None)
    sizes = [m for _, _, kind, m in scan.spans if kind == "size"]
    tracer = min(((m.start(), name) for name, rx in _TRACERS if (m := re.search(rx, norm, re.I))),
                 default=(0, None))[1]
    negative = _negative(norm, currents)
    count = 0 if negative else _lesion_count(norm, currents, any(v["range"] for v in currents),
                                             [g["n"] for g in axial])
    return ParsedFinding(text=str(text), suv_max=suv, suv_prior=priors[0]["value"] if priors else None,
                         axial_slice=axial[0]["n"] if axial else None, series=series,
                         size_mm=_size(sizes[0]) if sizes else [], laterality=_laterality(norm), site=_site(norm),
                         tracer=tracer, negative=negative, lesion_count=count,
                         index_lesion=count > 1 and bool(_INDEX_RE.search(norm)))


_GONE = "\x00"
_GLUE_RE = re.compile(r"(?:\b(?:of|is|was|at|on|in|from|to|and|or|up\s+to|approximately|approx\.?|about|"
                      r"around|measuring|previously|prior|versus|vs\.?|compared\s+(?:to|with)|now|currently)|"
                      rf"[=:~≈<>≥≤])\s*(?={_GONE})", re.I)


def text_for_encoder(text: str) -> str:
    """The sentence with every SUV value and slice/image/series number removed (with the words that only introduced
    them), sizes and anatomy kept, whitespace tidied: what a text-conditioned model may see (no numeric shortcut)."""
    norm, scan = _analyse(text)
    out = norm
    for a, b in sorted([(g["a"], g["b"]) for g in scan.groups] + [(v["start"], v["end"])
                                                                  for v in _suv_values(scan.toks)], reverse=True):
        out = out[:a] + _GONE + out[b:]
    while True:
        new = _GLUE_RE.sub("", out)
        new = re.sub(rf"[\s,;]*{_GONE}(?:[\s,;/-]*{_GONE})*", _GONE, new)
        new = re.sub(rf"[(\[]\s*{_GONE}?\s*[)\]]", "", new)
        if new == out:
            break
        out = new
    out = re.sub(r"\s{2,}", " ", out.replace(_GONE, " "))
    out = re.sub(r"([,;])(?:\s*[,;])+", r"\1", re.sub(r"\s+([,.;:)\]])", r"\1", re.sub(r"([(\[])\s+", r"\1", out)))
    return re.sub(r"^[\s,;:]+|[\s,;:]+(?=\.?$)", "", out).strip()
