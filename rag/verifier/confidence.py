"""The answer's one confidence: the reader's margin and the verifier's score
combined by a logistic model fitted on held-out questions only
(``python -m rag.evaluation.verifier``), so that "70 %" is right about 70 % of
the time there. Both weights are kept non-negative: a higher margin or a
higher verifier score never lowers the confidence."""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class CombinedConfidence:
    """confidence = sigmoid(margin_weight * margin + verifier_weight * verifier logit + bias)."""

    margin_weight: float
    verifier_weight: float
    bias: float

    def __post_init__(self) -> None:
        if self.margin_weight < 0 or self.verifier_weight < 0:
            raise ValueError("the combined confidence must grow with both signals (non-negative weights)")

    def confidence(self, margin: float, verifier_logit: float) -> float:
        value = self.margin_weight * margin + self.verifier_weight * verifier_logit + self.bias
        return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, value))))
