"""Finding-text parser: one report sentence → the numbers and words a grounding engine needs.

Standard library only: it runs inside 3D Slicer's Python and can be loaded by path. The text is scanned once into
protected spans, in priority order — slice/series groups, dates, sizes (and distances), isotopes, other numbers that
are not SUVs (percent, HU, ordinals, "segment 7", "L3", "4R", "Deauville 4", durations), SUV keywords — and the
numbers left next to an SUV keyword are SUV values.

SUV. "SUVmax", "SUV max", "SUV(max)", "max/maximum/highest SUV" and a plain "SUV" are SUVmax; SUVpeak, SUVmean and
SUL… are not (their numbers are only removed by `text_for_encoder`). After a keyword the values run on through
filler words ("of", "approximately", "=", ":", "has increased", "respectively"), "and", commas, and protected spans
(a slice group between two values). A value is *prior* after previously/prior/from/versus/vs/compared to|with, or
when "previously"/"(on) prior" follows it; "from X to Y" gives prior X, current Y; "to X from Y" current X, prior Y;
"was X" is prior only when another value is current ("SUVmax was 7.4" alone is current). "ranging from X to Y" and
"between X and Y" are ranges: several lesions, `suv_max` the highest. After the first keyword a bare decimal
elsewhere ("… and 5.2 in the right axilla") is a further value unless a reference word precedes it (liver, blood
pool, background, ratio). A keyword preceded by previously/prior/from ("(previously SUVmax 5.2)") gives prior values.

Slices. image/slice/im/img/section N (optionally axial, "#", "no.", "number"), "series S, image N", "series S image N",
"image N of series S", "(image N, series S)", "(S:N)", "series/image S/N", ranges "images 100-104" (the middle
plane). A group is coronal/sagittal/MIP when it says so, or when such a word precedes it within 30 characters of the
same clause, or "(coronal)"/"on coronal" follows it; those never give `axial_slice`, and their series is not
recorded. `axial_slice` and `series` come from the first axial (or unqualified) group; a series alone is kept when
no axial group has one.

Several lesions. `lesion_count` is the number of lesions the sentence describes: the most of — current SUV values
(a range counts 2), distinct axial slices, a count word or number before a plural lesion noun ("two nodes"), 2 for
"multiple/several/numerous/scattered/both … <plural noun>" or a plural lesion noun in the sentence's subject
("Bilateral hilar nodes, …"). Then `suv_max`, `axial_slice`, `series`, `size_mm` and `site` describe the first
lesion named (first current value, first axial group, first size, first anatomy phrase). `index_lesion` (an
attribute, not in `to_dict`) is True when several lesions are described but the sentence singles one out ("the
largest …", "the most avid …"): its numbers then describe that one lesion. A negative finding has lesion_count 0.

Negative: a negation cue ("no FDG-avid …", "no evidence of", "without … uptake/avidity", "negative for", "not avid",
"non-avid", "no longer", "resolved/resolution", "physiologic", "unremarkable") and no current SUV value. "no other/
additional/further …" after a described lesion is not a negative finding; "no change", "no necrosis" are not cues.

Site: the first phrase of anatomy words (side and position modifiers, region adjectives such as axillary/hilar,
anatomy nouns such as node/lobe/liver, part nouns such as body/tail/wing after them, "X of the Y", vertebral levels,
"segment 7", "station 4R"), lower-cased except vertebral levels and nodal stations ("L3 vertebral body", "station 4R
node"); lesion nouns (nodule, mass, lesion, focus) end it; liver segments become "liver segment N" (Roman numerals
converted). Laterality: explicit left/right (also -sided, Lt/Rt, "L"/"R" before an anatomy word, stations 4R/10L);
both sides or "bilateral" → bilateral; else midline structures (mediastinal, subcarinal, vertebra, prostate, …) →
midline. Cardiac "left ventricle/atrium" is not laterality.
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
        d = {"text": self.text}
        d.update({k: getattr(self, k) for k in _FIELDS})
        d["size_mm"] = list(self.size_mm)
        return d


# ---------------------------------------------------------------- patterns
_NORMALISE = str.maketrans({"×": "x", "–": "-", "—": "-", "−": "-", "\u00a0": " ", "’": "'", "＃": "#"})
_N = r"\d+(?:\.\d+)?"
_IMG = r"(?:slices?|images?|img|im|sections?)"
_ORIENT = r"(?:axial|trans-?axial|transverse|coronal|sagittal|cor|sag|ax|mip)"
_ENDN = r"(?![\d.]?\d)"
_PAIR_RE = re.compile(rf"(?:(?:\b(?P<o>{_ORIENT})\.?\s+)?\b(?P<kw>series\s*/\s*image|se\s*/\s*im|ser\s*/\s*img|{_IMG}|"
                      rf"series)\b\.?\s*#?\s*|(?P<open>[(\[,;]\s*))(?P<s>\d{{1,3}})\s*(?P<sep>[:/])\s*(?P<n>\d{{1,4}})"
                      rf"{_ENDN}(?!\s*[:/]\s*\d)", re.I)
_IMAGE_RE = re.compile(rf"(?:\b(?P<o>{_ORIENT})\.?\s+)?\b(?:slice|image|img|im|section)(?P<pl>s)?\b\.?\s*(?:#|no\.?|number|num\.?)?\s*:?\s*#?\s*(?P<n>\d{{1,4}})"
                       rf"{_ENDN}(?!\s*(?:[:/]\s*\d|cm\b|mm\b|%))(?:\s*(?:-|to|through|thru)\s*(?:{_IMG}\s*)?"
                       rf"(?P<n2>\d{{1,4}}){_ENDN}(?!\s*(?:cm\b|mm\b|%)))?", re.I)
_MORE_RE = re.compile(r"(?:\s*(?:,|,?\s*and|&)\s*\d{1,4}(?![\d.]?\d)(?!\s*(?:cm\b|mm\b|%)))+", re.I)
_MORE_NUM_RE = re.compile(r"\d+")
_SERIES_RE = re.compile(rf"(?:\b(?P<o>{_ORIENT})\.?\s+)?\b(?:series|ser|se)\b\.?\s*(?:#|no\.|number)?\s*:?\s*"
                        rf"(?P<s>\d{{1,4}}){_ENDN}(?!\s*[:/]\s*\d)", re.I)
_MONTH = (r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?|"
          r"oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\b\.?")
_DATE_RE = re.compile(rf"\b\d{{1,2}}([/.-])\d{{1,2}}\1\d{{2,4}}\b|\b\d{{4}}-\d{{1,2}}-\d{{1,2}}\b|\b\d{{1,2}}/\d{{4}}\b|"
                      rf"\b{_MONTH}\s+\d{{1,2}}(?:st|nd|rd|th)?\b(?:,?\s+\d{{4}}\b)?|\b\d{{1,2}}(?:st|nd|rd|th)?\s+"
                      rf"{_MONTH}(?:,?\s+\d{{4}}\b)?|\b{_MONTH}\s+\d{{4}}\b|\b(?:19|20)\d{{2}}\b(?!\.\d)", re.I)
_SIZE_RE = re.compile(rf"\b(?P<a>{_N})(?:\s*-?\s*(?P<ua>cm|mm))?(?:\s*(?:x|by|\*)\s*(?P<b>{_N})(?:\s*-?\s*(?P<ub>cm|mm))?)?"
                      rf"(?:\s*(?:x|by|\*)\s*(?P<c>{_N}))?\s*-?\s*(?P<u>cm|mm)\b(?!\s*\^)", re.I)
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
_NEG_RE = re.compile(
    r"\bno\s+(?!(?:significant\s+|interval\s+|appreciable\s+|substantial\s+)*(?:change|difference|increase|decrease|"
    r"growth)\b)(?:longer\b|(?:evidence|signs?)\s+of\b|(?:[\w-]+\s+){0,3}?(?:[\w-]*avid\w*|fdg|psma|dotatate|"
    r"hypermetabol\w*|uptake|activity|lymphadenopathy|adenopathy|metasta\w*|disease|recurren\w*|malignan\w*|"
    r"lesions?|nodes?|foci|focus|masses|tumou?rs?)\b)|\bwithout\s+(?:(?:evidence|signs?)\s+of\s+)?(?:[\w-]+\s+){0,3}?"
    r"(?:[\w-]*avid\w*|hypermetabol\w*|uptake|activity|metasta\w*|disease|recurren\w*|malignan\w*|lymphadenopathy)\b|"
    r"\bnot\s+(?:(?:significantly|definitely|particularly|clearly|appreciably|abnormally)\s+)?(?:[a-z]+-)?(?:avid|"
    r"hypermetabolic|seen|visuali[sz]ed|identified|present)\b|\bnon-?(?:[a-z]+-?)?avid\b|\bnon-?hypermetabolic\b|"
    r"\bnegative\s+(?:for|study|scan|exam)\b|\b(?:absence|free)\s+of\b|\bresol(?:ved|ution)\b|"
    r"\bphysiologic(?:al)?\b|\bunremarkable\b|\bwithin\s+normal\s+limits\b", re.I)
_PARTIAL_RE = re.compile(r"(?:partial(?:ly)?|near(?:ly)?|incomplete(?:ly)?|almost|mostly)\s*-?\s*$", re.I)
_OTHER_RE = re.compile(r"\b(?:other|additional|further|remaining|elsewhere|more)\b", re.I)
_INDEX_RE = re.compile(r"\b(?:largest|biggest|dominant|hottest|index|most\s+(?:avid|intense|hypermetabolic|"
                       r"conspicuous|prominent|active))\b", re.I)

_LESIONS = "nodes lesions foci masses nodules metastases mets deposits implants opacities tumors tumours sites areas"
_PLURAL = rf"(?:{'|'.join(_LESIONS.split())})"
_COUNT_WORDS = {w: i + 2 for i, w in enumerate("two three four five six seven eight nine ten eleven twelve".split())}
_COUNT_RE = re.compile(rf"(?<![\d.])\b(?P<w>{'|'.join(_COUNT_WORDS)}|[2-9]|1\d)\b(?!\s*(?:cm|mm)\b)\s+(?:[\w-]+\s+){{0,4}}?{_PLURAL}\b", re.I)
_MANY_RE = re.compile(rf"\b(?:multiple|several|numerous|innumerable|scattered|few|various|many|both)\s+"
                      rf"(?:[\w-]+\s+){{0,4}}?{_PLURAL}\b", re.I)
_SUBJECT_END = re.compile(r"[,;:(]|\b(?:with|measuring|which|that|in|at|on|along|within|demonstrat\w*|show\w*|is|are|"
                          r"was|were|has|have|seen|noted|again|compatible|consistent|suspicious|concerning|suv\w*)\b|\d",
                          re.I)

_FILLER = set("of is was measures measuring measured approximately approx about around roughly circa ca nearly up down "
              "value values the an a at with has have had been be increased decreased increasing decreasing increase "
              "decrease risen rose fallen fell declined dropped changed interval slightly mildly markedly "
              "significantly as which that and respectively g/ml g ml bw on today this study scan exam examination pet "
              "ct pet/ct range ranging ranges between compared comparison relative versus vs from to now currently "
              "current was then previously previous prior baseline earlier before formerly".split())
_PUNCT_FILLER = set(",()[]=:~≈<>≥≤-/")
_ABBREV = {"vs", "approx", "ca", "max", "no", "im", "se"}
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
           "intraparotid jugular jugulodigastric retropharyngeal occipital preauricular periportal portal gastrohepatic "
           "celiac peripancreatic pancreatic hepatic splenic renal adrenal pulmonary lung osseous bony skeletal "
           "vertebral costal sternal humeral scapular clavicular acetabular pubic ischial gastric duodenal colonic "
           "rectal sigmoid cecal jejunal ileal anal prostatic uterine endometrial ovarian adnexal testicular thyroid "
           "tonsillar nasopharyngeal oropharyngeal hypopharyngeal laryngeal glottic supraglottic lingual cerebral "
           "cerebellar intracranial dural biliary subcutaneous cutaneous intramuscular paraspinal thoracic lumbar "
           "cranial calvarial orbital sinonasal nasal mandibular maxillary subclavian paravertebral perineal popliteal "
           "epitrochlear lymph nodal breast chest abdominal gluteal spinal".split())
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
    info: object = None  # kw class, or span kind


class _Scan:
    """Protected spans and tokens of one normalised sentence."""

    def __init__(self, text: str):
        self.text = text
        self.spans: list = []          # (start, end, kind, data)
        self.groups = self._slices()
        for rx, kind in ((_DATE_RE, "date"), (_SIZE_RE, "size"), (_ISOTOPE_RE, "skip"), (_SKIP_RE, "skip"),
                         (_KW_RE, "kw")):
            for m in rx.finditer(text):
                k = kind
                if kind == "size" and (_DISTANCE_RE.match(text, m.end())
                                       or re.search(r"\bwithin\s*$", text[:m.start()], re.I)):
                    k = "distance"
                self._add(m.start(), m.end(), k, m)
        self.spans.sort(key=lambda s: s[0])
        self.toks = self._tokens()

    def _add(self, a, b, kind, data) -> bool:
        if any(a < e and s < b for s, e, _, _ in self.spans):
            return False
        self.spans.append((a, b, kind, data))
        return True

    def _slices(self) -> list:
        text, ms = self.text, []
        for rx, kind in ((_PAIR_RE, "pair"), (_IMAGE_RE, "image"), (_SERIES_RE, "series")):
            for m in rx.finditer(text):
                if kind == "pair":
                    kw = (m.group("kw") or "").lower().replace(" ", "")
                    if (m.group("sep") == "/") != ("/" in kw) or (m.group("open") and m.group("sep") != ":"):
                        continue
                    a = m.start("s") if m.group("open") else m.start()
                    d = {"s": int(m.group("s")), "n": int(m.group("n"))}
                else:
                    a = m.start()
                    d = {"s": int(m.group("s"))} if kind == "series" else {"n": int(m.group("n"))}
                    if kind == "image" and m.group("n2"):
                        d["n"] = (d["n"] + int(m.group("n2"))) // 2
                if self._add(a, m.end(), "slice", None):
                    ms.append({"a": a, "b": m.end(), "kind": kind, "o": (m.group("o") or "").lower(), **d})
                    more = _MORE_RE.match(text, m.end()) if kind == "image" and m.group("pl") else None
                    if more and self._add(more.start(), more.end(), "slice", None):   # "images 210 and 215"
                        for n in _MORE_NUM_RE.finditer(more.group(0)):
                            ms.append({"a": m.end() + n.start(), "b": m.end() + n.end(), "kind": "image",
                                       "o": (m.group("o") or "").lower(), "n": int(n.group(0))})
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
                    g.update({k: v for k, v in nxt.items() if k in ("s", "n")}, b=nxt["b"], o=g["o"] or nxt["o"],
                             kind="pair")
                    if opened and (m := re.match(r"\s*\)", text[g["b"]:])):
                        g["b"] += m.end()
                    del ms[i + 1]
                i += 1
        groups = ms
        for j, g in enumerate(groups):  # orientation from the context when the group does not say
            if not g["o"]:
                lo = max(groups[j - 1]["b"] if j else 0, g["a"] - 30)
                before = re.split(r"[.;)\d]", text[lo:g["a"]])[-1]
                words = re.findall(rf"\b{_ORIENT}\b", before, re.I)
                after = re.match(rf"\s*[(,]?\s*(?:(?:on|in)\s+(?:the\s+)?)?(?P<o>{_ORIENT})\b(?!\s*(?:[a-z]+\s*)?#?\s*\d)",
                                 text[g["b"]:], re.I)
                g["o"] = words[-1].lower() if words else (after.group("o").lower() if after else "")
            g["axial"] = g["o"] not in ("coronal", "cor", "sagittal", "sag", "mip")
        return groups

    def _tokens(self) -> list:
        toks, pos = [], 0
        for a, b, kind, data in self.spans + [(len(self.text), len(self.text), None, None)]:
            for m in _TOKEN_RE.finditer(self.text, pos, a):
                t = m.group(0).lower()
                toks.append(_Tok("num" if t[0].isdigit() else "word" if t[0].isalpha() else "punct", t, m.start(),
                                 m.end()))
            if kind == "kw":
                toks.append(_Tok("kw", data.group(0).lower(), a, b, data.lastgroup))
            elif kind is not None:
                toks.append(_Tok("span", self.text[a:b].lower(), a, b, kind))
            pos = max(pos, b)
        return toks


def _next_significant(toks, j, skip=frozenset(_FILLER - _CURRENT_CUES - {"and"})):
    """Index of the first token after j that is not a skipped word, "(" or a protected span other than a size."""
    j += 1
    while j < len(toks) and ((toks[j].kind == "span" and toks[j].info != "size") or toks[j].text in ("(", "[")
                             or (toks[j].kind == "word" and toks[j].text in skip)):
        j += 1
    return j


def _zone(toks, i):
    """SUV values after keyword i: ([token, class], is_range); class cur | prior | weak."""
    vals, pending, is_range, prev = [], None, False, ""
    k = i - 1                   # a cue right before the keyword: "(previously SUVmax 5.2)", "now SUVmax 7.4"
    while k >= 0 and (toks[k].text in ("(", "[", "the", "a", "an", "of", "with") or
                      (toks[k].text == "to" and k and toks[k - 1].text in ("compared", "relative"))):
        k -= 1
    cue = toks[k].text if k >= 0 and toks[k].kind == "word" else ""
    reference = cue in ("pool", "background", "reference", "parenchyma") or (
        cue == "liver" and k and toks[k - 1].text in ("normal", "background", "reference"))
    if cue in ("range", "ranging", "ranges", "between"):
        is_range = True
    elif cue in _PRIOR_CUES or cue == "was":
        pending = "weak" if cue == "was" else "prior"
    elif cue in _CURRENT_CUES:
        pending = "cur"
    j = i + 1
    while j < len(toks):
        t = toks[j]
        if t.kind == "span":
            j += 1
            continue
        if t.kind == "kw":
            break
        if t.kind == "num":
            if j + 1 < len(toks) and toks[j + 1].text in _LESION_NOUNS:
                break
            vals.append([t, pending or "cur"])
            pending = None
        elif t.kind == "punct":
            if t.text in ".;" and not (t.text == "." and prev in _ABBREV) or t.text not in _PUNCT_FILLER | {"."}:
                break
        elif t.text in ("range", "ranging", "ranges", "between"):
            is_range = True
        elif t.text in _AFTER_CUES:
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
        elif t.text in _PRIOR_CUES:
            pending = "prior"
        elif t.text == "was":
            pending = "weak"
        elif t.text in _CURRENT_CUES:
            if not (t.text == "to" and prev in ("compared", "relative", "similar", "equal")):
                pending = "cur"
        elif t.text not in _FILLER:
            break
        prev = t.text if t.kind == "word" else prev
        j += 1
    if is_range or reference:
        for v in vals:
            v[1] = "other" if reference else "cur"
    return vals, is_range


def _suv_values(toks):
    """All SUV values in text order: dicts {value, cls, start, end, range}; cls cur | prior | other."""
    out, seen, first_kw = [], set(), None
    for i, t in enumerate(toks):
        if t.kind != "kw":
            continue
        first_kw = i if first_kw is None and t.info != "other" else first_kw
        vals, is_range = _zone(toks, i)
        for tok, cls in vals:
            if tok.start not in seen:
                seen.add(tok.start)
                out.append({"value": float(tok.text), "cls": "other" if t.info == "other" else cls,
                            "start": tok.start, "end": tok.end, "range": is_range and t.info != "other", "kw": i})
    for j, t in enumerate(toks):    # a bare decimal after the first keyword ("... and 5.2 in the right axilla")
        if first_kw is None or j <= first_kw or t.kind != "num" or "." not in t.text or t.start in seen:
            continue
        before = [x.text for x in toks[max(0, j - 3):j] if x.kind == "word"]
        if _REFERENCE & set(before):    # "(liver 2.1)": not a lesion value, still an SUV number
            out.append({"value": float(t.text), "cls": "other", "start": t.start, "end": t.end, "range": False,
                        "kw": None})
            continue
        k = _next_significant(toks, j, skip=frozenset({"on", "the", ","}))
        after = toks[k].text if k < len(toks) else ""
        prior = bool(set(before) & (_PRIOR_CUES | {"was"})) or after in _AFTER_CUES
        out.append({"value": float(t.text), "cls": "prior" if prior else "cur", "start": t.start, "end": t.end,
                    "range": False, "kw": None})
    out.sort(key=lambda v: v["start"])
    return out


# ---------------------------------------------------------------- words
def _words(text):
    text = re.sub(r"\b(Lt|Rt|LT|RT|L|R)\.(?=\s+[A-Za-z])", r"\1 ", text)      # "Lt. axillary"
    return [(m.group(0), m.group(0).lower(), m.start()) for m in
            re.finditer(r"[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*|[^\sA-Za-z0-9]", text)]


def _category(words, i) -> str:
    orig, w, _ = words[i]
    if w in _SIDE and (w not in ("lt", "rt") or orig in ("Lt", "Rt", "LT", "RT")):
        return "side"
    if orig in ("L", "R") and i + 1 < len(words) and _category(words, i + 1) in ("adj", "head"):
        return "side"
    if _LEVEL_RE.match(orig):
        return "lvl"
    for key in (w, w.split("-")[0] if "-" in w and w.split("-")[-1] in ("based", "sided") else None):
        if key in _ADJ:
            return "adj"
        if key in _HEAD:
            return "head"
    if w in _CONN:
        return "conn"
    if w in ("level", "station") and i + 1 < len(words) and re.fullmatch(r"\d+[a-z]?|[ivx]+[ab]?|\d{1,2}[rl]",
                                                                           words[i + 1][1]):
        return "head"
    if w in _POS or re.fullmatch(r"\d+(?:st|nd|rd|th)", w):
        return "pos"
    if i and words[i - 1][1] in ("segment", "segments", "level", "station") and (w.isdigit() or w in _ROMAN or
                                                                                 re.fullmatch(r"\d+[ab]|[ivx]+[ab]?", w)):
        return "num"
    return ""


def _site(text: str) -> str | None:
    words = _words(text)
    cats = [_category(words, i) for i in range(len(words))]
    i, spans = 0, []
    while i < len(words):
        if not cats[i]:
            i += 1
            continue
        j = i
        while j < len(words):
            if cats[j]:
                j += 1
            elif words[j][0] == "(" and j + 2 < len(words) and cats[j + 1] == "lvl" and words[j + 2][0] == ")":
                j += 3          # "right paratracheal (4R) node"
            elif words[j][1] == "of" and any(c in ("adj", "head", "conn", "lvl") for c in cats[i:j]):
                k = j + 1 + (j + 1 < len(words) and words[j + 1][1] == "the")
                while k < len(words) and cats[k] in ("side", "pos"):
                    k += 1
                if k < len(words) and cats[k] in ("adj", "head", "lvl"):
                    j = k
                else:
                    break
            else:
                break
        while j > i and cats[j - 1] in ("pos", "side"):
            j -= 1
        span = range(i, j)
        if any(cats[k] in ("adj", "head", "lvl") for k in span) and not re.match(
                r"\s*(?:blood|background|reference)\b", text[words[j - 1][2] + len(words[j - 1][0]):], re.I):
            spans.append(span)
        i = max(j, i + 1)
    if not spans:
        return None
    parts = []
    for k in spans[0]:
        orig, w, _ = words[k]
        if "-" in w and w.split("-")[-1] in ("based", "sided"):
            w = w.rsplit("-", 1)[0]
        parts.append(_SIDE[w] if w in ("lt", "rt") else {"L": "left", "R": "right"}.get(
            orig, orig.upper() if cats[k] == "lvl" or (cats[k] == "num" and words[k - 1][1] != "segment") else w))
    site = re.sub(r"\( | \)", lambda m: m.group(0).strip(), " ".join(parts))
    seg = re.search(r"\bsegments?\s+(\d|[ivx]+)([ab])?\b", text, re.I)
    if seg and re.search(r"\b(?:liver|hepatic|segments?)\b", site) and re.search(r"\b(?:liver|hepatic)\b", text, re.I):
        n = seg.group(1).lower()
        site = f"liver segment {_ROMAN.get(n, n)}{(seg.group(2) or '').lower()}"
    return site


def _laterality(text: str) -> str | None:
    words = _words(text)
    lower = text.lower()
    if re.search(r"\bbilateral(?:ly)?\b|\bboth\s+(?:sides|lungs|axillae|axillas|hila|kidneys|adrenals|breasts|lobes|"
                 r"groins|necks?)\b|\b(?:left\s+and\s+right|right\s+and\s+left)\b", lower):
        return "bilateral"
    sides = set()
    for i, (orig, w, _) in enumerate(words):
        nxt = words[i + 1][1] if i + 1 < len(words) else ""
        if w in ("left", "right", "left-sided", "right-sided", "lt", "rt") or _category(words, i) == "side":
            if nxt in ("atrium", "atrial", "ventricle", "ventricular", "heart", "hemidiaphragm"):
                continue
            if w in ("lt", "rt") and orig not in ("Lt", "Rt", "LT", "RT"):
                continue
            sides.add(_SIDE.get(w) or {"L": "left", "R": "right"}[orig])
        elif re.fullmatch(r"\d{1,2}[RL]", orig) and re.search(r"\b(?:node|nodes|nodal|station|level|lymph)\b", lower):
            sides.add("right" if orig[-1] == "R" else "left")
    if len(sides) > 1:
        return "bilateral"
    if sides:
        return sides.pop()
    if any(w in _MIDLINE for _, w, _ in words) or any(_LEVEL_RE.match(o) and o[0] in "CTLScstl" for o, _, _ in words):
        return "midline"
    return None


def _negative(text: str, currents: int) -> bool:
    if currents:
        return False
    for m in _NEG_RE.finditer(text):
        if _PARTIAL_RE.search(text[:m.start()]):
            continue
        tail = text[m.start():m.end() + 40]
        if _OTHER_RE.search(tail[:m.end() - m.start() + 12]) and re.search(r"\w", text[:m.start()]):
            continue            # "... node; no other avid lesions": a lesion was described first
        return True
    return False


def _size(m) -> list:
    dims, unit = [], (m.group("u") or "").lower()
    for g, ug in (("a", "ua"), ("b", "ub"), ("c", None)):
        if m.group(g):
            u = ((m.group(ug) if ug else None) or (m.group("ub") if g == "a" and m.group("b") else None) or unit).lower()
            dims.append(round(float(m.group(g)) * (10.0 if u == "cm" else 1.0), 4))
    return dims


def _lesion_count(text, currents, ranged, axial_slices) -> int:
    n = max(len(currents), 2 if ranged else 1, len(set(axial_slices)))
    for m in _COUNT_RE.finditer(text):
        w = m.group("w").lower()
        n = max(n, _COUNT_WORDS.get(w) or int(w))
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
    """Parse one report sentence (see the module docstring for the rules)."""
    norm, scan = _analyse(text)
    values = _suv_values(scan.toks)
    if any(v["cls"] == "cur" for v in values):
        for v in values:
            v["cls"] = "prior" if v["cls"] == "weak" else v["cls"]
    else:
        weak = [v for v in values if v["cls"] == "weak"]
        for k, v in enumerate(weak):
            v["cls"] = "cur" if k == 0 else "prior"
    currents = [v for v in values if v["cls"] == "cur"]
    priors = [v for v in values if v["cls"] == "prior"]
    suv = None
    if currents:
        first = currents[0]
        suv = (max(v["value"] for v in currents if v["kw"] == first["kw"]) if first["range"] else first["value"])
    for g in scan.groups:       # "previously 5.2 (image 229)": a slice of the prior scan
        before = [v for v in values if v["end"] <= g["a"]]
        g["prior"] = bool(before) and before[-1]["cls"] == "prior" and bool(
            re.fullmatch(r"\s*[(\[]?\s*(?:on\s+|at\s+)?", norm[before[-1]["end"]:g["a"]]))
    axial = [g for g in scan.groups if g["axial"] and "n" in g and not g["prior"]]
    series = axial[0].get("s") if axial else None
    if series is None:
        series = next((g["s"] for g in scan.groups if g["axial"] and "s" in g and not g["prior"]), None)
    sizes = [d for a, b, k, d in scan.spans if k == "size"]
    tracer = min(((m.start(), name) for name, rx in _TRACERS if (m := re.search(rx, norm, re.I))), default=(0, None))[1]
    negative = _negative(norm, len(currents))
    count = 0 if negative else _lesion_count(norm, currents, any(v["range"] for v in currents),
                                             [g["n"] for g in axial])
    return ParsedFinding(text=str(text), suv_max=suv, suv_prior=priors[0]["value"] if priors else None,
                         axial_slice=axial[0]["n"] if axial else None, series=series,
                         size_mm=_size(sizes[0]) if sizes else [], laterality=_laterality(norm), site=_site(norm),
                         tracer=tracer, negative=negative, lesion_count=count,
                         index_lesion=count > 1 and bool(_INDEX_RE.search(norm)))


_GONE = "\x00"


def text_for_encoder(text: str) -> str:
    """The sentence with every SUV value and slice/image/series number removed (with the words that only introduced
    them), sizes and anatomy kept, whitespace tidied: what a text-conditioned model may see (no numeric shortcut)."""
    norm, scan = _analyse(text)
    cut = [(g["a"], g["b"]) for g in scan.groups] + [(v["start"], v["end"]) for v in _suv_values(scan.toks)]
    out = norm
    for a, b in sorted(cut, reverse=True):
        out = out[:a] + _GONE + out[b:]
    glue = (r"(?i)(?:\b(?:of|is|was|at|on|in|from|to|and|or|up\s+to|approximately|approx\.?|about|around|measuring|"
            r"previously|prior|versus|vs\.?|compared\s+(?:to|with)|now|currently)|[=:~≈<>≥≤])\s*(?=" + _GONE + ")")
    while True:
        new = re.sub(glue, "", out)
        new = re.sub(r"[\s,;]*" + _GONE + r"(?:[\s,;/-]*" + _GONE + ")*", _GONE, new)
        new = re.sub(r"[(\[]\s*" + _GONE + r"?\s*[)\]]", "", new)
        if new == out:
            break
        out = new
    out = out.replace(_GONE, " ")
    out = re.sub(r"\s+([,.;:)\]])", r"\1", re.sub(r"([(\[])\s+", r"\1", re.sub(r"\s{2,}", " ", out)))
    out = re.sub(r"([,;])(?:\s*[,;])+", r"\1", out)
    return re.sub(r"^[\s,;:]+|[\s,;:]+(?=\.?$)", "", out).strip()
