"""The bounds of every count a user can give (steps, seeds, examples): large enough for any real
study, small enough that a typo (1e30 steps, a 70-bit seed) is refused instead of hanging."""

MAX_STEPS = 10**9
MAX_SEED = 2**32 - 1
MAX_EXAMPLES = 10**8
MAX_EVALUATIONS = 10**6
