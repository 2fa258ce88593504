"""The predictors of grokking compared on the benchmark: each a small scikit-learn classifier over
a set of the early features (losslab.forecast.features), with fit / predict_proba on the features
table (an (n, len(FEATURES)) array in FEATURES' order) and the labels (grokked or not).

Missing features (a run without probes) are imputed with the training median for the linear
models; gradient boosting routes them itself.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.dummy import DummyClassifier
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from losslab.forecast.features import FEATURES, HYPERPARAMETERS, LITERATURE, METRICS, SIGNATURE, WEIGHTS


class Predictor(ClassifierMixin, BaseEstimator):
    """p(grok) from some of the features. Subclasses name their `columns`, their `source` and
    their `model()`."""

    columns: tuple[str, ...] = FEATURES
    source = ""

    def model(self):
        return make_pipeline(SimpleImputer(strategy="median"), StandardScaler(),
                             LogisticRegression(class_weight="balanced", max_iter=2000))

    def _select(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, dtype=np.float64)[:, [FEATURES.index(c) for c in self.columns]]

    def fit(self, x: np.ndarray, y: np.ndarray) -> Predictor:
        y = np.asarray(y, dtype=bool)
        if len(set(y.tolist())) < 2:
            raise ValueError("a predictor needs runs that grokked and runs that did not")
        x = self._select(x)
        # a feature no training run recorded (runs without probes) is left out: nothing to learn from it;
        # with none recorded, the prior (the training share of grokking runs) for every run
        self.recorded_ = ~np.isnan(x).all(0)
        self.classes_ = np.array([False, True])
        model = self.model() if self.recorded_.any() else DummyClassifier(strategy="prior")
        self.model_ = model.fit(x[:, self.recorded_] if self.recorded_.any() else np.zeros((len(y), 1)), y)
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        x = self._select(x)[:, self.recorded_] if self.recorded_.any() else np.zeros((len(x), 1))
        return self.model_.predict_proba(x)


class SpectralEnergy(Predictor):
    """The paper's number: the spectral energy of the detrended early training loss."""

    columns = ("log_energy",)
    source = "Tikeng Notsawo et al. 2023, 'Predicting grokking long before it happens'"


class Hjorth(Predictor):
    """The paper's signature: energy and the Hjorth activity, mobility and complexity."""

    columns = SIGNATURE
    source = "Tikeng Notsawo et al. 2023; Hjorth 1970"


class EarlyMetrics(Predictor):
    """The training and validation losses and accuracies at T."""

    columns = METRICS
    source = "the curves every run logs"


class WeightNorm(Predictor):
    """The weight-norm trajectory (its size, its fall from its peak, its slope), the gradient norm and
    the distance from the initialization: weight decay's slow contraction precedes grokking."""

    columns = WEIGHTS
    source = "Liu et al. 2023, 'Omnigrok' (the weight norm); Nanda et al. 2023 (the cleanup phase)"


class Hyperparameters(Predictor):
    """The settings alone (learning rate, weight decay, train fraction and size): the baseline a
    forecast from the run's curves must beat."""

    columns = HYPERPARAMETERS
    source = "no curve: the phase diagram's axes"


class LossGapSlope(Predictor):
    """The train/validation loss gap and the slopes of the validation loss and accuracy over the
    second half of the window."""

    columns = LITERATURE
    source = "Prechelt 1998, 'Early stopping - but when?' (the generalization loss and its trend)"


class SignatureMetrics(Predictor):
    """losslab's earlier predictor: a logistic regression on the signature and the metrics at T."""

    columns = SIGNATURE + METRICS
    source = "losslab <= 0.1 (`losslab predict`)"


class Boosted(Predictor):
    """Gradient-boosted trees on every feature (scikit-learn's HistGradientBoostingClassifier)."""

    columns = FEATURES
    source = "Ke et al. 2017 (LightGBM's histogram boosting, as scikit-learn implements it)"

    def model(self):
        return HistGradientBoostingClassifier(max_iter=100, learning_rate=0.1, max_leaf_nodes=15, max_bins=63,
                                              min_samples_leaf=10, class_weight="balanced", random_state=0)

    def fit(self, x: np.ndarray, y: np.ndarray) -> Predictor:
        with threadpool_limits(1):  # a few hundred runs: OpenMP's threads cost more than they share
            return super().fit(x, y)


PREDICTORS: dict[str, type[Predictor]] = {
    "energy": SpectralEnergy, "hjorth": Hjorth, "metrics": EarlyMetrics, "weight-norm": WeightNorm,
    "hyperparameters": Hyperparameters, "gap-slope": LossGapSlope, "logistic": SignatureMetrics,
    "boosted": Boosted}
