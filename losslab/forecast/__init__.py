"""Forecasts of grokking from a run's first steps: the benchmark of runs losslab makes (benchmark) and
its table (table), the features of the early series (features), the predictors with fit /
predict_proba (predictors), their held-out evaluation (evaluation), the forecaster the commands use
(forecaster), and the figures and page of an evaluation (figures, page)."""
