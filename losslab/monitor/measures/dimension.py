"""The intrinsic dimension (TwoNN and the Levina-Bickel MLE) of the representations: the inputs of
every Linear layer, or of the modules named in `layers`, on up to 1000 probe examples."""

from __future__ import annotations

from losslab.core.errors import LossLabError
from losslab.monitor.measures.base import REPRESENTATIONS, Measure, Probe, Setup, register

DIMENSION_EXAMPLES = 1000


@register
class Dimension(Measure):
    name, switch, instrument, writes = "dimension", "dimension", REPRESENTATIONS, ("dim_twonn/", "dim_mle/")

    def __init__(self, setup: Setup):
        from losslab.analysis.dimension import chosen_layers  # startup

        super().__init__(setup)
        if setup.inputs is None:
            raise LossLabError("the dimension measure embeds the probe's inputs: give the probe as (inputs, targets)")
        chosen_layers(setup.model, setup.layers)  # refused now, before the loop
        self.inputs = setup.inputs[:DIMENSION_EXAMPLES]

    def measure(self, probe: Probe):
        from losslab.analysis.dimension import layer_inputs, levina_bickel, two_nn  # startup

        for layer, acts in layer_inputs(self.setup.model, self.inputs, self.setup.layers).items():
            try:
                twonn, mle = two_nn(acts), levina_bickel(acts)
            except ValueError:  # collapsed: too few distinct representations
                continue
            yield f"dim_twonn/{layer}", twonn
            yield f"dim_mle/{layer}", mle
