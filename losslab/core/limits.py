"""The bounds of every count a user can give (steps, seeds, examples): large enough for any real
study, small enough that a typo (1e30 steps, a 70-bit seed) is refused instead of hanging."""

MAX_STEPS = 10**9
MAX_SEED = 2**32 - 1
MAX_EXAMPLES = 10**8
MAX_EVALUATIONS = 10**6
# Every real-valued setting (a learning rate, a decay, a scale) lies within +-MAX_MAGNITUDE, and a
# learning rate times its weight decay too: float32's range (3.4e38) keeps 8 decades above it for
# the arithmetic of a step (Adam's bias correction divides lr by as little as 1 - beta1).
MAX_MAGNITUDE = 1e30
# A line or plane's coefficients: theta + a d stays far inside float32 for any weights.
MAX_COEFFICIENT = 1e6
