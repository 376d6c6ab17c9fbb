"""therasim.policies: modalities, taxonomies, risk protocol and termination rules, as data."""

from therasim.policies import risk
from therasim.policies.modalities import (
    MODALITIES,
    Modality,
    Stage,
    get_modality,
    load_modalities,
    register_modality,
)
from therasim.policies.risk import RiskCue, RiskProtocol, scan
from therasim.policies.taxonomies import (
    EMOTION_TAXONOMIES,
    EmotionTaxonomy,
    emotion_taxonomy,
    register_emotion_taxonomy,
)
from therasim.policies.termination import TerminationRules

__all__ = [
    "EMOTION_TAXONOMIES",
    "MODALITIES",
    "EmotionTaxonomy",
    "Modality",
    "RiskCue",
    "RiskProtocol",
    "Stage",
    "TerminationRules",
    "emotion_taxonomy",
    "get_modality",
    "load_modalities",
    "register_emotion_taxonomy",
    "register_modality",
    "risk",
    "scan",
]
