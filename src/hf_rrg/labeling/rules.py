"""Surface rules that classify a mention as negative, uncertain or positive.

The CheXpert labeler classifies mentions with NegBio's Semgrex patterns over a dependency parse
(`chexpert_data/patterns/*.txt`). hf-rrg has no parser, so those patterns are translated here into
*surface triggers*: words or phrases before the mention (whose scope runs forward to the end of the
clause or phrase) or after it (whose scope runs back over the subject). A mention is classified in the
labeler's order:

1. pre-negation uncertainty ("cannot exclude X", "X is not excluded", "no new X") -> uncertain;
2. negation ("no X", "without X", "X is absent", "normal X", "X has resolved") -> negative;
3. post-negation uncertainty ("may", "possible", "suggest", "represent", "X or Y", "versus",
   "concern for"; "stable/unchanged" for heart and mediastinum phrases) -> uncertain;
4. otherwise positive.

Every trigger table below names the Semgrex pattern family it comes from, so the two can be compared.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .observations import CARDIOMEGALY, ENLARGED_CARDIOMEDIASTINUM, NEGATIVE, POSITIVE, UNCERTAIN

# --- clause structure -------------------------------------------------------------------------------

#: Words and marks that end a clause: no trigger's scope crosses them.
CLAUSE_BREAK = re.compile(
    r"[;:]|\b(?:but|however|although|though|which|whereas|except|other than|aside from|apart from)\b"
)
# Forward scopes also stop at a new predicate ("no effusion is seen and the heart is enlarged") or at a
# "with" phrase ("no edema, with small effusion").
_COPULA = r"(?:is|are|was|were)"
_FORWARD_BREAK = re.compile(rf"\b(?:there|with|{_COPULA}|and the|and there|then)\b")
# Phrase scopes ("normal X", "stable X") also stop at a comma.
_PHRASE_BREAK = re.compile(rf"[,]|\b(?:there|with|{_COPULA}|and the|and there|then)\b")
# A backward trigger ("X is normal") reaches back over the subject only: no new subject or negation.
_BACKWARD_BREAK = re.compile(r"\b(?:there|with|without|no|not|and there|then)\b")
_COPULA_WORD = re.compile(rf"\b{_COPULA}\b")
_MAX_BACKWARD_WORDS = 16


@dataclass(frozen=True)
class Trigger:
    """A family of trigger phrases, where they stand relative to the mention, and how far they reach."""

    name: str
    pattern: re.Pattern[str]
    before: bool  # True: the trigger precedes the mention; False: it follows it
    scope: str = "clause"  # "clause" or "phrase" (phrase scope also stops at a comma)


def _words(*alternatives: str) -> re.Pattern[str]:
    return re.compile(r"\b(?:" + "|".join(alternatives) + r")\b")


# --- 1. pre-negation uncertainty (patterns/pre_negation_uncertainty.txt) ---------------------------
PRE_NEGATION_UNCERTAINTY = (
    # cannot exclude X | cannot rule out X | no evidence to rule out X
    Trigger("cannot exclude", _words(
        r"(?:cannot|can not|could not|can't) (?:\w+ )?(?:exclude|rule out)",
        r"not (?:\w+ )?(?:exclude|rule out)",
        r"no evidence to rule out",
    ), before=True),
    # no new X | no new area of X
    Trigger("no new", _words(r"no new"), before=True),
    # X is not excluded | X cannot be excluded / ruled out
    Trigger("not excluded", _words(
        r"(?:cannot|can not|could not) be (?:\w+ )?(?:excluded|ruled out)",
        r"not (?:\w+ )?(?:excluded|ruled out)",
    ), before=False),
)

# --- 2. negation (patterns/negation.txt) -----------------------------------------------------------
NEGATION = (
    # no X | not X | without X | no evidence of X | no definite/obvious X | rather than X
    Trigger("no", _words(r"no", r"not", r"without", r"rather than", r"negative for", r"absence of"),
            before=True),
    # free of | clear(ing) of | resolution/removal/disappearance/drainage/history of | rule out | exclude
    Trigger("removal of", _words(
        r"free of", r"clear of", r"clearing of", r"(?:interval )?resolution of", r"removal of",
        r"disappearance of", r"drainage of", r"history of", r"rule out", r"ruled out",
        r"exclude[sd]?", r"resolved", r"removed", r"cleared",
    ), before=True),
    # normal X | unremarkable X | X within normal limits (forward part: "normal limits for size and contour")
    Trigger("normal", _words(r"normal", r"unremarkable"), before=True, scope="phrase"),
    # X is normal / unremarkable / within normal limits / upper limits of normal
    Trigger("is normal", _words(r"normal", r"unremarkable"), before=False),
    # X is absent | X has resolved | X has cleared | X removed | X is not enlarged | X is no longer seen
    Trigger("is absent", _words(
        r"absent", r"(?:(?:has|have|had) )?(?:since |now |completely |entirely )?(?:resolved|cleared)",
        r"(?:(?:has|have|had) )?(?:been )?removed", r"not (?:\w+ )?enlarged",
        r"no longer (?:seen|visualized|present|identified|evident|demonstrated|noted)",
        r"not (?:seen|identified|visualized|demonstrated|present|evident|noted|detected)",
        r"excluded", r"ruled out", r"with interval resolution", r"negative",
    ), before=False),
)

# Phrases containing a negation word that do not negate what follows ("no change in cardiomegaly").
PSEUDO_NEGATION = _words(
    r"(?:no|not|without) (?:\w+ )?(?:change|changed|increase|increased|decrease|decreased|worsening|"
    r"progression|improvement|improved|significant change)",
    r"not only", r"not well", r"not clearly", r"not appreciated",
    r"partially resolved", r"partly resolved", r"nearly resolved", r"almost resolved", r"not entirely",
    r"not completely", r"incompletely resolved",
)

# --- 3. post-negation uncertainty (patterns/post_negation_uncertainty.txt) -------------------------
POST_NEGATION_UNCERTAINTY = (
    # may/might/could/would be X | possible X | suspected X | concern for X | suggest X | represent X ...
    Trigger("may", _words(
        r"may", r"might", r"could", r"would", r"possible", r"possibly", r"probable", r"presumabl[ey]",
        r"presumed", r"questionable", r"question of", r"questioned", r"suspect", r"suspected",
        r"suspicious", r"suspicion", r"concern(?:ing)? for", r"worrisome", r"suggest(?:s|ed|ing|ive)?",
        r"suggestion of", r"represent(?:s|ed|ing)?", r"versus", r"vs", r"less likely", r"differential",
        r"consider(?:ed)?", r"favor(?:ed)?", r"cannot", r"secondary to", r"correlat(?:e|ion) for",
        r"(?:correlate|correlation) clinically for", r"borderline", r"equivocal",
    ), before=True),
    # X may be present | X is suspected | X is possible | X is poorly evaluated | X is obscured ...
    Trigger("may be present", _words(
        r"(?:may|might|could|can) (?:also )?(?:be )?(?:present|seen|appear|have this appearance)",
        r"suspected", r"possible", r"questionable", r"questioned", r"borderline",
        r"(?:poorly|incompletely|not well) (?:evaluated|visualized|seen|assessed)", r"obscur(?:ed|ing)",
        r"not clearly (?:seen|visualized)", r"not appreciated", r"cannot be (?:assessed|evaluated)",
        r"versus", r"vs", r"less likely",
    ), before=False),
)

# "X or Y" / "X versus Y": a mention joined by "or" (up to three words between) is uncertain.
_OR_AFTER = re.compile(r"^[\w\-]*(?:[\s,]+[\w\-]+){0,3}?[\s,]+(?:or|versus|vs)\b")
_OR_BEFORE = re.compile(r"\b(?:or|versus|vs)(?:[\s,]+[\w\-]+){0,3}[\s,]+[\w\-]*$")

# Heart / mediastinum phrases (their last word) for which "stable", "unchanged", "no change",
# "similar to prior" mean uncertain (the "Added Rules" of post_negation_uncertainty.txt).
CARDIAC_HEADS = frozenset({
    "cardiomediastinal", "pericardial", "mediastinal", "mediastinum", "cardiomediastinum", "contour",
    "configuration", "silhouette", "size", "heart", "shadow",
})
CARDIAC_STABLE = (
    Trigger("stable X", _words(r"stable", r"unchanged", r"(?:no|not) (?:\w+ )?changed?", r"similar"),
            before=True, scope="phrase"),
    Trigger("X is stable", _words(r"stable", r"unchanged", r"(?:no|not) (?:\w+ )?changed?",
                                  r"similar to (?:the )?(?:\w+ )?prior", r"similar"), before=False),
)

#: Mention phrases that are uncertain whenever they are not negated (pulmonary congestion and kin).
ALWAYS_UNCERTAIN_PHRASES = frozenset(
    {"vascular congestion", "pulmonary congestion", "indistinctness", "vascular prominence"}
)


def clause_bounds(sentence: str, start: int, end: int) -> tuple[int, int]:
    """The (start, end) of the clause of `sentence` that holds the mention at [start, end)."""
    left, right = 0, len(sentence)
    for match in CLAUSE_BREAK.finditer(sentence):
        if match.end() <= start:
            left = match.end()
        elif match.start() >= end:
            right = match.start()
            break
    return left, right


def _forward_reaches(gap: str, scope: str) -> bool:
    breaks = _PHRASE_BREAK if scope == "phrase" else _FORWARD_BREAK
    return breaks.search(gap) is None


def _backward_reaches(gap: str, trigger_text: str) -> bool:
    if _BACKWARD_BREAK.search(gap) or len(gap.split()) > _MAX_BACKWARD_WORDS:
        return False
    copulas = list(_COPULA_WORD.finditer(gap)) + list(_COPULA_WORD.finditer(trigger_text))
    if len(copulas) > 1:
        return False
    if copulas and copulas[0].start() < len(gap) and "," in gap[copulas[0].end():]:
        return False  # after the copula comes the predicate ("is stable and within"), not a new clause
    return "," not in gap or bool(copulas)


def _pseudo_spans(text: str) -> list[tuple[int, int]]:
    return [m.span() for m in PSEUDO_NEGATION.finditer(text)]


def trigger_applies(trigger: Trigger, clause: str, start: int, end: int, pseudo: list[tuple[int, int]]) -> bool:
    """Whether `trigger` reaches the mention at [start, end) of `clause` (positions inside the clause)."""
    if trigger.before:
        for match in trigger.pattern.finditer(clause, 0, start):
            if match.end() > start:
                continue
            if any(p0 <= match.start() < p1 for p0, p1 in pseudo):
                continue
            if _forward_reaches(clause[match.end():start], trigger.scope):
                return True
        return False
    for match in trigger.pattern.finditer(clause, end):
        if any(p0 <= match.start() < p1 for p0, p1 in pseudo):
            continue
        if _backward_reaches(clause[end:match.start()], match.group(0)):
            return True
    return False


def _joined_by_or(clause: str, start: int, end: int) -> bool:
    return bool(_OR_AFTER.search(clause[end:]) or _OR_BEFORE.search(clause[:start]))


def classify(sentence: str, start: int, end: int, observation: str, phrase: str) -> int:
    """Classify the mention `sentence[start:end]` of `observation` (matched by `phrase`).

    Returns 0 (negative), -1 (uncertain) or 1 (positive).
    """
    c0, c1 = clause_bounds(sentence, start, end)
    clause = sentence[c0:c1]
    s, e = start - c0, end - c0
    if any(trigger_applies(t, clause, s, e, []) for t in PRE_NEGATION_UNCERTAINTY):
        return UNCERTAIN
    if any(trigger_applies(t, clause, s, e, _pseudo_spans(clause)) for t in NEGATION):
        return NEGATIVE
    if phrase in ALWAYS_UNCERTAIN_PHRASES:
        return UNCERTAIN
    if any(trigger_applies(t, clause, s, e, []) for t in POST_NEGATION_UNCERTAINTY):
        return UNCERTAIN
    if _joined_by_or(clause, s, e):
        return UNCERTAIN
    if observation in (CARDIOMEGALY, ENLARGED_CARDIOMEDIASTINUM) and phrase.split()[-1] in CARDIAC_HEADS:
        if any(trigger_applies(t, clause, s, e, []) for t in CARDIAC_STABLE):
            return UNCERTAIN
    return POSITIVE
