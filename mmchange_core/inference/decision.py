"""From blended logits to what changed: the one decision rule of every command.

Binary networks (one logit channel, the paper's): probability = sigmoid(logit), change where
probability > threshold. K-class networks (one logit channel per class of the class file, "no change"
first): softmax over the classes; the change probability is ``1 - p(no change)``; a pixel is change
where that is > threshold, and its class is then the most probable change class (argmax over
classes 1..K-1). So the threshold means the same for both, it is tuned the same way (on the change
probability against "any change"), and at threshold 0.5 the rule differs from a plain argmax only
where no class has a majority.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mmchange_core.io.classes import ClassScheme


def logits_to_probability(logits: np.ndarray) -> np.ndarray:
    """Change probabilities (float32) of binary blended window logits (sigmoid)."""
    return torch.sigmoid(torch.from_numpy(logits)).numpy()


@dataclass(frozen=True)
class DecisionRule:
    """Threshold and classes: turns logit rows into the change probability and the class index map.

    ``classes`` is None (or a two-class scheme) for binary networks, whose logits are ``[..., h, W]``;
    K-class logits carry the class axis first: ``[K, h, W]``.
    """

    threshold: float
    classes: ClassScheme | None = None

    @property
    def channels(self) -> int:
        """Logit channels per comparison."""
        return 1 if self.classes is None else self.classes.outputs

    @property
    def multiclass(self) -> bool:
        return self.channels > 1

    def probability(self, logits: np.ndarray) -> np.ndarray:
        """Change probability ``[h, W]`` float32 of one comparison's logits."""
        if not self.multiclass:
            return logits_to_probability(logits)
        soft = torch.softmax(torch.from_numpy(np.ascontiguousarray(logits)), dim=0)
        return (1.0 - soft[0]).numpy()

    def decide(self, logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(change probability float32 ``[h, W]``, class index uint8 ``[h, W]``: 0 no change, else the class)."""
        prob = self.probability(logits)
        index = np.empty(prob.shape, dtype=np.uint8)
        np.greater(prob, self.threshold, out=index, casting="unsafe")
        if self.multiclass:
            index *= (np.argmax(logits[1:], axis=0) + 1).astype(np.uint8)
        return prob, index

    def values(self, index: np.ndarray) -> np.ndarray:
        """Label values (uint8) of a class index map: the class file's values, 0/255 for binary networks."""
        if not self.multiclass:  # binary networks keep their 0/255 masks, with or without class names
            return index * np.uint8(255)
        return self.classes.index_to_value()[index]
