"""Forecasts of grokking from a run's first steps: a benchmark of runs (benchmark), the features of
its early series (features), predictors with fit / predict_proba (predictors), their held-out
evaluation (evaluation), and its page (page)."""
